"""The demo's service desk: a webhook receiver on loopback that checks every signature the way
the README tells a receiver to, and hands the accepted deliveries to the demo."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cti_cli.notify.signing import verify

__all__ = ["Delivery", "Receiver"]

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Delivery:
    """One accepted webhook: its event, idempotency key and JSON body."""

    event: str
    key: str
    body: dict[str, Any]


class Receiver:
    """`Receiver(secret, on_delivery).start()`; `url` to configure; `stop()` at the end.

    `on_delivery` is called from the server's thread; a delivery retried with the same
    `X-CTI-Delivery` key is acknowledged but handed on once.
    """

    def __init__(self, secret: str, on_delivery: Callable[[Delivery], None]) -> None:
        self.secret = secret
        self.on_delivery = on_delivery
        self.rejected = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cti/events"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413)
                    return
                body = self.rfile.read(length)
                ok = verify(
                    receiver.secret,
                    self.headers.get("X-CTI-Timestamp", ""),
                    body,
                    self.headers.get("X-CTI-Signature", ""),
                    now=time.time(),
                )
                if not ok:
                    with receiver._lock:
                        receiver.rejected += 1
                    self._answer(401)
                    return
                try:
                    data = json.loads(body)
                except (ValueError, RecursionError):
                    self._answer(400)
                    return
                key = self.headers.get("X-CTI-Delivery", "")
                with receiver._lock:
                    new = key not in receiver._seen
                    receiver._seen.add(key)
                self._answer(200)
                if new and isinstance(data, dict):
                    event = str(data.get("event") or self.headers.get("X-CTI-Event", ""))
                    receiver.on_delivery(Delivery(event, key, data))

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="demo-receiver",
                         daemon=True).start()  # fmt: skip
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
