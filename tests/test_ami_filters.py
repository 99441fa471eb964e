"""AMI event filters asked of Asterisk (`cti_cli.ami.filters`): the answers a real Asterisk 22
does not give (a filter taken half-way, an old AMI version) from a fake peer. What Asterisk 22
really does with them is in tests/test_agent_lab.py
(`test_asterisk_sends_only_the_events_the_agent_reads_when_its_user_may_filter`)."""

from __future__ import annotations

import asyncio

import pytest

from cti_cli.ami.client import AMIClient
from cti_cli.ami.filters import FiltersHalfApplied, ami_major, filter_events
from cti_cli.ami.message import Message
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


def peer(answer: list[str], seen: list[Message], banner: bytes | None = None) -> Handler:
    """An AMI peer that logs the client in and answers its n-th Filter with ``answer[n]``
    ("ok", or an error message); every action after login is kept in ``seen``."""

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
        with pytest.raises(FiltersHalfApplied) as err:
            await filter_events(client, NAMES)
        await client.close()
    assert str(err.value) == (
        "Asterisk took 2 of 4 event filters and refused the others (Filter Rejected); "
        "reconnecting without filters"
    )


@aio
async def test_an_older_asterisk_is_not_asked() -> None:
    """Before Asterisk 22 (AMI 11) MatchCriteria may be unknown: the empty Filter would be a
    regular expression. Nothing is sent; every event is read and filtered by cti."""
    seen: list[Message] = []
    banner = b"Asterisk Call Manager/7.0.3\r\n"  # Asterisk 18
    async with FakeAMI(peer(["ok"], seen, banner)) as server:
        client = await client_of(server)
        why = await filter_events(client, NAMES)
        await client.ping()
        await client.close()
    assert why == "AMI 7.0.3 has no advanced event filters"
    assert [a["Action"] for a in seen if a["Action"] == "Filter"] == []


@pytest.mark.parametrize(
    ("version", "major"), [("11.0.0", 11), ("2.10.4", 2), ("", None), ("x.1", None), (None, None)]
)
def test_ami_major(version: str | None, major: int | None) -> None:
    assert ami_major(version) == major
