"""The `cti watch` board, frame by frame: what the operator sees as a call rings, ends, fades."""

from __future__ import annotations

import json

from corpus import CORPUS, needs_corpus
from rich.console import Console

from cti_cli.ami.message import Message
from cti_cli.ami.reconnect import ConnectionState
from cti_cli.calls import CallTracker
from cti_cli.cli.common import format_duration
from cti_cli.cli.live_calls import FADE_SECONDS, CallBoard
from cti_cli.cli.watch import event_json, parse_filters


def screen(board: CallBoard, now: float) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(board.render(now))
    return console.export_text()


@needs_corpus
def test_call_rings_talks_ends_fades_then_goes_to_recent() -> None:
    events = json.loads((CORPUS / "simple" / "ab_success_a_hangup.json").read_text("utf-8"))
    tracker = CallTracker()
    board = CallBoard(tracker, server="pbx:5038")
    board.set_connection(ConnectionState("connected"), 0.0)
    seen_talking = False
    ended_at = None
    for i, event in enumerate(events):
        now = float(i)
        board.record(tracker.feed(event), now)
        frame = screen(board, now)
        if "talking" in frame:
            seen_talking = True
        if not tracker.active_calls() and ended_at is None and seen_talking:
            ended_at = now
            assert "ended: completed" in frame
    assert seen_talking
    assert ended_at is not None
    assert "connected" in screen(board, ended_at)
    later = screen(board, ended_at + FADE_SECONDS + 0.1)
    assert "ended: completed" not in later
    assert "recent" in later and "answered" in later


def test_reconnecting_state_is_shown() -> None:
    board = CallBoard(CallTracker(), server="pbx:5038")
    board.set_connection(ConnectionState("reconnecting", delay=2.0), 1.0)
    assert "reconnecting in 2.0 s" in screen(board, 1.0)
    assert "0 active calls" in screen(board, 1.0)


def test_durations_read_like_a_clock() -> None:
    """The board's ages and talk times, and the talk column of `cti calls`."""
    seconds = (0, 5, 42.9, 65, 600, 3725, -3)
    assert [format_duration(s) for s in seconds] == [
        "0:00", "0:05", "0:42", "1:05", "10:00", "1:02:05", "0:00",
    ]  # fmt: skip


def test_event_filters_all_must_match() -> None:
    match = parse_filters(["Event=Dial*", "DestChannel=PJSIP/10?-*"])
    dial = {"Event": "DialBegin", "DestChannel": "PJSIP/101-0000002a"}
    assert match(dial)
    assert not match({**dial, "DestChannel": "PJSIP/2001-1"})
    assert not match({"Event": "Hangup"})
    assert parse_filters([])({"Event": "Anything"})


def test_raw_event_json_keeps_repeated_headers_and_cyrillic() -> None:
    text = "Event: VarSet\r\nCallerIDName: Иван Петров\r\nChanVariable: a=1\r\nChanVariable: b=2"
    msg = Message(text.encode())
    assert json.loads(event_json(msg)) == {
        "Event": "VarSet",
        "CallerIDName": "Иван Петров",
        "ChanVariable": ["a=1", "b=2"],
    }


@needs_corpus
def test_board_shows_the_uniqueid_that_cti_recordings_takes() -> None:
    events = json.loads((CORPUS / "simple" / "ab_success_a_hangup.json").read_text("utf-8"))
    tracker = CallTracker()
    board = CallBoard(tracker, server="pbx:5038")
    uniqueids: set[str] = set()
    frames = []
    for i, event in enumerate(events):
        call_events = tracker.feed(event)
        uniqueids |= {e.uniqueid for e in call_events}
        board.record(call_events, float(i))
        frames.append(screen(board, float(i)))
    (uniqueid,) = uniqueids
    talking = next(f for f in frames if "talking" in f)
    assert "uniqueid" in talking and uniqueid in talking  # while the call is live
    later = screen(board, len(events) + FADE_SECONDS + 1.0)
    assert "recent" in later and uniqueid in later  # and in the recent list
