"""A deliberately tiny raw-socket AMI reader for lab checks (independent of cti_cli's client)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

Message = dict[str, str]


class RawAmi:
    """Line-oriented AMI over TCP or TLS: banner, Login, send actions, iterate messages."""

    def __init__(self, host: str, port: int, *, cafile: Path | None = None, timeout: float = 10):
        raw = socket.create_connection((host, port), timeout=timeout)
        if cafile is not None:
            ctx = ssl.create_default_context(cafile=str(cafile))
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self._buf = b""
        self._pending: list[Message] = []  # events that arrived while waiting for a response
        self.banner = self._line()

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("AMI closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8")

    def read(self) -> Message:
        msg: Message = {}
        while True:
            line = self._line()
            if not line:
                if msg:
                    return msg
                continue
            key, _, value = line.partition(":")
            msg.setdefault(key.strip(), value.strip())

    def send(self, **fields: str) -> None:
        text = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.sock.sendall(text.encode("utf-8"))

    def action(self, name: str, **fields: str) -> Message:
        action_id = f"lab-{time.monotonic_ns()}"
        self.send(Action=name, ActionID=action_id, **fields)
        while True:
            msg = self.read()
            if msg.get("ActionID") == action_id and "Response" in msg:
                return msg
            if "Event" in msg:
                self._pending.append(msg)

    def login(self, user: str, secret: str) -> Message:
        return self.action("Login", Username=user, Secret=secret)

    def events(self, until: float) -> Iterator[Message]:
        """Events until the monotonic deadline `until`."""
        while self._pending:
            yield self._pending.pop(0)
        while time.monotonic() < until:
            self.sock.settimeout(max(0.05, until - time.monotonic()))
            try:
                msg = self.read()
            except TimeoutError:
                return
            if "Event" in msg:
                yield msg

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
