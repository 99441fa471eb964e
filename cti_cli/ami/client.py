"""asyncio AMI client on top of the sans-I/O codec.

An ``asyncio.BufferedProtocol`` feeds received bytes to the decoder and routes each
message: a reply whose ``ActionID`` belongs to a waiting action completes it (so
concurrent actions never mix up replies); everything else is an event for ``events()``.
Events are queued in per-read batches: one ``deque`` append per TCP read instead of
one queue operation per event keeps the hot path cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cti_cli.ami.codec import (
    DEFAULT_MAX_MESSAGE,
    AMIDecoder,
    Headers,
    encode_action,
    merge_headers,
)
from cti_cli.ami.errors import (
    ActionFailed,
    ActionTimeout,
    AMIError,
    AuthenticationFailed,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    HostUnreachable,
    NameNotResolved,
    NotAMIServer,
    PermissionDenied,
    ProtocolError,
    TLSError,
)
from cti_cli.ami.message import Message

__all__ = ["CAFILE_HINT", "AMIClient", "ActionListResult", "make_tls_context"]

AuthType = Literal["md5", "plain"]

#: How the user tells cti to trust a private CA; quoted in TLSError messages.
CAFILE_HINT = "give the CA certificate that signed it with the AMI CA file option (cafile)"

_BANNER_PREFIX = b"Asterisk Call Manager/"
_READ_SIZE = 64 * 1024


@dataclass
class ActionListResult:
    """Reply to a list action: the first response, the list events, the closing event."""

    response: Message
    events: list[Message] = field(default_factory=list)
    complete: Message | None = None

    def __iter__(self) -> Iterator[Message]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


class _Waiter:
    """A pending action: resolves on its response, or collects an event list."""

    __slots__ = ("collect", "future", "result")

    def __init__(self, future: asyncio.Future[object], collect: bool) -> None:
        self.future = future
        self.collect = collect
        self.result: ActionListResult | None = None

    def feed(self, msg: Message) -> bool:
        """Take one message; True when the action is complete."""
        if self.future.done():
            return True
        if not self.collect:
            if msg.is_response:
                self.future.set_result(msg)
                return True
            return False
        if self.result is None:
            if not msg.is_response:
                return False
            self.result = ActionListResult(response=msg)
            if msg.get("Response") != "Success" or msg.get("EventList", "").lower() != "start":
                self.future.set_result(self.result)
                return True
            return False
        if msg.get("EventList", "").lower() == "complete":
            self.result.complete = msg
            self.future.set_result(self.result)
            return True
        self.result.events.append(msg)
        return False


def make_tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """Verifying TLS context; ``cafile`` adds a private CA (e.g. a self-signed AMI cert)."""
    return ssl.create_default_context(cafile=cafile)


class _Protocol(asyncio.BufferedProtocol):
    """Hands received bytes to the client. Reads go into one reused buffer of
    ``_READ_SIZE`` bytes: small enough that a batch of messages stays in the CPU
    cache while the consumer reads it, and no extra copy as with StreamReader."""

    def __init__(self, client: AMIClient) -> None:
        self.client = client
        self.view = memoryview(bytearray(_READ_SIZE))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.client._received(bytes(self.view[:nbytes]))

    def eof_received(self) -> bool:
        self.client._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)


class AMIClient:
    """An AMI connection: ``connect()``, ``login()``, ``action()``, ``events()``, ``logoff()``.

    ``max_queued_events`` bounds events waiting for ``events()``: while a consumer is
    iterating, reading pauses at that bound (TCP back-pressure); with no consumer the
    oldest events are dropped (counted in ``dropped_events``) so replies keep flowing.
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        reply_timeout: float = 10.0,
        max_queued_events: int = 100_000,
    ) -> None:
        self.max_message = max_message
        self.reply_timeout = reply_timeout
        self.max_queued_events = max_queued_events
        self.banner: str | None = None
        self.ami_version: str | None = None
        self.peer = ""
        self.dropped_events = 0
        self._transport: asyncio.Transport | None = None
        self._decoder = AMIDecoder(max_message)
        self._greeting: asyncio.Future[None] | None = None
        self._first = b""
        self._waiters: dict[str, _Waiter] = {}
        self._batches: deque[list[Message]] = deque()
        self._queued = 0
        self._consuming = False
        self._paused = False
        # liveness: when bytes last arrived, and when reading last resumed after a pause of
        # ours; a reply can only be overdue while we read and nothing arrives (see _await)
        self._last_rx = 0.0
        self._resumed_at = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._failure: AMIError | None = None
        self._closed = False
        self._leaving = False  # Logoff sent: the peer closing now is its goodbye, not a loss
        self._gone: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._id_prefix = f"cti-{os.getpid()}-{id(self) & 0xFFFFFF:x}-"

    # -- connection -----------------------------------------------------------
    async def connect(
        self,
        host: str,
        port: int,
        *,
        tls: bool | ssl.SSLContext = False,
        cafile: str | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Open TCP (or TLS) and read the banner; returns it. Raises a specific AMIError."""
        self.peer = f"{host}:{port}"
        ctx: ssl.SSLContext | None = None
        if isinstance(tls, ssl.SSLContext):
            ctx = tls
        elif tls:
            ctx = make_tls_context(cafile)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._greeting = loop.create_future()
        self._gone = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: _Protocol(self),
                    host,
                    port,
                    ssl=ctx,
                    ssl_handshake_timeout=timeout if ctx else None,
                )
        except socket.gaierror as exc:
            raise NameNotResolved(
                f"AMI host {host!r} does not resolve ({exc.strerror}): check the host name"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionRefused(
                f"nothing accepts connections on {self.peer}: check the AMI port and that "
                "manager.conf has enabled=yes and a matching bindaddr"
            ) from None
        except TimeoutError:
            raise ConnectTimeout(
                f"no connection to {self.peer} within {timeout:g} s: check host, port and firewall"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise TLSError(
                f"TLS certificate of {self.peer} is not trusted ({exc.verify_message}): "
                f"{CAFILE_HINT}"
            ) from None
        except ssl.SSLError as exc:
            raise TLSError(
                f"TLS handshake with {self.peer} failed ({exc.reason or exc}): check that this is "
                "the AMI TLS port (manager.conf tlsbindport)"
            ) from None
        except OSError as exc:
            if ctx is not None and isinstance(exc, ConnectionResetError):
                raise TLSError(
                    f"{self.peer} closed the connection during the TLS handshake: check that "
                    "this is the AMI TLS port (manager.conf tlsbindport)"
                ) from None
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise HostUnreachable(
                    f"no route to {self.peer} ({exc.strerror}): check the AMI host address, "
                    "the network route or VPN to it, and that the PBX is up"
                ) from None
            raise ConnectionRefused(
                f"cannot connect to {self.peer}: {exc.strerror or exc}"
            ) from None
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await asyncio.shield(self._greeting)
        except TimeoutError:
            await self.close()
            raise ConnectTimeout(
                f"{self.peer} accepted the connection but sent no AMI banner within "
                f"{timeout:g} s: check that this is the AMI port"
            ) from None
        except AMIError:
            await self.close()
            raise
        assert self.banner is not None
        return self.banner

    def _greet(self, data: bytes) -> list[Message]:
        """Banner phase: reject a foreign server as early as its first bytes."""
        if len(self._first) < len(_BANNER_PREFIX):
            self._first += data[: len(_BANNER_PREFIX)]
            probe = self._first[: len(_BANNER_PREFIX)]
            if not _BANNER_PREFIX.startswith(probe):
                raise NotAMIServer(
                    f"{self.peer} is not an Asterisk AMI server: it greeted with "
                    f"{_preview(probe)} instead of 'Asterisk Call Manager/...'"
                )
        try:
            early = self._decoder.feed(data)
        except ProtocolError:
            raise NotAMIServer(f"{self.peer} is not an Asterisk AMI server") from None
        if self._decoder.greeting_done:
            self.banner = self._decoder.banner
            self.ami_version = self._decoder.ami_version
            if self.ami_version is None:
                raise NotAMIServer(
                    f"{self.peer} is not an Asterisk AMI server: it greeted with "
                    f"{_preview(self._first)} instead of 'Asterisk Call Manager/...'"
                )
            assert self._greeting is not None
            self._greeting.set_result(None)
        return early

    # -- reading & routing (protocol callbacks) --------------------------------------
    def _received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        decoder = self._decoder
        try:
            if self._greeting is not None and not self._greeting.done():
                msgs = self._greet(data)
            else:
                msgs = decoder.feed(data)
        except AMIError as exc:
            self._fail(exc if not isinstance(exc, ProtocolError) else
                       ProtocolError(f"{self.peer}: {exc}"))  # fmt: skip
            return
        if not msgs:
            pass
        elif self._waiters or decoder.responses_seen:
            self._dispatch(msgs)
        else:  # hot path: a batch of events only
            self._queue_events(msgs)
        if decoder.error is not None:
            self._fail(ProtocolError(f"{self.peer}: {decoder.error}"))

    def _lost(self, exc: Exception | None) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        if self._closed:
            return
        if self._leaving:  # after our Logoff: end what waits (Logoff itself), quietly
            for waiter in self._waiters.values():
                if not waiter.future.done():
                    waiter.future.set_exception(ConnectionLost(f"{self.peer} said goodbye"))
            self._waiters.clear()
            return
        if self._greeting is not None and not self._greeting.done():
            self._fail(ConnectionLost(
                f"{self.peer} closed the connection before its AMI banner "
                "(connection limit or permit/deny ACL in manager.conf?)"
            ))  # fmt: skip
        elif exc is None:
            self._fail(ConnectionLost(f"{self.peer} closed the AMI connection"))
        else:
            self._fail(ConnectionLost(f"{self.peer} dropped the AMI connection: {exc}"))

    def _dispatch(self, msgs: list[Message]) -> None:
        """Route replies to their waiting actions; queue the rest as events."""
        events: list[Message] = []
        waiters = self._waiters
        for msg in msgs:
            action_id = msg.get("ActionID", "") if waiters else ""
            waiter = waiters.get(action_id) if action_id else None
            if waiter is None:
                if not msg.is_response:
                    events.append(msg)
            elif waiter.feed(msg):
                del waiters[action_id]
        if events:
            self._queue_events(events)

    def _queue_events(self, events: list[Message]) -> None:
        self._batches.append(events)
        self._queued += len(events)
        if self._queued > self.max_queued_events:
            if self._consuming:
                if not self._paused and self._transport is not None:
                    self._paused = True
                    self._transport.pause_reading()
            else:
                while self._queued > self.max_queued_events and self._batches:
                    dropped = self._batches.popleft()
                    self._queued -= len(dropped)
                    self.dropped_events += len(dropped)
        self._wake()

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._resumed_at = time.monotonic()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: AMIError) -> None:
        """The connection is unusable: fail every waiter, end events(), close the socket."""
        if self._failure is None:
            self._failure = exc
        if self._greeting is not None and not self._greeting.done():
            self._greeting.set_exception(exc)
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._waiters.clear()
        self._wake()
        if self._transport is not None:
            self._transport.close()

    # -- public API -------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None and self._failure is None and not self._closed

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    async def _send(
        self,
        name: str,
        headers: Headers | None,
        collect: bool,
        timeout: float | None,
        *,
        bytes_are_life: bool = False,
    ) -> object:
        if self._failure is not None:
            raise self._failure
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            raise ConnectionLost("the AMI connection is closed")
        action_id = self._next_id()
        payload = encode_action(name, headers, action_id)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters[action_id] = _Waiter(future, collect)
        limit = self.reply_timeout if timeout is None else timeout
        try:
            transport.write(payload)
            return await self._await(future, limit, bytes_are_life)
        except TimeoutError:
            raise ActionTimeout(
                f"no reply from {self.peer} to AMI action {name} within {limit:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._fail(ConnectionLost(f"{self.peer} dropped the AMI connection: {exc}"))
            raise self._failure from None  # type: ignore[misc]
        finally:
            self._waiters.pop(action_id, None)

    async def _await(
        self, future: asyncio.Future[object], limit: float, bytes_are_life: bool
    ) -> object:
        """The reply, or TimeoutError after ``limit`` s in which the peer could have answered.

        The clock does not run while *we* paused reading (a slow consumer: the reply waits
        unread behind our backlog in the socket buffer) and restarts when reading resumes.
        With ``bytes_are_life`` every byte received also restarts it: a peer that is still
        sending is alive even if its reply is still queued behind what it sent before.
        """
        sent = time.monotonic()
        while True:
            since = max(sent, self._resumed_at)
            if bytes_are_life:
                since = max(since, self._last_rx)
            left = limit if self._paused else since + limit - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                async with asyncio.timeout(left):
                    return await asyncio.shield(future)
            except TimeoutError:
                if future.done():
                    return future.result()

    async def action(
        self,
        name: str,
        headers: Headers | None = None,
        *,
        reply_timeout: float | None = None,
        check: bool = True,
        **extra: str | int | Sequence[str | int],
    ) -> Message:
        """Send an action, return its response.

        With ``check`` (default) a ``Response: Error`` raises ``PermissionDenied`` (for
        "Permission denied") or ``ActionFailed``.
        """
        reply = await self._send(name, merge_headers(headers, extra), False, reply_timeout)
        assert isinstance(reply, Message)
        if check:
            _raise_for_error(name, reply)
        return reply

    async def action_list(
        self,
        name: str,
        headers: Headers | None = None,
        *,
        reply_timeout: float | None = None,
        **extra: str | int | Sequence[str | int],
    ) -> ActionListResult:
        """Send a list action (``EventList: start`` ... ``Complete``) and collect its events."""
        result = await self._send(name, merge_headers(headers, extra), True, reply_timeout)
        assert isinstance(result, ActionListResult)
        _raise_for_error(name, result.response)
        return result

    async def login(
        self,
        username: str,
        secret: str,
        *,
        auth: AuthType = "md5",
        events: bool | str = True,
        reply_timeout: float | None = None,
    ) -> Message:
        """Log in (MD5 challenge or plain secret). ``events``: on/off or a class mask."""
        if auth == "md5":
            challenge = await self.action(
                "Challenge", {"AuthType": "MD5"}, reply_timeout=reply_timeout, check=False
            )
            token = challenge.get("Challenge")
            if challenge.get("Response") != "Success" or not token:
                raise AuthenticationFailed(
                    f"{self.peer} refused the MD5 challenge ({challenge.get('Message', '?')}): "
                    "try plain authentication"
                )
            # the AMI protocol's own challenge-response, not a security use: allowed on FIPS
            key = hashlib.md5((token + secret).encode("utf-8"), usedforsecurity=False).hexdigest()
            headers: dict[str, str] = {"Username": username, "AuthType": "MD5", "Key": key}
        elif auth == "plain":
            headers = {"Username": username, "Secret": secret}
        else:
            raise ValueError(f"unknown AMI auth type {auth!r}: use 'md5' or 'plain'")
        headers["Events"] = events if isinstance(events, str) else ("on" if events else "off")
        reply = await self.action("Login", headers, reply_timeout=reply_timeout, check=False)
        if reply.get("Response") != "Success":
            raise AuthenticationFailed(
                f"Asterisk at {self.peer} rejected AMI user {username!r}: wrong user name or "
                "secret, or the user's permit/deny does not allow this host"
            )
        return reply

    async def events(self) -> AsyncIterator[Message]:
        """Every event, in order. Ends after ``close()``; raises ConnectionLost on loss.

        One consumer at a time.
        """
        batches = self.event_batches()
        try:
            async for batch in batches:
                for msg in batch:
                    yield msg
        finally:
            await batches.aclose()  # at once, not at garbage collection: reading resumes

    async def event_batches(self) -> AsyncGenerator[list[Message], None]:
        """Every event, in order, as lists (one per socket read): like ``events()``, minus
        one ``async for`` step per event, which is a large share of a cheap consumer's
        time (bench/ami_ingest.py). One consumer at a time.
        """
        self._consuming = True
        loop = asyncio.get_running_loop()
        low_water = self.max_queued_events // 2
        try:
            while True:
                batches = self._batches
                if batches:
                    batch = batches.popleft()
                    self._queued -= len(batch)
                    if self._paused and self._queued <= low_water:
                        self._resume_reading()
                    yield batch
                    continue
                if self._failure is not None:
                    raise self._failure
                if self._closed:
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
        finally:
            self._consuming = False
            self._resume_reading()

    async def ping(self, timeout: float | None = None) -> None:
        """Ping; a missing reply means a dead connection: close and raise ConnectionLost."""
        limit = self.reply_timeout if timeout is None else timeout
        try:
            reply = await self._send("Ping", None, False, limit, bytes_are_life=True)
            assert isinstance(reply, Message)
            _raise_for_error("Ping", reply)
        except ActionTimeout:
            self._fail(ConnectionLost(f"{self.peer} did not answer Ping within {limit:g} s"))
            raise self._failure from None  # type: ignore[misc]

    def start_keepalive(self, interval: float, timeout: float | None = None) -> None:
        """Ping every ``interval`` seconds in the background (see ``ping``)."""

        async def keepalive() -> None:
            with contextlib.suppress(AMIError):
                while True:
                    await asyncio.sleep(interval)
                    await self.ping(timeout)

        self._tasks.append(asyncio.create_task(keepalive(), name=f"ami-ping {self.peer}"))

    async def logoff(self, timeout: float = 2.0) -> None:
        """Say goodbye (best effort) and close."""
        if self.connected:
            self._leaving = True
            with contextlib.suppress(AMIError):
                await self.action("Logoff", reply_timeout=timeout, check=False)
        await self.close()

    async def close(self) -> None:
        """Close the connection; pending actions fail with ConnectionLost, events() ends."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionLost("the AMI connection was closed"))
        self._waiters.clear()
        self._wake()
        if self._greeting is not None and not self._greeting.done():
            self._greeting.cancel()
        if self._transport is not None:
            self._transport.close()
            if self._gone is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._gone

    async def __aenter__(self) -> AMIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _raise_for_error(name: str, reply: Message) -> None:
    if reply.get("Response") != "Error":
        return
    reason = reply.get("Message", "no reason given")
    if reason.lower() == "permission denied":
        raise PermissionDenied(
            f"the AMI user may not run action {name}: add the needed class to write= in "
            "its manager.conf section"
        )
    raise ActionFailed(f"AMI action {name} failed: {reason}", reply)


def _preview(data: bytes) -> str:
    text = data[:24].decode("ascii", "backslashreplace")
    return repr(text) if text else "nothing"
