"""`cti watch` as an admin runs it against the real Asterisk: call events, raw tail, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cti_cli import config as cfg

pytestmark = pytest.mark.lab
CTI = str(Path(sys.executable).parent / "cti")


@pytest.fixture
def conf(tmp_path: Path, lab: Any) -> Path:
    path = tmp_path / "cti.toml"
    info = lab.info
    cfg.save(path, cfg.Config.model_validate({
        "server": {"host": info.ami_host, "port": info.ami_port, "login": info.ami_user,
                   "password": info.ami_secret},
    }))  # fmt: skip
    return path


def start_watch(conf: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = subprocess.Popen(
        [CTI, "-c", str(conf), "watch", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    return proc


def wait_connected(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    line = b""
    while b"connected" not in line or b"connecting" in line:
        assert time.monotonic() < deadline, "watch never connected"
        line = proc.stderr.readline()
        assert line, "watch exited before connecting"


def interrupt(proc: subprocess.Popen[bytes]) -> tuple[str, str, int]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return out.decode("utf-8"), err.decode("utf-8"), proc.returncode


def test_watch_json_prints_call_events_and_exits_0_on_ctrl_c(conf: Path, lab: Any) -> None:
    lab.reset_phones()
    proc = start_watch(conf, "--json")
    try:
        wait_connected(proc)
        lab.call("300", caller="+79165550101", caller_name="Анна Сергеевна", talk=1.0)
        lab.wait_idle(30)
        time.sleep(0.5)
    finally:
        out, err, code = interrupt(proc)
    assert code == 0, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["caller"] == "+79165550101"]
    assert mine, out
    assert {e["caller_name"] for e in mine} == {"Анна Сергеевна"}
    assert mine[-1]["event"] == "ended"
    assert mine[-1]["answered"] is True
    assert mine[-1]["time"] is not None


def test_watch_events_filter_tails_matching_raw_events(conf: Path, lab: Any) -> None:
    lab.reset_phones()
    proc = start_watch(conf, "--events", "--json", "--filter", "Event=Dial*")
    try:
        wait_connected(proc)
        lab.call("101", caller="+79165550102", caller_name="Борис", talk=0.5)
        lab.wait_idle(30)
        time.sleep(0.5)
    finally:
        out, err, code = interrupt(proc)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events
    assert {e["Event"] for e in events} <= {"DialBegin", "DialEnd", "DialState"}
    assert any(e.get("CallerIDName") == "Борис" for e in events)


def test_watch_without_server_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    result = subprocess.run(
        [CTI, "-c", str(tmp_path / "none.toml"), "watch"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "server.host is not set" in result.stderr


def test_watch_keeps_retrying_while_server_is_down(tmp_path: Path, lab: Any) -> None:
    path = tmp_path / "cti.toml"
    cfg.save(path, cfg.Config.model_validate({
        "server": {"host": "127.0.0.1", "port": lab.info.sip_port, "login": "x", "password": "y",
                   "timeout": 1.0},
    }))  # fmt: skip
    proc = start_watch(path, "--json")
    time.sleep(3)
    _, err, code = interrupt(proc)
    assert code == 0
    assert "reconnecting in" in err
    assert "error: connection refused: " in err


@pytest.mark.parametrize("user", ["all", "nosystem"])
def test_watch_asks_asterisk_for_only_the_events_it_reads(lab: Any, user: str) -> None:
    """The call views of `cti watch` install AMI event filters like the agent: with
    `write = system` Asterisk 22 never sends a call's VarSet/Newexten flood to watch; without
    it every event still comes and is dropped here, and the call is followed either way."""
    import asyncio

    from cti_cli.ami.reconnect import ConnectionState, ConnectParams
    from cti_cli.calls import CallEvent, CallTracker
    from cti_cli.cli.watch import follow_calls

    info = lab.info
    login, secret = ((info.ami_user, info.ami_secret) if user == "all"
                     else (info.ami_nosystem_user, info.ami_nosystem_secret))  # fmt: skip
    caller = "+79165550131" if user == "all" else "+79165550132"
    lab.reset_phones()

    async def watch_one_call() -> tuple[list[CallEvent], dict[bytes, int]]:
        params = ConnectParams(info.ami_host, info.ami_port, login, secret, timeout=10)
        tracker, seen = CallTracker(), list[CallEvent]()
        connected = asyncio.Event()

        def on_state(state: ConnectionState) -> None:
            if state.state == "connected":
                connected.set()

        client, dropped = follow_calls(params, tracker, seen.extend, on_state)

        async def pump() -> None:
            async for event in client.events():
                seen.extend(tracker.feed(event))

        task = asyncio.create_task(pump())
        try:
            async with asyncio.timeout(20):
                await connected.wait()
            await asyncio.to_thread(lab.call, "300", caller=caller, caller_name="Анна",
                                    talk=1.0)  # fmt: skip
            await asyncio.to_thread(lab.wait_idle, 30)
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            await client.close()
        return seen, dict(dropped)

    seen, dropped = asyncio.run(watch_one_call())
    mine = [e for e in seen if e.caller == caller]
    assert [e.kind for e in mine][-1:] == ["ended"], mine
    assert {e.caller_name for e in mine} == {"Анна"}
    noise = {name: n for name, n in dropped.items()
             if name in (b"VarSet", b"Newexten", b"DeviceStateChange")}  # fmt: skip
    if user == "all":
        assert not noise, f"Asterisk still sent watch events it does not read: {noise}"
    else:
        assert noise.get(b"VarSet", 0) > 10, dropped
