"""asyncio AMI client: the sans-I/O protocol object (protocol.py) plus sockets and time.

An ``asyncio.BufferedProtocol`` hands received bytes to ``AMIProtocol``, which says what
they complete; this adapter resolves the waiting actions' futures (a reply is matched by
``ActionID``, so concurrent actions never mix up replies) and queues the events for
``events()``. Events are queued in per-read batches: one ``deque`` append per TCP read
instead of one queue operation per event keeps the hot path cheap. What stays here is
I/O: connecting, timeouts, back-pressure, keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from cti_cli.ami.codec import DEFAULT_MAX_MESSAGE, EventFilter, Headers, merge_headers
from cti_cli.ami.errors import (
    ActionTimeout,
    AMIError,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    HostUnreachable,
    NameNotResolved,
    TLSError,
)
from cti_cli.ami.login import AuthType, challenge_token, check_login, login_headers
from cti_cli.ami.message import Message
from cti_cli.ami.protocol import (
    Abandoned,
    ActionListResult,
    AMIProtocol,
    Broken,
    Completed,
    Events,
    Greeted,
    Outcome,
    raise_for_error,
)

__all__ = ["CAFILE_HINT", "AMIClient", "ActionListResult", "AuthType", "make_tls_context"]

#: How the user tells cti to trust a private CA; quoted in TLSError messages.
CAFILE_HINT = "give the CA certificate that signed it with the AMI CA file option (cafile)"

_READ_SIZE = 64 * 1024


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
    ``event_filter`` names the only events the consumer wants (the rest are never decoded).
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        reply_timeout: float = 10.0,
        max_queued_events: int = 100_000,
        event_filter: EventFilter | None = None,
    ) -> None:
        self.max_message = max_message
        self.reply_timeout = reply_timeout
        self.max_queued_events = max_queued_events
        self.peer = ""
        self.dropped_events = 0
        self._protocol = AMIProtocol(
            max_message=max_message,
            id_prefix=f"cti-{os.getpid()}-{id(self) & 0xFFFFFF:x}-",
            event_filter=event_filter,
        )
        self._transport: asyncio.Transport | None = None
        self._greeting: asyncio.Future[None] | None = None
        self._replies: dict[str, asyncio.Future[object]] = {}
        self._batches: deque[list[Message]] = deque()
        self._queued = 0
        self._consuming = False
        self._paused = False
        # liveness: when bytes last arrived, and when reading last resumed after a pause of
        # ours; a reply can only be overdue while we read and nothing arrives (see _await)
        self._last_rx = 0.0
        self._resumed_at = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False
        self._gone: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def banner(self) -> str | None:
        return self._protocol.banner

    @property
    def ami_version(self) -> str | None:
        return self._protocol.ami_version

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
        self.peer = self._protocol.peer = f"{host}:{port}"
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

    # -- reading & routing (protocol callbacks) --------------------------------------
    def _received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        for outcome in self._protocol.receive_data(data):
            if type(outcome) is Events:  # the hot path
                self._queue_events(outcome.messages)
            else:
                self._apply(outcome)

    def _lost(self, exc: Exception | None) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        if self._closed:
            return
        self._apply_all(self._protocol.connection_lost(exc))

    def _apply_all(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self._apply(outcome)

    def _apply(self, outcome: Outcome) -> None:
        """Carry out what the protocol decided."""
        match outcome:
            case Events(messages):
                self._queue_events(messages)
            case Completed(action_id, reply):
                future = self._replies.pop(action_id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
            case Abandoned(action_id, error):
                future = self._replies.pop(action_id, None)
                if future is not None and not future.done():
                    future.set_exception(error)
            case Greeted():
                if self._greeting is not None and not self._greeting.done():
                    self._greeting.set_result(None)
            case Broken(error):  # end events(), close the socket
                if self._greeting is not None and not self._greeting.done():
                    self._greeting.set_exception(error)
                self._wake()
                if self._transport is not None:
                    self._transport.close()

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

    def _fail(self, exc: AMIError) -> AMIError:
        """The connection is unusable: fail every waiter, end events(), close the socket.
        Returns the failure that counts (the first one)."""
        self._apply_all(self._protocol.fail(exc))
        assert self._protocol.failure is not None
        return self._protocol.failure

    # -- public API -------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None and self._protocol.failure is None and not self._closed

    async def _send(
        self,
        name: str,
        headers: Headers | None,
        collect: bool,
        timeout: float | None,
        *,
        bytes_are_life: bool = False,
    ) -> object:
        protocol = self._protocol
        if protocol.failure is not None:
            raise protocol.failure
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            raise ConnectionLost("the AMI connection is closed")
        action_id, payload = protocol.send_action(name, headers, collect=collect)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[action_id] = future
        limit = self.reply_timeout if timeout is None else timeout
        try:
            transport.write(payload)
            return await self._await(future, limit, bytes_are_life)
        except TimeoutError:
            raise ActionTimeout(
                f"no reply from {self.peer} to AMI action {name} within {limit:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise self._fail(
                ConnectionLost(f"{self.peer} dropped the AMI connection: {exc}")
            ) from None
        finally:
            self._replies.pop(action_id, None)
            protocol.forget(action_id)

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
            raise_for_error(name, reply)
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
        raise_for_error(name, result.response)
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
        token = None
        if auth == "md5":
            challenge = await self.action(
                "Challenge", {"AuthType": "MD5"}, reply_timeout=reply_timeout, check=False
            )
            token = challenge_token(challenge, self.peer)
        headers = login_headers(username, secret, auth=auth, events=events, challenge=token)
        reply = await self.action("Login", headers, reply_timeout=reply_timeout, check=False)
        check_login(reply, self.peer, username)
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
        protocol = self._protocol
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
                if protocol.failure is not None:
                    raise protocol.failure
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
            raise_for_error("Ping", reply)
        except ActionTimeout:
            raise self._fail(
                ConnectionLost(f"{self.peer} did not answer Ping within {limit:g} s")
            ) from None

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
        self._apply_all(self._protocol.close())
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
