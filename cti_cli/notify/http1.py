"""Keep-alive HTTP/1.1 POSTs to one origin: llhttp (httptools) reads the answers, an asyncio
protocol does the I/O.

Why not httpx here: a webhook delivery is always the same small POST to the same origin, and
httpx spends ≈0.3 ms of CPU on each one (request/URL models, the connection pool's liveness
poll of every idle connection, anyio wrappers) — at 100 calls/s with 4–5 events per call that
alone was a third of the agent's CPU. This client does only that job: a pool of at most
``max_connections`` keep-alive connections, TLS verified with the same trust as httpx (its
``create_ssl_context``: certifi, ``SSL_CERT_FILE``/``SSL_CERT_DIR``), ``user:password@`` in the
URL sent as Basic auth as httpx does, and the start of each answer. Timeouts are the caller's
(``asyncio.timeout``): a request cancelled half-way aborts its connection (never reused, its
socket closed at once even with unsent bytes), so a server that never reads costs nothing after
the timeout. Bytes that arrive while a connection is idle (an answer nobody asked for) retire it:
they can never be taken for the next request's answer. An answer that arrives before the whole
request was sent is read, even when the server then resets the connection (413 on a big body).
Characters a request target may not hold (non-ASCII, spaces) are sent percent-encoded (UTF-8)
as httpx does; a header name or value HTTP does not allow (CR, LF, NUL...) is never sent.

Why llhttp and not h11 (which the agent's own HTTP server uses): the request is always the same
shape, so it is written directly, and answers are parsed in C; h11's per-request event objects,
state machine and validation were two thirds of this client's CPU (bench/e2e_latency.py).

A request that fails on a *reused* connection before any byte of an answer arrived (the server
closed it while idle: a race no client can avoid) is sent again once on a new connection; the
receiver's dedup key (``X-CTI-Delivery``) makes that safe. Proxies are not spoken: with a proxy
in the environment the deliverer uses httpx instead (``proxy_for``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import urllib.request
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, unquote, urlsplit

import httptools

READ_CHUNK = 65536  # reading pauses while this much waits for the exchange
KEEP_BODY = 4096  # the start of an answer kept for reasons and Zammad's "reject"
DRAIN_LIMIT = 65536  # read up to this much of a longer answer to keep the connection
# kept as they are in a request target; anything else (non-ASCII, space, controls) is %-encoded
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# RFC 9110 field names (tokens) and values (no CR, LF, NUL or other controls but HTAB; no
# whitespace at either end): what h11 enforces too
_FIELD_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")


class HttpError(Exception):
    """No (complete) answer: the connection failed or the server broke the protocol."""


class ConnectError(HttpError):
    """The connection (TCP or TLS) could not be made."""


class CannotSend(HttpError):
    """This request can never be sent as it is (a header HTTP does not allow): not retried."""


class RemoteProtocolError(HttpError):
    """The server closed the connection or sent something that is not HTTP/1.1."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    location: str | None
    retry_after: str | None
    body: bytes  # at most KEEP_BODY bytes


@dataclass(frozen=True)
class Origin:
    """Where and how to connect, from a webhook URL (read once)."""

    scheme: str
    host: str
    port: int
    target: bytes  # path and query
    host_header: bytes
    authorization: bytes | None

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise ValueError("the URL has no host")
        default = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default
        except ValueError:  # not its text: a password with an unencoded "/" or "?" lands here
            raise ValueError("the URL's port is not a number from 1 to 65535") from None
        if ":" not in host:  # a name (IPv6 literals keep theirs): its ASCII (IDNA) form
            host = host.encode("idna").decode("ascii")
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        if not _FIELD_VALUE.fullmatch(host_header.encode("utf-8", "replace")):
            raise ValueError("the URL's host has characters a Host header cannot carry")
        target = quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_TARGET_SAFE)
        auth = None
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            auth = b"Basic " + base64.b64encode(pair.encode())
        return cls(parts.scheme, host, port, target.encode(), host_header.encode(), auth)


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) names for
    ``url``, as httpx would use it; None for a direct connection."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    if urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection. What the server sends waits in ``inbox`` until the exchange
    hands it to the parser, and stays there after the connection is lost (a reset does not erase an
    answer already received, as it would in a StreamReader)."""

    __slots__ = ("_paused", "_waiter", "busy", "ended", "error", "inbox", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.inbox = bytearray()
        self.busy = False  # an exchange is under way: bytes from the server are expected
        self.ended = False  # EOF or lost: nothing more will arrive
        self.error: Exception | None = None  # why it was lost, if not a clean close
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # an answer nobody asked for: the line can no longer be trusted
            self.close()
            return
        self.inbox += data
        if len(self.inbox) >= READ_CHUNK and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.ended = True
        self._wake()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if self.error is None:
            self.error = exc
        self._wake()

    # for the client

    def usable(self) -> bool:
        """Still open and quiet (known without a syscall: asyncio has already read any EOF or
        byte the server sent while the connection was idle)."""
        transport = self.transport
        return not self.ended and transport is not None and not transport.is_closing()

    async def receive(self) -> bytes:
        """What arrived since the last call; b"" once the server closed the connection; the
        error (OSError) when it was lost to one, after what arrived before it."""
        while not self.inbox and not self.ended:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.inbox:
            data = bytes(self.inbox)
            self.inbox.clear()
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            return data
        if isinstance(self.error, OSError):
            raise self.error
        if self.error is not None:
            raise OSError(str(self.error) or type(self.error).__name__)
        return b""

    def close(self) -> None:
        """Abort: unsent bytes are dropped and the socket closed now (no flush, no TLS
        close_notify to wait for)."""
        self.ended = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class PostClient:
    """POSTs to one URL over at most ``max_connections`` keep-alive connections."""

    def __init__(self, url: str, *, max_connections: int, user_agent: str) -> None:
        self.origin = Origin.of(url)
        self._user_agent = user_agent.encode()
        self._ssl: ssl.SSLContext | None = None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def post(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        """Send one POST and read the answer's start; HttpError when there is no answer."""
        request = self._request(body, headers)  # CannotSend before any connection is made
        async with self._slots:
            connection, reused = await self._connection()
            try:
                return await self._exchange(connection, request)
            except _Stale as exc:
                connection.close()
                if not reused:
                    raise _failure(exc) from None
            except BaseException:
                connection.close()
                raise
            connection = await self._connect()  # the idle one was closed under us: once more
            try:
                return await self._exchange(connection, request)
            except _Stale as exc:
                connection.close()
                raise _failure(exc) from None
            except BaseException:
                connection.close()
                raise

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # ------------------------------------------------------------ plumbing

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
            connection.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        origin = self.origin
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                import httpx  # its trust store, so both transports verify alike

                self._ssl = httpx.create_ssl_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, origin.host, origin.port, ssl=context
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        transport = connection.transport
        if transport is None or not connection.usable():
            raise _Stale()
        connection.busy = True
        # no drain: the transport keeps what the socket does not take yet, the answer is awaited
        # meanwhile (an early one is read), and the caller's timeout bounds it all; a send error
        # loses the connection, which ends the wait below
        transport.write(request)
        reader = _Reader()
        parser = httptools.HttpResponseParser(reader)
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)  # bare LF, as h11
        reader.parser = parser
        while True:
            try:
                chunk = await connection.receive()
            except OSError as exc:
                if reader.status is None:
                    raise _Stale() from exc
                raise RemoteProtocolError(str(exc) or type(exc).__name__) from exc
            if not chunk:  # the server closed the connection
                if reader.status is None:
                    raise _Stale()
                if not reader.close_delimited():
                    raise RemoteProtocolError(
                        "not an HTTP/1.1 answer: the server closed the connection"
                        " before the end of its answer"
                    )
                connection.close()  # an answer ended by closing: complete, not reusable
                break
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserUpgrade:
                raise RemoteProtocolError("not an HTTP/1.1 answer: it switched protocols") from None
            except httptools.HttpParserError as exc:
                if reader.complete:  # bytes after the answer: of no request of ours
                    reader.reusable = False
                elif reader.status is None:  # stray bytes on an idle connection look like this
                    raise _Stale() from exc
                else:
                    raise RemoteProtocolError(f"not an HTTP/1.1 answer: {exc}") from None
            if reader.complete:
                self._recycle(connection, reusable=reader.reusable)
                break
            if reader.seen > DRAIN_LIMIT:  # a long answer: not worth reading to keep the line
                connection.close()
                break
        assert reader.status is not None
        return Answer(
            reader.status,
            bytes(reader.reason).decode("latin-1"),
            reader.location,
            reader.retry_after,
            bytes(reader.kept),
        )

    def _request(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The whole request, head and body; CannotSend for a header HTTP does not allow."""
        origin = self.origin
        parts = [
            b"POST ", origin.target, b" HTTP/1.1\r\nHost: ", origin.host_header,
            b"\r\nContent-Length: ", str(len(body)).encode(),
        ]  # fmt: skip
        for name, value in headers:
            if name not in _GOOD_NAMES:
                if not _FIELD_NAME.fullmatch(name):
                    raise CannotSend(f"invalid header name {name!r}")
                if len(_GOOD_NAMES) < 64:
                    _GOOD_NAMES.add(name)
            if not _FIELD_VALUE.fullmatch(value):
                shown = name.decode("latin-1")  # never the value: it may be a credential
                raise CannotSend(f"the value of header {shown!r} has characters HTTP forbids")
            parts += (b"\r\n", name, b": ", value)
        if origin.authorization is not None:
            parts += (b"\r\nAuthorization: ", origin.authorization)
        parts += (b"\r\n\r\n", body)
        return b"".join(parts)

    def _recycle(self, connection: _Connection, *, reusable: bool) -> None:
        transport = connection.transport
        if (
            reusable
            and not self._closed
            and connection.usable()
            and transport is not None
            and not transport.get_write_buffer_size()  # an early answer: the body is still going
            and not connection.inbox
        ):
            connection.busy = False
            self._idle.append(connection)
        else:
            connection.close()


_GOOD_NAMES: set[bytes] = set()  # header names already checked (the same few on every request)


class _Reader:
    """The parser's callbacks for one exchange: the final answer's status, the two headers
    the deliverer reads, and the start of the body. Informational (1xx) answers are skipped."""

    __slots__ = (
        "complete", "framed", "kept", "location", "parser", "reason", "retry_after", "reusable",
        "seen", "status",
    )  # fmt: skip

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.status: int | None = None  # set once the final answer's head is complete
        self.reason = bytearray()
        self.location: str | None = None
        self.retry_after: str | None = None
        self.framed = False  # Content-Length or Transfer-Encoding: not ended by closing
        self.kept = bytearray()
        self.seen = 0
        self.complete = False
        self.reusable = False

    def close_delimited(self) -> bool:
        """The answer's body runs to the end of the connection (so closing completes it)."""
        status = self.status
        return status is not None and not self.framed and status not in (204, 304)

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer in the same bytes: of no request of ours
            self.reusable = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            self.framed = True
        elif lower == b"location" and self.location is None:
            self.location = value.decode("latin-1")
        elif lower == b"retry-after" and self.retry_after is None:
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status >= 200 and self.status is None:
            self.status = status

    def on_body(self, body: bytes) -> None:
        if self.status is None or self.complete:
            return
        self.seen += len(body)
        if len(self.kept) < KEEP_BODY:
            self.kept += body[: KEEP_BODY - len(self.kept)]

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.status is None:  # an informational answer (100 Continue): the real one follows
            self.reason.clear()
            self.location = self.retry_after = None
            self.framed = False
            return
        assert self.parser is not None
        self.complete = True
        self.reusable = self.parser.should_keep_alive()


class _Stale(Exception):
    """The connection ended before any answer: maybe closed while idle (retry once)."""


def _failure(stale: _Stale) -> RemoteProtocolError:
    cause = stale.__cause__
    if isinstance(cause, httptools.HttpParserError):
        return RemoteProtocolError(f"not an HTTP/1.1 answer: {cause}")
    if cause is not None:
        return RemoteProtocolError(str(cause) or type(cause).__name__)
    return RemoteProtocolError("the server closed the connection without an answer")
