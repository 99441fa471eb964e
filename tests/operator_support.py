"""Real parts for operator-page tests: a fake AMI peer that replays a recorded Asterisk 22 call at
the moments a test chooses, a configured `cti agent` process, and an SSE reader.

The recording (`transcripts/ast22_queue_101_answered.ami`) is a real lab capture: queue 200,
101 and 102 ring, 101 answers, 3 s of talk. Each replay gets its own uniqueids, channel names,
caller and timestamps, so one agent can take several such calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cti_cli.ami.message import Message
from cti_cli.calls import Answered, CallTracker, Ended
from tests.agent_support import AgentProcess, free_port, write_config

TRANSCRIPT = Path(__file__).parent / "transcripts" / "ast22_queue_101_answered.ami"
RECORDED_ID = "1796155126"
RECORDED_CALLER = "+79165550101"
RECORDED_NAME = "Иван Петров"
RECORDED_BRIDGE = "5a1e75da-ec75-4444-81fd-028542ab1913"
AMI_SECRET = "fake-pbx-Секрет"
EMPLOYEES = (
    "id;name;phone;department;room\n"
    "E-101;Иван Петров;8 (916) 555-01-01;Бухгалтерия;к. 214\n"
    "E-102;Мария Сидорова;+7 916 555 01 02;ИТ;к. 301\n"
)


def _blocks() -> list[list[tuple[str, str]]]:
    raw = TRANSCRIPT.read_bytes().decode("utf-8")
    out = []
    for block in raw.split("\r\n\r\n"):
        lines = [line for line in block.split("\r\n") if line and ":" in line]
        if lines:
            out.append([(k, v.lstrip()) for k, v in (line.split(":", 1) for line in lines)])
    return out


_UNIQUEID = re.compile(re.escape(RECORDED_ID) + r"\.(\d+)")
_CHANNEL = re.compile(r"(PJSIP/\w+)-0000000([0-9a-f])")


@dataclass
class FedCall:
    """One replayable call as AMI wire bytes: `ringing` (up to the answer), `answer` (the one
    message that makes it answered), `talking` (up to the hang-up) and `end`."""

    call_id: str
    caller: str
    ringing: list[bytes]
    answer: list[bytes]
    talking: list[bytes]
    end: list[bytes]


def recorded_call(n: int, caller: str, caller_name: str, now: float | None = None) -> FedCall:
    """The recording as call number `n` (1, 2, …) from `caller` "`caller_name`" at `now`."""
    blocks = _blocks()
    stamps = [float(v) for b in blocks for k, v in b if k == "Timestamp"]
    shift = (now if now is not None else time.time()) - min(stamps)
    base = str(int(time.time()))
    bridge = str(uuid.UUID(int=n))

    def value(key: str, text: str) -> str:
        if key == "Timestamp":
            return f"{float(text) + shift:.6f}"
        text = _UNIQUEID.sub(lambda m: f"{base}.{n * 100 + int(m.group(1))}", text)
        text = _CHANNEL.sub(lambda m: f"{m.group(1)}-{n:04x}000{m.group(2)}", text)
        text = text.replace(RECORDED_BRIDGE, bridge)
        text = text.replace(RECORDED_CALLER, caller)
        return text.replace(RECORDED_NAME, caller_name) if "CallerIDName" in key or key in (
            "ConnectedLineName", "DestConnectedLineName") else text  # fmt: skip

    wires = [
        "".join(f"{k}: {value(k, v)}\r\n" for k, v in block).encode("utf-8") + b"\r\n"
        for block in blocks
    ]
    tracker = CallTracker()
    answered = ended = None
    call_id = ""
    for i, raw in enumerate(wires):
        for event in tracker.feed(Message(raw[:-4])):
            call_id = event.call_id
            if isinstance(event, Answered) and answered is None:
                answered = i
            if isinstance(event, Ended):
                ended = i
    assert answered is not None and ended is not None, "the recording answers and ends"
    return FedCall(call_id, caller, wires[:answered], wires[answered : answered + 1],
                   wires[answered + 1 : ended], wires[ended:])  # fmt: skip


class FakePBX:
    """An AMI peer on 127.0.0.1, in its own thread: logs the agent in (MD5), answers its
    actions (an empty CoreShowChannels), and writes the events a test hands it.

    ``filter_fault``: what every session does at a `Filter`: "hang" (never answers it) or
    "close" (drops the connection); else it answers Success."""

    def __init__(self, filter_fault: str | None = None) -> None:
        self.port = free_port()
        self.logins = 0
        self.filters = 0  # Filter actions received, all sessions
        self.filter_fault = filter_fault
        self._writers: list[asyncio.StreamWriter] = []
        self._logged_in = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        challenge = "840215675"
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")

        def reply(aid: str, **headers: str) -> None:
            items = {"Response": "Success", "ActionID": aid, **headers}
            writer.write(("".join(f"{k}: {v}\r\n" for k, v in items.items()) + "\r\n").encode())

        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action = Message(raw[:-4])
                name = action.get("Action", "").lower()
                aid = action.get("ActionID", "")
                if name == "challenge":
                    reply(aid, Challenge=challenge)
                elif name == "login":
                    key = hashlib.md5((challenge + AMI_SECRET).encode()).hexdigest()
                    if action.get("Key") != key:
                        reply(aid, Response="Error", Message="Authentication failed")
                        await writer.drain()
                        return
                    reply(aid, Message="Authentication accepted")
                    self.logins += 1
                    self._writers.append(writer)
                    self._logged_in.set()
                elif name == "coreshowchannels":
                    reply(aid, EventList="start", Message="Channels will follow")
                    writer.write(
                        f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\n"
                        "EventList: Complete\r\nListItems: 0\r\n\r\n".encode()
                    )
                elif name == "logoff":
                    reply(aid, Response="Goodbye", Message="Thanks for all the fish.")
                    await writer.drain()
                    return
                elif name == "ping":
                    reply(aid, Ping="Pong")
                elif name == "filter" and self.filter_fault is not None:
                    self.filters += 1
                    if self.filter_fault == "close":
                        return
                else:
                    self.filters += name == "filter"
                    reply(aid)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    def wait_login(self, timeout: float = 20.0) -> None:
        assert self._logged_in.wait(timeout), "the agent never logged in to the fake PBX"

    def send(self, messages: list[bytes], gap: float = 0.0) -> float:
        """Write `messages` to the logged-in agent; the time.time() after the last one."""

        async def write() -> float:
            assert self._writers, "no agent connected"
            for raw in messages:
                for writer in self._writers:
                    writer.write(raw)
                if gap:
                    await asyncio.sleep(gap)
            for writer in self._writers:
                await writer.drain()
            return time.time()

        return asyncio.run_coroutine_threadsafe(write(), self._loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)


def operator_config(tmp_path: Path, pbx_port: int | None, **agent: Any) -> dict[str, Any]:
    """ivanov on 101 and petrova on 103 (never reached by the recording); 102 (it rings there
    unanswered) belongs to sidorov."""
    csv = tmp_path / "employees.csv"
    csv.write_text(EMPLOYEES, encoding="utf-8")
    return {
        "enabled": pbx_port is not None,
        "server": {"host": "127.0.0.1", "port": pbx_port or 5038, "login": "cti",
                   "password": AMI_SECRET},
        "teams": [
            {"name": "Первая линия", "members": [
                {"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]},
                {"login": "sidorov", "name": "Пётр Сидоров", "extensions": ["102"]}]},
            {"name": "Вторая линия", "members": [
                {"login": "petrova", "name": "Анна Петрова", "extensions": ["103"]}]},
        ],
        "rule": {"trigger": "answer"},
        "directory": {"source": f"csv:{csv}", "region": "RU"},
        "desk": {"card_url": "https://sd.example.org/employee/{employee[id]}",
                 "form_url": "https://sd.example.org/request/new?phone={call[caller_e164]}"},
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(tmp_path / "state"),
                  "pbx": "fake", **agent},
    }  # fmt: skip


def cti(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(config), *args],
        capture_output=True, text=True, encoding="utf-8", timeout=30, check=False,
    )  # fmt: skip


def link(config: Path, login: str, *extra: str) -> str:
    result = cti(config, "operator", "link", login, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Site:
    """A running agent with its config, and the fake PBX it follows (None: disabled agent)."""

    tmp_path: Path
    data: dict[str, Any]
    agent: AgentProcess
    pbx: FakePBX | None
    links: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.agent.config

    @property
    def base(self) -> str:
        return f"http://{self.agent.listen}"

    def link(self, login: str, *extra: str) -> str:
        url = link(self.config, login, *extra)
        self.links[login] = url
        return url

    def events_url(self, login: str) -> str:
        return self.links[login].replace("/operator?", "/operator/events?")


def start_site(tmp_path: Path, *, pbx: bool = True, **agent: Any) -> Site:
    fake = FakePBX() if pbx else None
    data = operator_config(tmp_path, fake.port if fake else None, **agent)
    path = tmp_path / "cti.toml"
    write_config(path, data)
    process = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    if fake is not None:
        fake.wait_login()
        process.wait_healthy()
    return Site(tmp_path, data, process, fake)


def stop_site(site: Site) -> None:
    try:
        if site.agent.proc is not None and site.agent.proc.poll() is None:
            site.agent.terminate()
    finally:
        site.agent.close()
        if site.pbx is not None:
            site.pbx.close()


# ---------------------------------------------------------------------- SSE


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None


class SseReader:
    """A real HTTP client (http.client) reading `text/event-stream` in a background thread;
    `close()` drops the connection at once, as a network cut would."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.url = url
        self.events: list[SseEvent] = []
        self.comments = 0
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.ended = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        target = parts.path + ("?" + parts.query if parts.query else "")
        self._thread = threading.Thread(target=self._run, args=(target, headers), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), f"no answer from {url}"

    def _run(self, target: str, headers: dict[str, str]) -> None:
        try:
            self._conn.request("GET", target, headers=headers)
            reply = self._conn.getresponse()
            self.status = reply.status
            self.headers = {k.lower(): v for k, v in reply.getheaders()}
            self._ready.set()
            if reply.status != 200:
                return
            fields: dict[str, str] = {}
            while raw := reply.readline():
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "data" in fields:
                        event = SseEvent(
                            fields.get("event", "message"),
                            json.loads(fields["data"]),
                            fields.get("id"),
                        )
                        with self._lock:
                            self.events.append(event)
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:  # the connection was cut (close()) or the server went away
            pass
        finally:
            self._ready.set()
            self.ended.set()

    def of(self, kind: str) -> list[SseEvent]:
        with self._lock:
            return [e for e in self.events if e.event == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[SseEvent]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} {kind!r} events not seen; got {self.events}")
            time.sleep(0.02)
        return self.of(kind)

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        self._thread.join(5)


def play(pbx: FakePBX, call: FedCall, *, talk: float = 0.0) -> float:
    """The whole call: ringing, answer (returns its time), `talk` seconds, hang-up."""
    pbx.send(call.ringing)
    answered = pbx.send(call.answer)
    pbx.send(call.talking)
    if talk:
        time.sleep(talk)
    pbx.send(call.end)
    return answered


def wait_for(pred: Any, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.05)


def iter_pops(reader: SseReader) -> Iterator[dict[str, Any]]:
    for event in reader.of("pop"):
        yield event.data
