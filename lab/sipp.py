"""SIPp processes: one UAS per operator phone (answer / noanswer / busy) and one UAC per call.

Scenario XML lives in lab/sipp/; timings are rendered into a per-instance copy, the caller's
number, UTF-8 display name and dialled number are injected with `-key`.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.hostdeps import which
from lab.ports import free_udp_port
from lab.procs import cmdline_has, spawn, stop_pid
from lab.render import SIPP, render_file

PHONE_MODES = ("answer", "noanswer", "busy", "decline")
PCAP_CANDIDATES = ("/usr/share/sip-tester/g711a.pcap", "/usr/share/sipp/pcap/g711a.pcap")


@dataclass
class Phone:
    ext: str
    port: int
    mode: str
    answer_after: float
    pid: int


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _pcap() -> str:
    for candidate in PCAP_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise FileNotFoundError("SIPp's g711a.pcap not found (package sip-tester)")


class Sipp:
    """Starts SIPp processes for one lab instance and remembers every PID it started."""

    def __init__(self, workdir: Path, sip_port: int, *, tied: bool) -> None:
        self.workdir = workdir
        self.sip_port = sip_port
        self.tied = tied
        self.calls: list[subprocess.Popen[bytes]] = []
        self._seq = itertools.count(1)
        workdir.mkdir(parents=True, exist_ok=True)

    def _base(self, scenario: Path, tag: str, local_ip: str = "127.0.0.1") -> list[str]:
        sipp = which("sipp") or "sipp"
        return [
            sipp, "-sf", str(scenario), "-i", local_ip, "-mi", "127.0.0.1",
            "-mp", str(free_udp_port()), "-cp", str(free_udp_port()), "-nostdin",
            "-trace_err", "-error_file", str(self.workdir / f"{tag}.errors.log"),
        ]  # fmt: skip

    def start_phone(self, ext: str, port: int, mode: str, answer_after: float) -> Phone:
        if mode not in PHONE_MODES:
            raise ValueError(f"phone mode {mode!r} unknown; use one of {', '.join(PHONE_MODES)}")
        scenario = self.workdir / f"phone-{ext}-{mode}.xml"
        render_file(SIPP / f"uas_{mode}.xml", scenario, {"answer_ms": _ms(answer_after)})
        argv = [*self._base(scenario, f"phone-{ext}"), "-p", str(port), "-aa"]
        proc = spawn(argv, self.workdir / f"phone-{ext}.log", tied=self.tied, quiet_stdout=True)
        return Phone(ext, port, mode, answer_after, proc.pid)

    def stop_phone(self, phone: Phone) -> None:
        if cmdline_has(phone.pid, f"phone-{phone.ext}-"):
            stop_pid(phone.pid, timeout=5)

    def start_call(
        self,
        dialed: str,
        caller: str,
        caller_name: str,
        talk: float,
        cancel_after: float | None,
        local_ip: str = "127.0.0.1",
    ) -> subprocess.Popen[bytes]:
        """One UAC call; `local_ip` picks the endpoint Asterisk identifies (see pjsip.conf)."""
        n = f"{os.getpid()}-{next(self._seq)}"  # CLI runs share the dir: pid keeps logs apart
        kind = "abandon" if cancel_after is not None else "call"
        scenario = self.workdir / f"uac-{n}.xml"
        values: dict[str, object] = {
            "talk_ms": _ms(talk),
            "cancel_ms": _ms(cancel_after or 0),
            "pcap": _pcap(),
        }
        render_file(SIPP / f"uac_{kind}.xml", scenario, values)
        argv = [
            *self._base(scenario, f"uac-{n}", local_ip),
            "-p", str(free_udp_port()), "-m", "1", "-timeout", "300", "-timeout_error",
            "-key", "dialed", dialed, "-key", "caller_num", caller,
            "-key", "caller_name", caller_name,
            f"127.0.0.1:{self.sip_port}",
        ]  # fmt: skip
        proc = spawn(argv, self.workdir / f"uac-{n}.log", tied=True, quiet_stdout=True)
        self.calls.append(proc)
        return proc

    def running_calls(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.calls if p.poll() is None]

    def wait_calls(self, timeout: float) -> None:
        for proc in self.running_calls():
            proc.wait(timeout=timeout)

    def stop_calls(self) -> None:
        for proc in self.running_calls():
            stop_pid(proc.pid, timeout=5)
            proc.poll()
