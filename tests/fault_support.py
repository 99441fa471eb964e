"""Real-lab fault runs: `cti watch` as a real process whose output is read as it comes, AMI
users a test can add, re-key and kick on the lab's Asterisk, and measurements for
docs/reliability.md.

`record(...)` writes what a test measured to `$CTI_MEASURE_DIR/<file>::<test>.json` when
scripts/reliability.py runs the tests (the variable is unset otherwise: nothing is written).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MEASURE_ENV = "CTI_MEASURE_DIR"
CTI = str(Path(sys.executable).parent / "cti")


def record(**values: Any) -> None:
    """Keep this test's measurements (merged with earlier ones of the same test)."""
    folder = os.environ.get(MEASURE_ENV)
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not folder or not current:
        return
    nodeid = current.rsplit(" (", 1)[0]
    file, _, name = nodeid.partition("::")
    key = f"{Path(file).name}::{name}"
    path = Path(folder) / (re.sub(r"[^\w.:-]+", "_", key) + ".json")
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text("utf-8"))["values"]
    data.update(values)
    path.write_text(json.dumps({"test": key, "values": data}, ensure_ascii=False), "utf-8")


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return round(int(found.group(1)) / 1024, 1) if found else None


class Lines:
    """A pipe read line by line in a thread; every line kept with the time it arrived."""

    def __init__(self, stream: Any) -> None:
        self.items: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                self.items.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))

    def lines(self, since: float = float("-inf")) -> list[str]:
        with self._lock:
            return [line for at, line in self.items if at >= since]

    def timed(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.items)

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait(self, pred: Callable[[str], bool], timeout: float, since: float = float("-inf"),
             what: str = "") -> float:  # fmt: skip
        """Until a line (arrived at or after `since`) matches; the time it arrived."""
        deadline = time.monotonic() + timeout
        while True:
            for at, line in self.timed():
                if at >= since and pred(line):
                    return at
            if time.monotonic() > deadline:
                raise AssertionError(f"no line {what or pred} in:\n" + self.text()[-3000:])
            time.sleep(0.05)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


class WatchProcess:
    """`cti watch ARGS` with its stdout and stderr collected line by line."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        self.proc = subprocess.Popen(
            [CTI, "-c", str(config), "watch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def wait_connected(self, timeout: float = 20.0, since: float = float("-inf")) -> float:
        return self.err.wait(lambda line: line.endswith(": connected"), timeout, since,
                             "cti watch: connected")  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.lines() if line.startswith("{")]

    def of(self, caller: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("caller") == caller]

    def wait_event(self, caller: str, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.of(caller) if e["event"] == kind]
            if found:
                return found[0]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"watch showed no {kind} for {caller}:\n"
                                     f"{self.out.text()[-2000:]}\n{self.err.text()[-2000:]}")
            time.sleep(0.05)

    def interrupt(self) -> int:
        """Ctrl-C; the exit code (the pipes are read to their end)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.out.join()
        self.err.join()
        return code


# ------------------------------------------------------------------ the lab's AMI users


def _manager_conf(lab: Any) -> Path:
    return Path(lab.layout.host("etc/manager.conf"))


def add_ami_user(lab: Any, user: str, secret: str) -> None:
    """A manager.conf user of the test's own (read/write all, loopback only), then reload."""
    conf = _manager_conf(lab)
    conf.write_text(
        conf.read_text() + f"\n[{user}]\nsecret = {secret}\ndeny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\nread = all\nwrite = all\n"
    )
    lab.cli("manager reload")


def set_ami_secret(lab: Any, user: str, secret: str) -> None:
    """Change `user`'s secret in manager.conf and `manager reload` (open sessions stay)."""
    conf = _manager_conf(lab)
    text, count = re.subn(rf"(\n\[{re.escape(user)}\]\nsecret = )[^\n]*", rf"\g<1>{secret}",
                          conf.read_text())  # fmt: skip
    assert count == 1, f"no [{user}] in {conf}"
    conf.write_text(text)
    lab.cli("manager reload")


def remove_ami_user(lab: Any, user: str) -> None:
    conf = _manager_conf(lab)
    text = re.sub(rf"\n\[{re.escape(user)}\]\n(?:[^\n\[][^\n]*\n?)*", "\n", conf.read_text())
    conf.write_text(text)
    lab.cli("manager reload")
    kick_ami_user(lab, user)


def kick_ami_user(lab: Any, user: str) -> int:
    """`manager kick session` every connection of `user`; how many there were."""
    kicked = 0
    for line in lab.cli("manager show connected").splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == user and fields[4].isdigit():
            lab.cli(f"manager kick session {fields[4]}")
            kicked += 1
    return kicked


def ami_sessions(lab: Any, user: str) -> int:
    return sum(1 for line in lab.cli("manager show connected").splitlines()
               if line.split()[:1] == [user])  # fmt: skip
