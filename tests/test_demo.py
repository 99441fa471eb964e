"""`cti demo` and its simulated PBX: pops reach team members only, `cti enable` sees an
Asterisk 22, the AMI replies and the channel list are the shapes the real lab recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

import pytest
from test_tracker_reconcile import entry

from cti_cli import config as cfg
from cti_cli.ami.client import AMIClient
from cti_cli.ami.codec import AMIDecoder, encode_action
from cti_cli.ami.errors import AuthenticationFailed
from cti_cli.ami.message import Message
from cti_cli.ami.reconnect import snapshot_channels
from cti_cli.calls import Answered, CallTracker, Ringing
from cti_cli.cli.demo_cmd import parse_duration
from cti_cli.demo import pbx as sim
from cti_cli.demo import scenarios, templates
from cti_cli.demo.player import Player
from cti_cli.demo.scenarios import PlannedCall, Traffic
from cti_cli.demo.templates import Timing

ROOT = Path(__file__).resolve().parent.parent
TEAM_EXTENSIONS = {ext for _, members in scenarios.TEAMS for _, _, ext in members}


def cli(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run(
        [sys.executable, "-m", "cti_cli", *args], capture_output=True, text=True,
        timeout=timeout, env=env, cwd=ROOT, **kw,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------- cti demo, end to end


def test_headless_json_demo_pops_only_team_members() -> None:
    started = time.monotonic()
    result = cli("demo", "--headless", "--duration", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    calls = [line for line in lines if "event" in line]
    hooks = [line["webhook"] for line in lines if "webhook" in line]
    assert len(calls) + len(hooks) == len(lines), "every line is a call event or a webhook"
    pops = [hook for hook in hooks if hook["event"] == "screen_pop"]
    assert pops, f"no screen pop in 5 s: {result.stdout[-2000:]}"
    for pop in pops:
        assert pop["operator"]["extension"] in TEAM_EXTENSIONS
        assert pop["operator"]["team"] in {team for team, _ in scenarios.TEAMS}
        assert pop["open"], "a pop says what to open"
    assert all(pop["operator"]["extension"] != "104" for pop in pops)
    # 104 (in no team) did take calls: the opening call is for the reception
    assert any(c.get("extension") == "104" for c in calls if c["event"] == "answered")
    # lifecycle webhooks only for calls that reached a team member
    reached = {c["call_id"] for c in calls if c.get("extension") in TEAM_EXTENSIONS}
    assert {h["call_id"] for h in hooks if h["event"].startswith("call.")} <= reached
    # a known caller got the employee card from the demo's directory
    cards = [o for p in pops for o in p["open"] if o["type"] == "employee_card"]
    assert cards and {c["employee"]["id"] for c in cards} <= {e[0] for e in scenarios.EMPLOYEES}
    # the call event contract: every call that started also ended, in order
    by_call: dict[str, list[str]] = {}
    for c in calls:
        by_call.setdefault(c["call_id"], []).append(c["event"])
    assert by_call and all(kinds[-1] == "ended" for kinds in by_call.values()), by_call
    assert any("ringing" in kinds and "answered" in kinds for kinds in by_call.values())
    folder = re.search(r"folder (\S+);", result.stderr)
    assert folder and not Path(folder.group(1)).exists(), "the temporary folder is removed"


def test_duration_parsing() -> None:
    assert parse_duration("30") == 30
    assert parse_duration("30s") == 30
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration(None) is None


def test_bad_duration_is_a_usage_error() -> None:
    result = cli("demo", "--headless", "--duration", "soon")
    assert result.returncode == 2
    assert "--duration" in result.stderr


def test_same_seed_same_calls() -> None:
    def calls(seed: int) -> list[tuple[str, tuple[tuple[str, str], ...], str, str]]:
        traffic = Traffic(Random(seed), Timing(), 30)
        out = []
        for _ in range(30):
            call = traffic.next(frozenset())
            assert call is not None
            out.append((call.kind.template, tuple(sorted(call.ext_map.items())), call.caller,
                        call.caller_name))  # fmt: skip
        return out

    assert calls(7) == calls(7)
    assert calls(7) != calls(8)
    kinds = {c[0] for c in calls(7) + calls(8) + calls(9)}
    assert len(kinds) >= 8, "a realistic mix"


def test_busy_phones_are_not_rung_again() -> None:
    traffic = Traffic(Random(1), Timing(), 30)
    made = 0
    for _ in range(200):
        call = traffic.next(frozenset({"101", "102"}))
        if call is not None:
            made += 1
            assert not call.phones & {"101", "102"}, call
    assert made > 100, "calls for the free phones (103, 104) still come"


# ---------------------------------------------------------------------- cti enable vs cti demo pbx


@pytest.fixture
def demo_pbx() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cti_cli", "demo", "pbx", "--port", str(port), "--login", "cti",
         "--password", "s3cret-демо"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first, first + (proc.stderr.read() if proc.stderr else "")
        yield port
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, "Ctrl-C / SIGTERM ends the PBX with exit 0"


def _config(tmp_path: Path, port: int, password: str, auth: str = "md5") -> Path:
    path = tmp_path / "cti.toml"
    cfg.save(path, cfg.Config.model_validate({
        "server": {"host": "127.0.0.1", "port": port, "login": "cti", "password": password,
                   "auth": auth, "timeout": 5.0},
        "teams": [{"name": "L1", "members": [{"login": "ivanov", "extensions": ["101"]}]}],
    }))  # fmt: skip
    return path


@pytest.mark.parametrize("auth", ["md5", "plain"])
def test_enable_succeeds_against_demo_pbx(demo_pbx: int, tmp_path: Path, auth: str) -> None:
    conf = _config(tmp_path, demo_pbx, "s3cret-демо", auth)
    result = cli("--config", str(conf), "enable")
    assert result.returncode == 0, result.stderr
    assert f"enabled: 127.0.0.1:{demo_pbx} answers (AMI 11.0.0, Asterisk 22." in result.stdout
    assert "warning" not in result.stderr, "GetConfig shows the user may read call events"
    saved = cfg.load_file(conf)
    assert saved.enabled is True
    assert saved.status.asterisk_version and saved.status.asterisk_version.startswith("22.")


@pytest.mark.parametrize("auth", ["md5", "plain"])
def test_enable_with_wrong_password_says_authentication_failed(
    demo_pbx: int, tmp_path: Path, auth: str
) -> None:
    conf = _config(tmp_path, demo_pbx, "wrong", auth)
    started = time.monotonic()
    result = cli("--config", str(conf), "enable")
    assert result.returncode == 1
    assert "authentication failed" in result.stderr.lower()
    assert "stays disabled" in result.stderr
    assert time.monotonic() - started >= sim.AUTH_FAIL_DELAY
    assert cfg.load_file(conf).enabled is False


# ---------------------------------------------------------------------- the AMI server


class Raw:
    """A socket session that keeps every reply as sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = AMIDecoder()
        self.pending: list[Message] = []
        while self.decoder.banner is None:
            self._read()

    def _read(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.pending += self.decoder.feed(data)
        return True

    def ask(self, name: str, **headers: str) -> Message:
        self.sock.sendall(encode_action(name, headers, f"t-{name}"))
        while True:
            for i, msg in enumerate(self.pending):
                if msg.is_response and msg.get("ActionID") == f"t-{name}":
                    del self.pending[i]
                    return msg
            if not self._read():
                raise ConnectionError("closed")

    def closed(self) -> bool:
        self.sock.settimeout(2)
        try:
            return not self._read()
        except OSError:
            return True


def recorded(tag: str) -> list[tuple[str, str]]:
    return list(sim.recorded_replies()[tag][0])


def names(msg: Message | list[tuple[str, str]]) -> list[str]:
    pairs = msg.headers if isinstance(msg, Message) else msg
    return [k for k, _ in pairs]


async def _with_pbx(body: Any, **kw: Any) -> Any:
    pbx = sim.SimPbx(login="cti", secret="pw", **kw)
    _, port = await pbx.start()
    try:
        return await body(pbx, port)
    finally:
        await pbx.close()


def test_replies_have_the_shapes_asterisk_22_sent() -> None:
    async def body(pbx: sim.SimPbx, port: int) -> None:
        def talk() -> None:
            raw = Raw(port)
            assert raw.decoder.banner == "Asterisk Call Manager/11.0.0"
            before = raw.ask("Ping")
            assert names(before) == names(recorded("ping-before-login"))
            assert before["Message"] == "Permission denied"
            challenge = raw.ask("Challenge", AuthType="MD5")
            assert names(challenge) == names(recorded("challenge"))
            key = hashlib.md5((challenge["Challenge"] + "pw").encode()).hexdigest()
            login = raw.ask("Login", Username="cti", AuthType="MD5", Key=key)
            assert dict(login) == {**dict(recorded("login-md5")), "ActionID": "t-Login"}
            for action, tag in (("Ping", "ping"), ("CoreSettings", "coresettings")):
                assert names(raw.ask(action)) == names(recorded(tag))
            settings = raw.ask("CoreSettings")
            assert settings["AsteriskVersion"].startswith("22.")
            config = raw.ask("GetConfig", Filename="manager.conf", Category="cti")
            assert names(config) == names(recorded("getconfig"))
            assert config["Category-000000"] == "cti"
            assert "Line-000000-000003" in config and "read=all" in config.values()
            command = raw.ask("Command", Command="manager show user cti")
            assert command.output == dict_output("command")
            unknown = raw.ask("Originate")
            assert unknown["Response"] == "Error"
            assert unknown["Message"].startswith("Invalid/unknown command: Originate.")
            assert names(raw.ask("Events", EventMask="off")) == names(recorded("events-off"))
            bye = raw.ask("Logoff")
            assert dict(bye) == {**dict(recorded("logoff")), "ActionID": "t-Logoff"}
            assert raw.closed()

        await asyncio.to_thread(talk)

    asyncio.run(_with_pbx(body))


def dict_output(tag: str) -> list[str]:
    return [v for k, v in recorded(tag) if k == "Output"]


def test_wrong_secret_waits_one_second_then_closes() -> None:
    async def body(pbx: sim.SimPbx, port: int) -> None:
        def talk() -> None:
            raw = Raw(port)
            started = time.monotonic()
            reply = raw.ask("Login", Username="cti", Secret="nope")
            assert time.monotonic() - started >= 0.95
            assert dict(reply) == {**dict(recorded("login-wrong-secret")), "ActionID": "t-Login"}
            assert raw.closed()

        await asyncio.to_thread(talk)
        client = AMIClient()
        await client.connect("127.0.0.1", port, timeout=5)
        with pytest.raises(AuthenticationFailed):
            await client.login("someone-else", "pw")
        await client.close()

    asyncio.run(_with_pbx(body))


async def _one_queue_call_to(pbx: sim.SimPbx, clients: list[AMIClient]) -> tuple[
    list[Any], list[list[Message]]
]:
    """Play one ring-all queue call; what the PBX sent and what each client received (then
    closed)."""
    player = Player(pbx, Traffic(Random(1), Timing(0.01, 0.05), 0),
                    timing=Timing(0.01, 0.05), rng=Random(1))  # fmt: skip
    call = PlannedCall(scenarios.kind("queue_ringall_answered"),
                       {"101": "101", "102": "102", "103": "103"}, "+79161234567",
                       "Пётр Сидоров", 0.1)  # fmt: skip
    sent = player.start(call)
    await player.finish(5)
    await asyncio.sleep(0.3)
    got = []
    for client in clients:
        events: list[Message] = []
        while client._batches:
            events += client._batches.popleft()
        got.append(events)
        await client.close()
    return sent, got


def test_several_clients_each_get_the_events_they_asked_for() -> None:
    async def body(pbx: sim.SimPbx, port: int) -> None:
        clients = []
        for events in (True, True, False, "agent"):
            client = AMIClient()
            await client.connect("127.0.0.1", port, timeout=5)
            await client.login("cti", "pw", events=events)
            clients.append(client)
        sent, got = await _one_queue_call_to(pbx, clients)
        full = [e for e in got[0] if e.get("Event") != "FullyBooted"]
        assert [e["Event"] for e in full] == [em.get("Event") for em in sent]
        assert [e["Event"] for e in got[1]] == [e["Event"] for e in got[0]]
        assert got[2] == [], "Events: off"
        assert got[3] and {e["Privilege"] for e in got[3]} == {"agent,all"}

    asyncio.run(_with_pbx(body))


def test_a_client_with_event_filters_gets_only_those_events_as_from_asterisk_22() -> None:
    """The demo PBX takes the AMI event filters the agent asks Asterisk 22 for (by name): the
    agent of `cti demo` reads the same short stream it would from a real PBX."""
    from cti_cli.ami.filters import filter_events

    async def body(pbx: sim.SimPbx, port: int) -> None:
        clients = []
        for wanted in (None, ["Newchannel", "Hangup"]):
            client = AMIClient()
            await client.connect("127.0.0.1", port, timeout=5)
            await client.login("cti", "pw")
            if wanted is not None:
                assert await filter_events(client, wanted) is None
                bogus = "action(include),name(VarSet),bogus(x)"
                rejected = await client.action("Filter", {
                    "Operation": "Add", "Filter": "", "MatchCriteria": bogus}, check=False)
                assert rejected.get("Response") == "Error"  # as the lab's Asterisk 22 says it
                assert rejected.get("Message") == (
                    "Filter was formatted incorrectly.  Check the syntax of the filter given.")
            clients.append(client)
        sent, received = await _one_queue_call_to(pbx, clients)
        got = [[e["Event"] for e in events if e.get("Event") != "FullyBooted"]
               for events in received]  # fmt: skip
        assert got[0] == [em.get("Event") for em in sent]
        assert got[1] == [n for n in got[0] if n in ("Newchannel", "Hangup")]
        assert len(got[1]) >= 4 and len(got[0]) > 3 * len(got[1])

    asyncio.run(_with_pbx(body))


def test_core_show_channels_mid_call_is_what_asterisk_lists() -> None:
    """A direct call to 101, talking: the same two channels, fields and values as the lab's
    Asterisk 22 listed for one (recordings/responses.ami), ids aside; reconcile attaches it."""

    async def body(pbx: sim.SimPbx, port: int) -> None:
        timing = Timing(0.5, 2.0)
        player = Player(pbx, Traffic(Random(1), timing, 0), timing=timing, rng=Random(1))
        call = PlannedCall(scenarios.kind("direct_answered"),
                           {"101": "102", "102": "101", "103": "103"}, "+79161234567",
                           "Пётр Сидоров", 0.0)  # fmt: skip
        sent = player.start(call)
        client = AMIClient()
        await client.connect("127.0.0.1", port, timeout=5)
        await client.login("cti", "pw", events=False)
        channels: list[Message] = []
        for _ in range(100):
            channels = await snapshot_channels(client)
            if any(c["Channel"].startswith("PJSIP/102-") and c["ChannelStateDesc"] == "Up"
                   for c in channels):  # fmt: skip
                break
            await asyncio.sleep(0.05)
        real = [h for h in sim.recorded_replies()["coreshowchannels"][1:-1]]
        assert len(channels) == len(real) == 2
        for mine, theirs in zip(channels, real, strict=True):
            assert names(mine) == names(list(theirs))
            assert names(mine)[2:] == list(entry("PJSIP/102-1", "1", "6"))[2:]
            same = ("ChannelState", "ChannelStateDesc", "Context", "Priority", "Application",
                    "Language", "AccountCode")  # fmt: skip
            assert {k: mine[k] for k in same} == {k: dict(theirs)[k] for k in same}
        trunk, operator = channels
        assert trunk["ApplicationData"] == "PJSIP/102,20,t" and trunk["Exten"] == "102"
        assert operator["ApplicationData"] == "(Outgoing Line)"
        assert operator["Exten"] == dict(real[1])["Exten"]
        assert trunk["BridgeId"] and trunk["BridgeId"] == operator["BridgeId"]
        assert trunk["Linkedid"] == operator["Linkedid"] == trunk["Uniqueid"]
        assert trunk["Uniqueid"] == next(
            e.get("Uniqueid") for e in sent if e.get("Event") == "Newchannel"
        )
        assert (trunk["CallerIDNum"], trunk["CallerIDName"]) == ("+79161234567", "Пётр Сидоров")
        tracker = CallTracker()
        attached = tracker.reconcile(channels, time=time.time())
        assert [(type(e), e.extension) for e in attached if isinstance(e, Ringing | Answered)] \
            == [(Ringing, "102"), (Answered, "102")]  # fmt: skip
        assert {e.caller for e in attached} == {"+79161234567"}
        await player.finish(0)
        assert await snapshot_channels(client) == [], "every channel hung up"
        await client.close()

    asyncio.run(_with_pbx(body))


def test_rendered_calls_keep_the_recorded_noise() -> None:
    for name in templates.names():
        template = templates.load(name)
        sent = templates.render(template, templates.Ids(Random(1)), start=time.time())
        recorded_kinds = {dict(h)["Event"] for _, h in template.events}
        assert {e.get("Event") for e in sent} == recorded_kinds
    assert {"VarSet", "Newexten", "DeviceStateChange", "TestEvent"} <= recorded_kinds
    rtcp = {dict(h)["Event"] for _, h in templates.load("blind_transfer").events}
    assert "RTCPSent" in rtcp


def test_headless_lines_keep_their_columns_for_every_event() -> None:
    # "transferred" is 11 characters: it ran into the caller's number
    from cti_cli.calls import Ringing, Transferred
    from cti_cli.demo.run import _headless_line

    base = ("1.1", "1.1", "+79165550101", "Анна", "200", "support", None)
    lines = [_headless_line(Ringing(*base, "101")),
             _headless_line(Transferred(*base, "101", "102"))]  # fmt: skip
    assert lines == ["ringing     +79165550101 Анна → 200 101",
                     "transferred +79165550101 Анна → 200 102"]  # fmt: skip
