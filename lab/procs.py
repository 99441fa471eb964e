"""Start and stop the lab's child processes by PID; never by name.

Test labs set PR_SET_PDEATHSIG so Asterisk and SIPp die with the Python process that started
them even if it is SIGKILLed; a hand-run lab (`python -m lab up`) must outlive its command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: send `sig` to this child when the Python process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig)


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    tied: bool,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    quiet_stdout: bool = False,
) -> subprocess.Popen[bytes]:
    """Popen in its own session with output to `log`; `tied` = die when this process dies.

    quiet_stdout drops stdout (SIPp repaints its statistics screen there) and keeps stderr.
    """
    preexec: Callable[[], None] | None = die_with_parent if tied else None
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if quiet_stdout else out,
            stderr=out if quiet_stdout else subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec,
        )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


def cmdline_has(pid: int, needle: str) -> bool:
    """Guard against PID reuse: is `pid` still the process we started (its argv names `needle`)?"""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle.encode() in raw


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; works for our children and for adopted PIDs."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_gone(pid, timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone(pid, 5.0)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
