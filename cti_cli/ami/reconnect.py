"""A client that stays connected: reconnect with exponential backoff + jitter, re-login.

``cti watch`` and ``cti agent`` iterate ``ReconnectingClient.events()`` (or ``follow``)
and show the ``ConnectionState`` values passed to ``on_state`` to the user. ``on_connect``
runs after every login, before that connection's first event is yielded (events arriving
meanwhile wait in the client's queue): the place to catch up with what happened while
disconnected, e.g. ``snapshot_channels`` + ``CallTracker.reconcile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cti_cli.ami.client import AMIClient, AuthType
from cti_cli.ami.codec import Headers, merge_headers
from cti_cli.ami.errors import AMIError, AuthenticationFailed, ConnectionLost
from cti_cli.ami.message import Message

__all__ = [
    "ConnectParams",
    "ConnectionState",
    "ReconnectingClient",
    "backoff_delay",
    "follow",
    "snapshot_channels",
]

StateName = Literal["connecting", "connected", "reconnecting", "error", "closed"]

AUTH_HINT = "fix server.password (cti configure) or put the old secret back in Asterisk"


@dataclass(frozen=True)
class ConnectParams:
    """Where and how to log in. The secret is left out of ``repr``.

    ``timeout`` bounds the connection, the login, every action's reply and (unless
    ``ping_timeout`` is given) the keepalive Ping: it is ``server.timeout``.
    """

    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    tls: bool = False
    cafile: str | None = None
    auth: AuthType = "md5"
    timeout: float = 10.0
    events: bool | str = True
    ping_interval: float | None = 20.0
    ping_timeout: float | None = None


@dataclass(frozen=True)
class ConnectionState:
    """One transition: ``state`` plus the retry delay or the error reason."""

    state: StateName
    delay: float | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.state == "reconnecting" and self.delay is not None:
            return f"reconnecting in {self.delay:.1f} s"
        if self.state == "error":
            return f"error: {self.error}"
        return self.state


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """``initial * 2**attempt`` capped at ``maximum``, spread by +/- ``jitter`` (a fraction)
    so that many clients restarted together do not reconnect in lockstep."""
    base = min(maximum, initial * (2.0 ** min(attempt, 30)))
    return max(0.0, base * (1.0 + jitter * (2.0 * rand() - 1.0)))


async def snapshot_channels(client: AMIClient) -> list[Message]:
    """Every channel Asterisk has right now: the ``CoreShowChannel`` entries of
    ``CoreShowChannels`` (needs the ``system`` or ``reporting`` write class)."""
    listed = await client.action_list("CoreShowChannels")
    return [entry for entry in listed.events if entry.get("Event") == "CoreShowChannel"]


class ReconnectingClient:
    """Yields events across reconnects; ``action()`` goes to the current connection.

    ``on_connect(client)`` is awaited after every successful login, before any event of that
    connection is yielded; an ``AMIError`` from it fails the connection (closed, backoff, retry).
    The backoff starts over only after a connection stayed up ``healthy_after`` seconds: a peer
    that accepts the login and then sends garbage is retried ever more slowly, not every second.

    A refused login is reported as one line naming the user, and, when the same login worked
    before on this client, as a password changed on the PBX; ``auth_hint`` says how to fix it.
    """

    def __init__(
        self,
        params: ConnectParams,
        *,
        on_state: Callable[[ConnectionState], None] | None = None,
        on_connect: Callable[[AMIClient], Awaitable[None]] | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        jitter: float = 0.2,
        client_factory: Callable[[], AMIClient] = AMIClient,
        healthy_after: float = 30.0,
        auth_hint: str = AUTH_HINT,
    ) -> None:
        self.params = params
        self.on_state = on_state
        self.on_connect = on_connect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jitter = jitter
        self.healthy_after = healthy_after
        self.auth_hint = auth_hint
        self._logged_in = False  # a login with these params succeeded before
        self._factory = client_factory
        self._client: AMIClient | None = None
        self._stopped = asyncio.Event()

    @property
    def client(self) -> AMIClient | None:
        """The live connection, or None while (re)connecting."""
        client = self._client
        return client if client is not None and client.connected else None

    def _notify(
        self, state: StateName, delay: float | None = None, error: str | None = None
    ) -> None:
        if self.on_state is not None:
            self.on_state(ConnectionState(state, delay, error))

    def _describe(self, exc: AMIError) -> str:
        """The one-line reason for an ``error`` state; never the secret."""
        if not isinstance(exc, AuthenticationFailed) or "challenge" in str(exc):
            return exc.describe()
        if not self._logged_in:
            return f"{exc.describe()}; {self.auth_hint}"
        p = self.params
        return (
            f"authentication failed for AMI user {p.username!r} at {p.host}:{p.port}, which "
            "logged in before: was the AMI password changed in Asterisk's manager.conf? "
            f"{self.auth_hint}"
        )

    async def _open(self) -> AMIClient:
        p = self.params
        client = self._factory()
        client.reply_timeout = p.timeout
        try:
            await client.connect(p.host, p.port, tls=p.tls, cafile=p.cafile, timeout=p.timeout)
            await client.login(p.username, p.secret, auth=p.auth, events=p.events)
        except BaseException:
            await client.close()
            raise
        if p.ping_interval:
            client.start_keepalive(p.ping_interval, p.ping_timeout or p.timeout)
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopped.wait()

    async def events(self) -> AsyncIterator[Message]:
        """Every event from every connection until ``close()``."""
        batches = self.event_batches()
        try:
            async for batch in batches:
                for event in batch:
                    yield event
        finally:
            await batches.aclose()

    async def event_batches(self) -> AsyncGenerator[list[Message], None]:
        """Like ``events()``, as lists (one per socket read): a busy consumer saves two
        ``async for`` steps per event (``AMIClient.event_batches``)."""
        attempt = 0
        while not self._stopped.is_set():
            self._notify("connecting")
            try:
                self._client = client = await self._open()
                self._logged_in = True
                if self.on_connect is not None:
                    await self.on_connect(client)
            except AMIError as exc:
                await self._drop()
                self._notify("error", error=self._describe(exc))
            except Exception as exc:  # a bug in on_connect: back off like any failed connection
                await self._drop()
                self._notify("error", error=f"{type(exc).__name__}: {exc}")
            except BaseException:
                await self._drop()
                raise
            else:
                self._notify("connected")
                loop = asyncio.get_running_loop()
                since = loop.time()
                batches = client.event_batches()
                try:
                    async for batch in batches:
                        yield batch
                except AMIError as exc:
                    self._notify("error", error=exc.describe())
                finally:
                    await batches.aclose()
                    await self._drop()
                if loop.time() - since >= self.healthy_after:
                    attempt = 0  # it was a good connection: the next try comes quickly
            if self._stopped.is_set():
                break
            delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max, self.jitter)
            attempt += 1
            self._notify("reconnecting", delay=delay)
            await self._pause(delay)
        self._notify("closed")

    async def action(
        self, name: str, headers: Headers | None = None, **extra: str | int | Sequence[str | int]
    ) -> Message:
        """Run an action on the current connection; ConnectionLost while disconnected."""
        client = self.client
        if client is None:
            raise ConnectionLost("not connected to AMI (reconnecting)")
        return await client.action(name, merge_headers(headers, extra))

    async def close(self) -> None:
        """Stop reconnecting and close the current connection (logging off)."""
        self._stopped.set()
        if self._client is not None:
            await self._client.logoff()


async def follow(
    params: ConnectParams, on_state: Callable[[ConnectionState], None] | None = None
) -> AsyncIterator[Message]:
    """Shorthand: ``async for event in follow(params, print): ...``."""
    client = ReconnectingClient(params, on_state=on_state)
    try:
        async for event in client.events():
            yield event
    finally:
        await client.close()
