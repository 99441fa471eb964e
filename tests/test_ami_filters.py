"""AMI event filters asked of Asterisk (`cti_cli.ami.filters`): the answers a real Asterisk 22
does not give (a filter taken half-way, an old AMI version) from a fake peer. What Asterisk 22
really does with them is in tests/test_agent_lab.py
(`test_asterisk_sends_only_the_events_the_agent_reads_when_its_user_may_filter`)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cti_cli.ami.client import AMIClient
from cti_cli.ami.filters import FiltersPartlyApplied, filter_events
from cti_cli.ami.message import Message
from cti_cli.ami.reconnect import ConnectionState, ConnectParams, ReconnectingClient
from cti_cli.ami.versions import ami_major, asterisk_from_ami
from tests.test_ami_client import (
    SECRET,
    FakeAMI,
    Handler,
    aio,
    read_action,
    reply,
    serve_login,
    wire,
)  # fmt: skip

NAMES = ["Newchannel", "Newstate", "Hangup", "DialBegin"]


def peer(
    answer: list[str], seen: list[Message], banner: bytes | None = None,
    release: str | None = None,
) -> Handler:
    """An AMI peer that logs the client in and answers its n-th Filter with ``answer[n]``
    ("ok", or an error message); every action after login is kept in ``seen``. ``release``:
    the AsteriskVersion `CoreSettings` tells ("refused": Permission denied)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if banner is None:
            await serve_login(reader, writer)
        else:  # an older Asterisk: its banner, then a plain login
            writer.write(banner)
            login = await read_action(reader)
            writer.write(reply(login, Message="Authentication accepted"))
        filters = 0
        while True:
            action = await read_action(reader)
            seen.append(action)
            if action["Action"] == "CoreSettings" and release == "refused":
                writer.write(wire({"Response": "Error", "ActionID": action["ActionID"],
                                   "Message": "Permission denied"}))  # fmt: skip
                continue
            if action["Action"] == "CoreSettings" and release is not None:
                writer.write(reply(action, AsteriskVersion=release, AMIversion="9.0.0"))
                continue
            if action["Action"] != "Filter":
                writer.write(reply(action))
                continue
            said = answer[min(filters, len(answer) - 1)]
            filters += 1
            if said == "ok":
                writer.write(reply(action, Message="Success"))
            else:
                writer.write(wire({"Response": "Error", "ActionID": action["ActionID"],
                                   "Message": said}))  # fmt: skip

    return handler


async def client_of(server: FakeAMI) -> AMIClient:
    client = AMIClient()
    await client.connect("127.0.0.1", server.port, timeout=5)
    await client.login("cti", SECRET, auth="plain")
    return client


@aio
async def test_each_name_gets_an_include_filter_and_success_means_filtered() -> None:
    seen: list[Message] = []
    async with FakeAMI(peer(["ok"], seen)) as server:
        client = await client_of(server)
        assert await filter_events(client, [*NAMES, "Hangup"]) is None
        await client.close()
    asked = sorted(a["MatchCriteria"] for a in seen if a["Action"] == "Filter")
    assert asked == sorted(f"action(include),name({n})" for n in NAMES)  # once per name
    assert all(a["Operation"] == "Add" for a in seen)


@aio
async def test_refused_by_asterisk_says_why_in_one_line() -> None:
    seen: list[Message] = []
    async with FakeAMI(peer(["Permission denied"], seen)) as server:
        client = await client_of(server)
        why = await filter_events(client, NAMES)
        await client.close()
    assert why == "Asterisk refused event filters: Permission denied"


@aio
async def test_filters_taken_half_way_fail_the_connection() -> None:
    """Some include filters in place and others not: the session would never see the refused
    names (no pops!). The caller must drop the connection, so this raises."""
    seen: list[Message] = []
    answers = ["ok", "ok", "Filter Rejected"]
    async with FakeAMI(peer(answers, seen)) as server:
        client = await client_of(server)
        with pytest.raises(FiltersPartlyApplied) as err:
            await filter_events(client, NAMES)
        await client.close()
    assert str(err.value) == (
        "Asterisk took 2 of 4 event filters and refused the others (Filter Rejected)"
    )


@pytest.mark.parametrize(
    ("ami", "release", "why"),
    [
        ("7.0.3", "18.25.1", None),
        ("9.0.0", "20.10.0", None),
        ("10.0.0", "21.5.0", None),
        ("9.0.0", "20.11.2+dfsg-1", None),
        ("7.0.3", "18.24.0", "Asterisk 18.24 has no advanced event filters (18.25 and later have)"),
        ("9.0.0", "20.9.3", "Asterisk 20.9 has no advanced event filters (20.10 and later have)"),
        ("10.0.0", "21.4.9", "Asterisk 21.4 has no advanced event filters (21.5 and later have)"),
        ("9.0.0", "certified-20.7-cert1", "Asterisk's release is unknown (certified-20.7-cert1): "
         "not asked for event filters (20.10 and later are)"),
        ("9.0.0", "refused", "Asterisk's release is unknown (Permission denied): not asked for "
         "event filters (20.10 and later are)"),
        ("9.0.0", "21.5.0", "Asterisk's release is unknown (21.5.0): not asked for event filters "
         "(20.10 and later are)"),
        ("9.0.0", "2000.10.0", "Asterisk's release is unknown (2000.10.0): not asked for event "
         "filters (20.10 and later are)"),
        ("8.0.0", "19.8.0", "AMI 8.0.0 is not asked for event filters (Asterisk 18.25, 20.10, "
         "21.5, 22 and later are)"),
        ("5.0.0", "16.30.0", "AMI 5.0.0 is not asked for event filters (Asterisk 18.25, 20.10, "
         "21.5, 22 and later are)"),
    ],
)  # fmt: skip
@aio
async def test_an_older_asterisk_is_asked_only_from_the_release_that_has_the_filters(
    ami: str, release: str, why: str | None
) -> None:
    """18.25, 20.10 and 21.5 have advanced filters, the releases before them do not: there
    MatchCriteria is unknown and the empty Filter a regular expression matching every event, so
    the release (`CoreSettings`; their AMI versions cannot tell) decides. Not asked: nothing is
    sent, every event is read and filtered by cti."""
    seen: list[Message] = []
    banner = f"Asterisk Call Manager/{ami}\r\n".encode()
    async with FakeAMI(peer(["ok"], seen, banner, release)) as server:
        client = await client_of(server)
        said = await filter_events(client, NAMES)
        await client.ping()
        await client.close()
    assert said == why
    asked = [a for a in seen if a["Action"] == "Filter"]
    assert len(asked) == (len(NAMES) if why is None else 0)
    assert [a["Action"] for a in seen if a["Action"] == "CoreSettings"] == (
        [] if ami in ("8.0.0", "5.0.0") else ["CoreSettings"])  # fmt: skip


@pytest.mark.parametrize(
    ("version", "major"),
    [("11.0.0", 11), ("2.10.4", 2), ("12", 12), ("", None), ("x.1", None), (None, None),
     ("1" * 5000 + ".0.0", None), ("١١.0.0", None), ("11x.0", None)],
)  # fmt: skip
def test_ami_major(version: str | None, major: int | None) -> None:
    assert ami_major(version) == major


@pytest.mark.parametrize("banner_version", ["1" * 5000 + ".0.0", "١١.0.0", "11.0.0x", "11..0"])
def test_a_hostile_banner_version_is_unknown_for_enable_and_doctor_too(banner_version: str) -> None:
    """`cti enable` and `cti doctor` name the Asterisk release from the banner's AMI version:
    a PBX's odd text is "unknown", never a traceback nor a release it is not."""
    assert asterisk_from_ami(banner_version) == "unknown"


@aio
async def test_asterisks_long_hostile_refusal_is_shortened() -> None:
    seen: list[Message] = []
    said = "Permission denied \x1b[31m" + "x" * 200_000
    async with FakeAMI(peer([said], seen)) as server:
        client = await client_of(server)
        why = await filter_events(client, NAMES)
        await client.close()
    assert why is not None and why.startswith("Asterisk refused event filters: Permission denied")
    assert len(why) < 300 and "characters left out" in why


@aio
async def test_a_name_that_would_change_the_criteria_is_refused() -> None:
    seen: list[Message] = []
    async with FakeAMI(peer(["ok"], seen)) as server:
        client = await client_of(server)
        with pytest.raises(ValueError, match="not an AMI event name"):
            await filter_events(client, ["Newchannel", "X),action(exclude"])
        await client.close()
    assert not [a for a in seen if a["Action"] == "Filter"], "nothing is half installed"


@aio
async def test_a_failing_on_connect_backs_off_instead_of_reconnecting_at_once() -> None:
    """Whatever goes wrong while a connection is set up (here a bug: ValueError) is a failed
    connection: said in the state, retried after the backoff, never a tight reconnect loop."""
    seen: list[Message] = []
    async with FakeAMI(peer(["ok"], seen)) as server:
        states: list[ConnectionState] = []

        async def broken(_client: AMIClient) -> None:
            raise ValueError("bad setup")

        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5, auth="plain")
        client = ReconnectingClient(params, on_state=states.append, on_connect=broken,
                                    backoff_initial=0.2, jitter=0.0)  # fmt: skip

        async def consume() -> None:
            async for _ in client.events():
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(1.0)
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    errors = [s.error for s in states if s.state == "error"]
    assert errors and errors[0] == "ValueError: bad setup"
    assert 2 <= server.connections <= 4, server.connections  # 0.2 s, 0.4 s, 0.8 s…


@aio
async def test_watch_drops_a_session_whose_filters_went_in_half_way_and_asks_no_more() -> None:
    # A session that took some filters and not others would miss the refused events: `cti
    # watch` drops it, and the next session reads every event without asking again.
    from cti_cli.calls import CallTracker
    from cti_cli.cli.watch import follow_calls

    asked: list[int] = []  # Filter actions, per connection
    connections = 0

    async def pbx(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        asked.append(0)
        await serve_login(reader, writer)
        while True:
            action = await read_action(reader)
            aid = action["ActionID"]
            if action["Action"] == "Filter":
                asked[-1] += 1
                said = "Success" if asked[-1] == 1 else "Permission denied"
                writer.write(wire({"Response": "Success" if asked[-1] == 1 else "Error",
                                   "ActionID": aid, "Message": said}))  # fmt: skip
            elif action["Action"] == "CoreShowChannels":
                writer.write(wire({"Response": "Success", "ActionID": aid,
                                   "EventList": "start", "Message": "Channels will follow"}))
                writer.write(wire({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                                   "EventList": "Complete", "ListItems": "0"}))  # fmt: skip
                writer.write(wire({"Event": "Newchannel", "Channel": "PJSIP/101-1",
                                   "Uniqueid": "1.1", "Linkedid": "1.1"}))  # fmt: skip
            else:
                writer.write(reply(action))

    states: list[ConnectionState] = []
    async with FakeAMI(pbx) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client, _ = follow_calls(params, CallTracker(), lambda _events: None, states.append)
        async with asyncio.timeout(20):
            async for event in client.events():
                assert event["Event"] == "Newchannel"
                break
        await client.close()
    assert connections == 2
    assert asked[0] > 1 and asked[1] == 0, asked
    errors = [s.error or "" for s in states if s.state == "error"]
    assert len(errors) == 1 and "took 1 of" in errors[0], errors


@pytest.mark.parametrize("fault", ["hang", "close"])
def test_an_agent_whose_filters_go_unanswered_reads_every_event_next_time(
    tmp_path: Path, fault: str
) -> None:
    """A PBX (or something in front of it) that never answers `Filter`, or drops the
    connection on it: the agent says so once, does not ask again, and the next session pops."""
    from tests.agent_support import AgentProcess, Receiver, write_config
    from tests.operator_support import FakePBX, operator_config, play, recorded_call

    receiver = Receiver().start()
    pbx = FakePBX(filter_fault=fault)
    data = operator_config(tmp_path, pbx.port)
    data["server"]["timeout"] = 2.0
    data["webhooks"] = [{"url": receiver.url, "secret": receiver.secret}]
    path = tmp_path / "cti.toml"
    write_config(path, data)
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    try:
        agent.wait_healthy(30)
        asked = pbx.filters
        assert pbx.logins == 2, "one session dropped at the Filter, then one that works"
        play(pbx, recorded_call(1, "+79165550101", "Анна"))
        receiver.wait(lambda: bool(receiver.of("screen_pop")), 20, "the pop")
        assert agent.terminate() == 0
    finally:
        agent.close()
        pbx.close()
        receiver.stop()
    log = agent.text()
    assert asked == 1 if fault == "close" else asked >= 1
    assert pbx.filters == asked, "the second session was not asked"
    assert log.count("asking Asterisk for event filters failed") == 1, log[-3000:]
    assert "the next session reads every event" in log
