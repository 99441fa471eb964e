"""Pre-Asterisk-12 dialects (no Linkedid), from hand-written raw AMI transcripts."""

from __future__ import annotations

from pathlib import Path

from cti_cli.calls import Answered, CallEvent, Ended, Ringing, Transferred
from cti_cli.calls.replay import replay

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def play(name: str) -> list[CallEvent]:
    with (TRANSCRIPTS / name).open("rb") as stream:
        return list(replay(stream))


def kinds(events: list[CallEvent]) -> list[tuple[str, str]]:
    out = []
    for e in events:
        detail = getattr(e, "extension", "") or getattr(e, "reason", "")
        out.append((e.to_dict()["event"], detail))
    return out


def test_ami_1_1_queue_ring_all_one_member_answers() -> None:
    events = play("ast18_queue_answered.ami")
    assert kinds(events) == [
        ("ringing", "101"),
        ("ringing", "102"),
        ("answered", "102"),
        ("ended", "completed"),
    ]
    end = events[-1]
    assert isinstance(end, Ended)
    assert end.call_id == end.uniqueid == "1300000000.1"
    assert (end.caller, end.caller_name, end.dialed, end.queue) == (
        "0612345678",
        "Иван Петров",
        "5551000",
        "support",
    )
    assert end.rang == ("101", "102") and end.answered_by == ("102",)
    assert end.time == "1300000065.100000" and end.duration == 65
    assert events[0].time == "1300000000.400000"


def test_ami_1_3_ring_group_busy_phone_never_rings() -> None:
    events = play("ast11_ringgroup_busy.ami")
    assert kinds(events) == [("ringing", "202"), ("answered", "202"), ("ended", "completed")]
    end = events[-1]
    assert isinstance(end, Ended)
    assert end.rang == ("202",) and end.caller_name == "" and end.dialed == "600"


def test_ami_1_1_local_channel_chain_is_collapsed_and_cancel_detected() -> None:
    events = play("ast18_local_cancel.ami")
    assert kinds(events) == [("ringing", "202"), ("ended", "cancelled")]
    end = events[-1]
    assert isinstance(end, Ended)
    assert end.answered is False and end.call_id == "1500000000.20"


def test_ami_1_1_blind_transfer() -> None:
    events = play("ast18_blind_transfer.ami")
    transfer = [e for e in events if isinstance(e, Transferred)]
    assert [(t.from_extension, t.to) for t in transfer] == [("101", "102")]
    assert [e.extension for e in events if isinstance(e, Answered)] == ["101", "102"]
    end = events[-1]
    assert isinstance(end, Ended) and end.answered_by == ("101", "102")
    assert len({e.call_id for e in events}) == 1


def test_ami_1_0_link_and_state_text_best_effort() -> None:
    events = play("ast14_link.ami")
    assert [type(e) for e in events] == [Ringing, Answered, Ended]
    assert events[-1].caller_name == "Carla"
    assert events[-1].caller == "0509998877"
