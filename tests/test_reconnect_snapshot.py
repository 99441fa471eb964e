"""`ReconnectingClient(on_connect=...)` + `snapshot_channels` against a fake AMI peer.

The peer (127.0.0.1, port 0; the helpers of test_ami_client) answers `CoreShowChannels` with an
event list like Asterisk 22, drops the first connection and comes back with other channels.
"""

from __future__ import annotations

import asyncio

import pytest
from test_ami_client import SECRET, FakeAMI, aio, read_action, serve_login, wire
from test_tracker_reconcile import caller_entry, entry, op

from cti_cli.ami.client import AMIClient
from cti_cli.ami.reconnect import ConnectParams, ReconnectingClient, snapshot_channels
from cti_cli.calls import CallEvent, CallTracker, Ended
from cti_cli.cli.watch import reconciler

pytestmark = pytest.mark.timeout(30)

OTHER = "1795644950.20"  # the call that starts while cti is disconnected

CONNECTION_1 = [caller_entry(), op("101", 1, "6")]  # 101 talks
CONNECTION_2 = [  # that call is gone; a new one rings 102
    entry("PJSIP/trunk-00000020", OTHER, "6", linkedid=OTHER, cid=("+74957654321", "Мария"),
          connected=("<unknown>", "<unknown>"), context="from-trunk", exten="200", app="Queue",
          data="support", duration="00:00:03"),
    entry("PJSIP/102-00000021", "1795644950.21", "5", linkedid=OTHER, cid=("102", "<unknown>"),
          connected=("+74957654321", "Мария")),
]  # fmt: skip


async def answer_core_show_channels(
    writer: asyncio.StreamWriter, aid: str, channels: list[dict[str, str]], connection: int
) -> None:
    """The list as Asterisk writes it, with a live event slipping in before its end."""
    writer.write(wire({"Response": "Success", "ActionID": aid, "EventList": "start",
                       "Message": "Channels will follow"}))  # fmt: skip
    writer.write(wire({"Event": "UserEvent", "Connection": str(connection), "When": "in-list"}))
    for channel in channels:
        writer.write(wire({**channel, "ActionID": aid}))
    writer.write(wire({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                       "EventList": "Complete", "ListItems": str(len(channels))}))  # fmt: skip
    writer.write(wire({"Event": "UserEvent", "Connection": str(connection), "When": "after"}))
    await writer.drain()


def kinds(events: list[CallEvent]) -> list[tuple[str, str | None]]:
    return [(e.kind, getattr(e, "extension", None)) for e in events]


@aio
async def test_on_connect_reconciles_before_each_connections_events() -> None:
    drop = asyncio.Event()

    async def pbx(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = server.connections
        await serve_login(reader, writer)
        action = await read_action(reader)
        assert action["Action"] == "CoreShowChannels"
        lists = CONNECTION_1 if connection == 1 else CONNECTION_2
        await answer_core_show_channels(writer, action["ActionID"], lists, connection)
        if connection == 1:
            await drop.wait()  # then the connection drops, as on a PBX restart or network cut
            return
        await asyncio.sleep(10)

    log: list[tuple[object, ...]] = []
    tracker = CallTracker()
    calls: list[CallEvent] = []

    async def on_connect(client: AMIClient) -> None:
        log.append(("on_connect", server.connections))
        channels = await snapshot_channels(client)
        assert {c["Event"] for c in channels} == {"CoreShowChannel"}
        out = tracker.reconcile(channels, time="1795644960.0")
        calls.extend(out)
        log.append(("reconciled", kinds(out)))

    async with FakeAMI(pbx) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client = ReconnectingClient(
            params, on_state=lambda s: log.append(("state", s.state)), on_connect=on_connect,
            backoff_initial=0.01,
        )  # fmt: skip
        async for event in client.events():
            log.append(("event", event["Connection"], event["When"]))
            calls.extend(tracker.feed(event))
            if event["When"] == "after":
                if event["Connection"] == "1":
                    drop.set()
                else:
                    break
        await client.close()

    assert log == [
        ("state", "connecting"),
        ("on_connect", 1),
        ("reconciled", [("ringing", "101"), ("answered", "101")]),
        ("state", "connected"),
        ("event", "1", "in-list"),  # queued while on_connect ran, yielded after it
        ("event", "1", "after"),
        ("state", "error"),
        ("state", "reconnecting"),
        ("state", "connecting"),
        ("on_connect", 2),
        ("reconciled", [("ringing", "102"), ("ended", None)]),
        ("state", "connected"),
        ("event", "2", "in-list"),
        ("event", "2", "after"),
    ]
    lost = calls[3]
    assert isinstance(lost, Ended) and lost.call_id == "1795644810.0"
    assert (lost.reason, lost.answered_by, lost.rang) == ("lost", ("101",), ("101",))
    ringing = calls[2]
    assert (ringing.call_id, ringing.caller) == (OTHER, "+74957654321")
    assert ringing.caller_name == "Мария"
    (view,) = tracker.active_calls()
    assert view.call_id == OTHER and view.ringing == ("102",)


@aio
async def test_ami_error_in_on_connect_fails_the_connection() -> None:
    closed_by_client: list[int] = []

    async def pbx(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = server.connections
        await serve_login(reader, writer)
        writer.write(wire({"Event": "UserEvent", "Connection": str(connection), "When": "login"}))
        action = await read_action(reader)
        assert action["Action"] == "CoreShowChannels"
        if connection == 1:  # never answers: the client's reply timeout fails on_connect
            while await reader.read(4096):
                pass
            closed_by_client.append(connection)
            return
        await answer_core_show_channels(writer, action["ActionID"], [], connection)
        await asyncio.sleep(10)

    errors: list[str] = []
    seen: list[tuple[str, str]] = []

    async def on_connect(client: AMIClient) -> None:
        await snapshot_channels(client)

    async with FakeAMI(pbx) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client = ReconnectingClient(
            params, on_state=lambda s: errors.append(s.error or "") if s.error else None,
            on_connect=on_connect, backoff_initial=0.01,
            client_factory=lambda: AMIClient(reply_timeout=0.2),
        )  # fmt: skip
        async for event in client.events():
            seen.append((event["Connection"], event["When"]))
            if event["When"] == "after":
                break
        await client.close()
        assert server.connections == 2
    assert seen == [("2", "login"), ("2", "in-list"), ("2", "after")]  # nothing of connection 1
    assert closed_by_client == [1]
    assert len(errors) == 1 and "CoreShowChannels" in errors[0]


@aio
async def test_watch_follows_a_user_not_allowed_core_show_channels() -> None:
    async def pbx(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        action = await read_action(reader)
        writer.write(wire({"Response": "Error", "ActionID": action["ActionID"],
                           "Message": "Permission denied"}))  # fmt: skip
        writer.write(wire({"Event": "UserEvent", "When": "live"}))
        await asyncio.sleep(10)

    emitted: list[list[CallEvent]] = []
    async with FakeAMI(pbx) as server:
        params = ConnectParams("127.0.0.1", server.port, "cti", SECRET, timeout=5)
        client = ReconnectingClient(params, on_connect=reconciler(CallTracker(), emitted.append))
        async for event in client.events():
            assert event["When"] == "live"
            break
        await client.close()
        assert server.connections == 1
    assert emitted == []
