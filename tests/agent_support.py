"""Real parts for agent tests: an HTTP receiver that checks signatures, and `cti agent` run as
a real process (so SIGTERM and SIGKILL are real), configured through a real TOML file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from cti_cli.notify.signing import verify

SECRET = "s3cr3t-вебхук"


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float
    signature_ok: bool

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event(self) -> str:
        return self.headers["x-cti-event"]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies every request the way the README says."""

    secret: str = SECRET
    status: Callable[[Hit], int] = lambda hit: 200
    hits: list[Hit] = field(default_factory=list)
    accepted: list[Hit] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cti/events"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = verify(
                    receiver.secret,
                    headers.get("x-cti-timestamp", ""),
                    body,
                    headers.get("x-cti-signature", ""),
                    now=time.time(),
                )
                hit = Hit(headers, body, time.time(), ok)
                with receiver._lock:
                    receiver.hits.append(hit)
                code = receiver.status(hit) if ok else 401
                if 200 <= code < 300:
                    with receiver._lock:
                        receiver.accepted.append(hit)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, event: str, **match: str) -> list[Hit]:
        with self._lock:
            hits = list(self.accepted)
        out = []
        for hit in hits:
            if hit.event != event:
                continue
            data = hit.json
            call = data.get("call", data)
            if all(call.get(k) == v or data.get(k) == v for k, v in match.items()):
                out.append(hit)
        return out

    def wait(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                seen = [(h.event, h.json.get("call", h.json).get("caller")) for h in self.accepted]
                raise AssertionError(f"timed out waiting for {what or pred}; accepted: {seen}")
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)


@dataclass
class AgentProcess:
    """`cti agent` in a subprocess, logging to a file the test can read."""

    config: Path
    listen: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {**os.environ, "CTI_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
        env.pop("CTI_SERVER__PASSWORD", None)
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cti_cli", "agent", "-v"],
            stdout=handle, stderr=handle, env=env,
        )  # fmt: skip
        handle.close()
        self.wait_http()
        return self

    def wait_http(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.text()}")
            try:
                httpx.get(f"http://{self.listen}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"agent never listened on {self.listen}:\n{self.text()}")

    def health(self) -> tuple[int, dict[str, Any]]:
        reply = httpx.get(f"http://{self.listen}/healthz", timeout=2)
        return reply.status_code, reply.json()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                code, last = self.health()
                if code == 200:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"agent not healthy: {last}\n{self.text()[-3000:]}")

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, needle: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the agent log:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(encoding="utf-8").splitlines()
