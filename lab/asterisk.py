"""Run one Asterisk instance inside the sid chroot: `asterisk -f -n -C <instance asterisk.conf>`."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from lab.errors import LabUnavailable
from lab.procs import alive, cmdline_has, spawn, stop_pid, wait_gone

ASTERISK = "/usr/sbin/asterisk"


class Asterisk:
    """Handle on an instance: `conf` is the asterisk.conf path as seen inside the chroot."""

    def __init__(self, root: Path, conf: str, pid: int | None = None) -> None:
        self.root = root
        self.conf = conf
        self.pid = pid

    def _env(self, odbc_ini: str) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "ODBCINI": odbc_ini,  # per-instance DSN (port and database differ per instance)
            "ODBCSYSINI": "/etc",
        }

    def start(self, log: Path, odbc_ini: str, *, tied: bool, timeout: float = 60.0) -> None:
        argv = ["chroot", str(self.root), ASTERISK, "-f", "-n", "-C", self.conf]
        proc = spawn(argv, log, tied=tied, env=self._env(odbc_ini))
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise LabUnavailable(f"asterisk exited with {proc.returncode}:\n{_tail(log)}")
            done = self._rx("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LabUnavailable(f"asterisk did not boot in {timeout:.0f}s:\n{_tail(log)}")
            time.sleep(0.1)

    def _rx(self, command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        argv = ["chroot", str(self.root), ASTERISK, "-C", self.conf, "-rx", command]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, encoding="utf-8", errors="replace",
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "timeout")

    def cli(self, command: str) -> str:
        done = self._rx(command)
        if done.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed: {done.stderr.strip()}")
        return done.stdout

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid) and cmdline_has(self.pid, self.conf)

    def active_channels(self) -> int:
        out = self.cli("core show channels count")
        match = re.search(r"(\d+) active channels?", out)
        if match is None:
            raise RuntimeError(f"unexpected 'core show channels count' output: {out!r}")
        return int(match.group(1))

    def stop(self) -> None:
        if self.pid is None or not self.running():
            return
        self._rx("core stop now", timeout=10)
        if not wait_gone(self.pid, 10):
            stop_pid(self.pid)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
