"""Call tracking against real Asterisk 22 traffic: SIPp phones answer, ring out, abandon, transfer.

Each scenario is watched live through our AMI client and tracker, the raw stream is captured,
and `cti replay` of that capture must tell exactly the same story.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cti_cli.ami.client import AMIClient
from cti_cli.calls import CallEvent, CallTracker, Ended
from cti_cli.cli.app import _register, app

_register()
pytestmark = pytest.mark.lab


@dataclass
class Capture:
    events: list[CallEvent] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)

    def of(self, caller: str) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events if e.caller == caller]


async def _watch(
    lab: Any, caller: str, scenario: Callable[[AMIClient], Any], timeout: float = 40.0
) -> Capture:
    info = lab.info
    client = AMIClient()
    banner = await client.connect(info.ami_host, info.ami_port, timeout=10)
    await client.login(info.ami_user, info.ami_secret)
    capture = Capture()
    capture.raw += banner.encode() + b"\r\n"
    tracker = CallTracker()

    async def follow() -> None:
        async for message in client.events():
            capture.raw += message.raw + b"\r\n\r\n"
            for event in tracker.feed(message):
                capture.events.append(event)
                if isinstance(event, Ended) and event.caller == caller:
                    return

    follower = asyncio.create_task(follow())
    try:
        await scenario(client)
        await asyncio.wait_for(follower, timeout)
    finally:
        follower.cancel()
        await client.close()
    await asyncio.to_thread(lab.wait_idle, 30)
    return capture


def watch(lab: Any, caller: str, scenario: Callable[[AMIClient], Any]) -> Capture:
    return asyncio.run(_watch(lab, caller, scenario))


def replayed(capture: Capture, tmp_path: Path, caller: str) -> list[dict[str, Any]]:
    path = tmp_path / "capture.ami"
    path.write_bytes(bytes(capture.raw))
    result = CliRunner().invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line]
    return [e for e in events if e["caller"] == caller]


def phones(lab: Any, **modes: str) -> None:
    for ext in ("101", "102", "103"):
        lab.phone(ext, modes.get(f"p{ext}", "answer"))


def place(lab: Any, dialed: str, caller: str, **kw: Any) -> Callable[[AMIClient], Any]:
    async def scenario(client: AMIClient) -> None:
        await asyncio.to_thread(lab.call, dialed, caller=caller, **kw)

    return scenario


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["event"], e.get("extension")) for e in events]


def ended(events: list[dict[str, Any]]) -> dict[str, Any]:
    last = events[-1]
    assert last["event"] == "ended"
    assert [e for e in events if e["event"] == "ended"] == [last]
    return last


def test_queue_call_answered_by_one_of_two_members(lab: Any, tmp_path: Path) -> None:
    caller = "+79160000001"
    phones(lab, p101="noanswer", p102="answer")
    capture = watch(lab, caller, place(lab, "200", caller, caller_name="Иван Петров", talk=2.0))
    events = capture.of(caller)
    assert {("ringing", "101"), ("ringing", "102")} <= set(kinds(events))
    assert ("answered", "102") in kinds(events)
    assert ("answered", "101") not in kinds(events)
    end = ended(events)
    assert end["answered"] is True
    assert end["answered_by"] == ["102"]
    assert set(end["rang"]) == {"101", "102"}
    assert end["reason"] == "completed"
    for e in events:
        assert e["caller_name"] == "Иван Петров"
        assert e["dialed"] == "200"
        assert e["uniqueid"] == events[0]["uniqueid"]
    assert end["queue"] == "support"
    rows = lab.cdr_rows(end["uniqueid"])
    assert rows, "the call's uniqueid is the key of its CDR rows"
    assert replayed(capture, tmp_path, caller) == events


@dataclass(frozen=True)
class Plain:
    """A call placed and left alone: what the phones do and how the call must end."""

    dialed: str
    phones: dict[str, str]
    name: str
    answered_by: list[str]
    rang: set[str]
    reason: str
    queue: str | None = None
    talk: float = 1.5
    cancel_after: float | None = None
    min_rings: int = 0


PLAIN = {
    "ring group, the second phone answers": Plain(
        "300", {"p102": "noanswer", "p103": "answer"}, "Мария", ["103"], {"102", "103"},
        "completed",
    ),
    "missed call, no answer": Plain(
        "101", {"p101": "noanswer"}, "", [], {"101"}, "no-answer", talk=1.0
    ),
    # with retry each member rings again in the second round
    "caller abandons the queue after two rings": Plain(
        "200", {"p101": "noanswer", "p102": "noanswer"}, "Пётр", [], {"101", "102"},
        "abandoned", queue="support", cancel_after=9.0, min_rings=3,
    ),
    "busy phone never rings": Plain("101", {"p101": "busy"}, "", [], set(), "busy", talk=1.0),
    "FreePBX ring group over Local channels": Plain(
        "310", {"p102": "noanswer", "p103": "answer"}, "Мария", ["103"], {"102", "103"},
        "completed",
    ),
    # Asterisk itself counts a queue timeout as abandoned (app_queue calls record_abandoned
    # and sends QueueCallerAbandon on timeout too), and AMI gives nothing to tell them apart
    "FreePBX queue, nobody answers": Plain(
        "210", {"p101": "noanswer", "p102": "noanswer"}, "", [], {"101", "102"}, "abandoned",
        queue="support-fpbx", talk=1.0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", PLAIN.values(), ids=PLAIN.keys())
def test_plain_calls_end_as_they_happened(case: Plain, lab: Any, tmp_path: Path) -> None:
    caller = f"+791600001{list(PLAIN.values()).index(case):02d}"  # one caller per case
    phones(lab, **case.phones)
    kw: dict[str, Any] = {"caller_name": case.name}
    kw.update({"cancel_after": case.cancel_after} if case.cancel_after else {"talk": case.talk})
    capture = watch(lab, caller, place(lab, case.dialed, caller, **kw))
    events = capture.of(caller)
    end = ended(events)
    assert end["answered"] is bool(case.answered_by)
    assert end["answered_by"] == case.answered_by
    assert set(end["rang"]) == case.rang
    assert end["reason"] == case.reason
    assert end["queue"] == case.queue
    assert end["caller_name"] == case.name
    assert len([e for e in events if e["event"] == "ringing"]) >= case.min_rings
    assert len({e["uniqueid"] for e in events}) == 1
    assert replayed(capture, tmp_path, caller) == events


def test_blind_transfer_by_ami_action(lab: Any, tmp_path: Path) -> None:
    caller = "+79160000006"
    phones(lab)

    async def scenario(client: AMIClient) -> None:
        await asyncio.to_thread(lab.call, "101", caller=caller, caller_name="Иван Петров", talk=6.0)
        channel = None
        for _ in range(100):
            await asyncio.sleep(0.1)
            listed = await client.action_list("CoreShowChannels")
            for item in listed:
                if (
                    item.get("Channel", "").startswith("PJSIP/101-")
                    and item.get("ChannelStateDesc") == "Up"
                ):
                    channel = item["Channel"]
            if channel:
                break
        assert channel, "operator 101 never picked up"
        await client.action("BlindTransfer", Channel=channel, Context="from-internal", Exten="103")

    capture = watch(lab, caller, scenario)
    events = capture.of(caller)
    transfers = [e for e in events if e["event"] == "transferred"]
    assert [(t["from_extension"], t["to"]) for t in transfers] == [("101", "103")]
    assert ("answered", "103") in kinds(events)
    end = ended(events)
    assert end["answered_by"] == ["101", "103"]
    assert end["reason"] == "completed"
    assert len({e["uniqueid"] for e in events}) == 1
    assert replayed(capture, tmp_path, caller) == events


def test_freepbx_queue_with_local_channel_members(lab: Any, tmp_path: Path) -> None:
    """FreePBX queues dial Local/10X@from-queue/n: operators are still the phones."""
    caller = "+79160000007"
    phones(lab, p101="noanswer", p102="answer")
    capture = watch(lab, caller, place(lab, "210", caller, caller_name="Иван Петров", talk=1.5))
    events = capture.of(caller)
    assert {("ringing", "101"), ("ringing", "102")} <= set(kinds(events))
    end = ended(events)
    assert end["answered_by"] == ["102"]
    assert set(end["rang"]) == {"101", "102"}
    assert end["queue"] == "support-fpbx"
    assert end["reason"] == "completed"
    for e in events:
        assert "Local" not in str(e.get("extension"))
    assert len({e["uniqueid"] for e in events}) == 1
    assert replayed(capture, tmp_path, caller) == events


def test_directed_pickup_is_answered_by_the_picker(lab: Any, tmp_path: Path) -> None:
    """101 rings and never answers; operator 103 dials **101 (Pickup) and talks to the caller."""
    caller = "+79160000010"
    phones(lab, p101="noanswer")

    async def scenario(client: AMIClient) -> None:
        await asyncio.to_thread(lab.call, "101", caller=caller, caller_name="Иван Петров", talk=4.0)
        ringing = False
        for _ in range(100):
            await asyncio.sleep(0.1)
            for item in await client.action_list("CoreShowChannels"):
                if item.get("Channel", "").startswith("PJSIP/101-") and (
                    item.get("ChannelStateDesc") == "Ringing"
                ):
                    ringing = True
            if ringing:
                break
        assert ringing, "phone 101 never rang"
        await asyncio.to_thread(lab.operator_call, "103", "**101", talk=8.0)

    capture = watch(lab, caller, scenario)
    events = capture.of(caller)
    assert kinds(events) == [
        ("ringing", "101"),
        ("ringing", "103"),
        ("answered", "103"),
        ("ended", None),
    ]
    end = ended(events)
    assert end["answered"] is True
    assert end["answered_by"] == ["103"]
    assert end["rang"] == ["101", "103"]
    assert end["reason"] == "completed"
    assert {e["caller_name"] for e in events} == {"Иван Петров"}
    assert len({e["call_id"] for e in events}) == 1
    assert [e for e in capture.events if e.caller != caller] == [], "no call for 103's own leg"
    assert replayed(capture, tmp_path, caller) == events
