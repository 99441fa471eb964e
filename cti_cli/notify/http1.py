"""Keep-alive HTTP/1.1 POSTs to one origin: h11 for the protocol, asyncio streams for I/O.

Why not httpx here: a webhook delivery is always the same small POST to the same origin, and
httpx spends ≈0.3 ms of CPU on each one (request/URL models, the connection pool's liveness
poll of every idle connection, anyio wrappers) — at 100 calls/s with 4–5 events per call that
alone was a third of the agent's CPU. This client does only that job: a pool of at most
``max_connections`` keep-alive connections, TLS verified with the same trust as httpx (its
``create_ssl_context``: certifi, ``SSL_CERT_FILE``/``SSL_CERT_DIR``), ``user:password@`` in the
URL sent as Basic auth as httpx does, and the start of each answer. Timeouts are the caller's
(``asyncio.timeout``): a request cancelled half-way closes its connection, never reuses it.

A request that fails on a *reused* connection before any byte of an answer arrived (the server
closed it while idle: a race no client can avoid) is sent again once on a new connection; the
receiver's dedup key (``X-CTI-Delivery``) makes that safe. Proxies are not spoken: with a proxy
in the environment the deliverer uses httpx instead (``proxy_for``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import h11

READ_CHUNK = 65536
KEEP_BODY = 4096  # the start of an answer kept for reasons and Zammad's "reject"
DRAIN_LIMIT = 65536  # read up to this much of a longer answer to keep the connection


class HttpError(Exception):
    """No (complete) answer: the connection failed or the server broke the protocol."""


class ConnectError(HttpError):
    """The connection (TCP or TLS) could not be made."""


class CannotSend(HttpError):
    """This request can never be sent as it is (a URL or header h11 refuses): not retried."""


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
        port = parts.port or default
        shown = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii")
        host_header = shown if port == default else f"{shown}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
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


class _Connection:
    __slots__ = ("h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        """Still open (known without a syscall: asyncio has already read any EOF the server
        sent while the connection was idle)."""
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


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
        async with self._slots:
            connection, reused = await self._connection()
            try:
                return await self._exchange(connection, body, headers)
            except _Stale as exc:
                connection.close()
                if not reused:
                    raise _failure(exc) from None
            except BaseException:
                connection.close()
                raise
            connection = await self._connect()  # the idle one was closed under us: once more
            try:
                return await self._exchange(connection, body, headers)
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
        try:
            reader, writer = await asyncio.open_connection(
                origin.host, origin.port, ssl=context, limit=READ_CHUNK
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, connection: _Connection, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Answer:
        origin = self.origin
        conn = connection.h11
        head = [
            (b"Host", origin.host_header),
            (b"Content-Length", str(len(body)).encode()),
            *headers,
        ]
        if origin.authorization is not None:
            head.append((b"Authorization", origin.authorization))
        try:
            data = conn.send(h11.Request(method=b"POST", target=origin.target, headers=head))
            data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:  # a header value h11 refuses: never sent
            raise CannotSend(str(exc)) from None
        writer = connection.writer
        try:
            writer.write(data)
            await writer.drain()
        except OSError as exc:
            raise _Stale() from exc
        response: h11.Response | None = None
        kept = bytearray()
        seen = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if response is None:  # stray bytes on an idle connection look like this, too
                    raise _Stale() from exc
                raise RemoteProtocolError(f"not an HTTP/1.1 answer: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    chunk = await connection.reader.read(READ_CHUNK)
                except OSError as exc:
                    if response is None:
                        raise _Stale() from exc
                    raise RemoteProtocolError(str(exc) or type(exc).__name__) from exc
                if not chunk and response is None:
                    raise _Stale()
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Data):
                seen += len(event.data)
                if len(kept) < KEEP_BODY:
                    kept += event.data[: KEEP_BODY - len(kept)]
                if seen > DRAIN_LIMIT:  # a long answer: not worth reading to keep the line
                    connection.close()
                    break
            elif isinstance(event, h11.EndOfMessage):
                self._recycle(connection)
                break
            elif isinstance(event, h11.ConnectionClosed):
                if response is None:
                    raise _Stale()
                connection.close()  # an answer ended by closing: complete, not reusable
                break
        assert response is not None
        return _answer(response, bytes(kept))

    def _recycle(self, connection: _Connection) -> None:
        conn = connection.h11
        if not self._closed and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()


class _Stale(Exception):
    """The connection ended before any answer: maybe closed while idle (retry once)."""


def _failure(stale: _Stale) -> RemoteProtocolError:
    cause = stale.__cause__
    if isinstance(cause, h11.RemoteProtocolError):
        return RemoteProtocolError(f"not an HTTP/1.1 answer: {cause}")
    if cause is not None:
        return RemoteProtocolError(str(cause) or type(cause).__name__)
    return RemoteProtocolError("the server closed the connection without an answer")


def _answer(response: h11.Response, body: bytes) -> Answer:
    location = retry_after = None
    for name, value in response.headers:
        if name == b"location" and location is None:
            location = value.decode("latin-1")
        elif name == b"retry-after" and retry_after is None:
            retry_after = value.decode("latin-1")
    return Answer(
        response.status_code,
        response.reason.decode("latin-1"),
        location,
        retry_after,
        body,
    )
