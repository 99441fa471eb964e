"""The agent's small HTTP server (`[agent] listen`): h11 for the protocol, asyncio for I/O.

Routes are plain async functions; a response body is bytes, or an async iterator of chunks for
streams (server-sent events), sent chunked. Kept deliberately small: the agent serves a few
fixed paths to loopback or a reverse proxy, never arbitrary uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from cti_cli.textsafe import utf8

log = logging.getLogger("cti.http")

MAX_REQUEST = 64 * 1024
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


@dataclass
class Response:
    status: int = 200
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    body = utf8(json.dumps(data, ensure_ascii=False, separators=(",", ":"))) + b"\n"
    return Response(status, body, "application/json")


def parse_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9377` / `[::1]:9377` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpServer:
    """Serves `routes` (exact paths) until closed."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST)
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            while True:
                request = await self._read_request(conn, reader)
                if request is None:
                    break
                response = await self._dispatch(request)
                await self._send(conn, writer, response)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (ConnectionError, TimeoutError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels open connections (a long-lived event stream, say); ending the task
            # normally spares asyncio's start_server callback a CancelledError (Python 3.11).
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(READ_TIMEOUT):
                    data = await reader.read(8192)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None
        assert request is not None
        target = request.target.decode("ascii", "replace")
        parts = urlsplit(target)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        return Request(request.method.decode(), parts.path, parse_qs(parts.query), headers)

    async def _dispatch(self, request: Request) -> Response:
        handler = self.routes.get(request.path)
        if handler is None:
            return Response(404, b"not found\n")
        if request.method != "GET":
            return Response(405, b"method not allowed\n", headers={"Allow": "GET"})
        try:
            return await handler(request)
        except Exception:
            log.exception("http handler for %s failed", request.path)
            return Response(500, b"internal error\n")

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response
    ) -> None:
        headers = [("Content-Type", response.content_type), ("Cache-Control", "no-store")]
        headers += list(response.headers.items())
        body = response.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        if isinstance(body, bytes):
            writer.write(conn.send(h11.Data(data=body)))
        else:
            async for chunk in body:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
