"""The tracker's memory is bounded: at most `max_active` calls (the oldest dropped, counted),
and calls silent for hours expire — by the events' own time, so a replay behaves as live."""

from __future__ import annotations

import json
from pathlib import Path

from cti_cli import config as cfg
from cti_cli.calls import CallTracker, Ended, Ringing
from cti_cli.calls.replay import replay
from cti_cli.calls.tracker import DEFAULT_IDLE_EXPIRY, DEFAULT_MAX_ACTIVE, DropNotice

HOUR = 3600.0


def newchannel(uid: str, at: float | None, name: str = "PJSIP/trunk") -> dict[str, str]:
    event = {"Event": "Newchannel", "Channel": f"{name}-{uid}", "Uniqueid": uid,
             "Linkedid": uid, "ChannelState": "4", "CallerIDNum": "+79161234567",
             "Exten": "200"}  # fmt: skip
    if at is not None:
        event["Timestamp"] = f"{at:.6f}"
    return event


def ringing_call(uid: str, at: float) -> list[dict[str, str]]:
    """A caller channel and an operator phone (101) that rings: a call the tracker reported."""
    op = {"Channel": "PJSIP/101-0000aaaa", "Uniqueid": uid + "9", "Linkedid": uid,
          "Timestamp": f"{at:.6f}"}  # fmt: skip
    return [
        newchannel(uid, at),
        {"Event": "Newchannel", "ChannelState": "0", **op},
        {"Event": "Newstate", "ChannelState": "5", **op},
    ]


def short_call(uid: str, at: float) -> list[dict[str, str]]:
    hangup = {"Event": "Hangup", "Uniqueid": uid, "Channel": f"PJSIP/trunk-{uid}",
              "Timestamp": f"{at:.6f}"}  # fmt: skip
    return [newchannel(uid, at), hangup]


def test_defaults() -> None:
    assert DEFAULT_MAX_ACTIVE == 20_000 == cfg.Config().calls.max_active
    assert CallTracker().max_active == 20_000
    assert DEFAULT_IDLE_EXPIRY >= 2 * HOUR


def test_a_flood_of_calls_that_never_hang_up_is_bounded_oldest_first() -> None:
    tracker = CallTracker(max_active=1000)
    notice = DropNotice(tracker)
    first: list[Ended] = []
    notices = []
    for event in ringing_call("1.0", 0.0):
        tracker.feed(event)
    for i in range(50_000):
        for out in tracker.feed(newchannel(f"2.{i}", float(i))):
            if isinstance(out, Ended) and out.call_id == "1.0":
                first.append(out)
        if line := notice.check():
            notices.append(line)
    assert len(tracker.active_calls()) == 1000
    assert tracker.evicted == 49_001 and tracker.expired == 0
    assert len(tracker._chans) == 1000 and len(tracker._calls) == 1000
    assert [e.reason for e in first] == ["lost"] and first[0].rang == ("101",)
    assert next(c.call_id for c in tracker.active_calls()) == "2.49000"  # the oldest kept
    assert len(notices) == 5 and "max_active = 1000" in notices[0]  # 1, 10, 100, 1000, 10000
    # stragglers of a (recently) dropped call do not bring it back
    assert tracker.feed({"Event": "Newstate", "Uniqueid": "2.48999", "Linkedid": "2.48999",
                         "Channel": "PJSIP/trunk-2.48999", "ChannelState": "6"}) == []  # fmt: skip


def test_calls_silent_for_hours_expire_by_event_time_busy_ones_stay() -> None:
    tracker = CallTracker()
    events = ringing_call("1.0", 0.0)
    events += ringing_call("3.0", 0.0)  # a long call that keeps talking
    t = 0.0
    n = 0
    while t < DEFAULT_IDLE_EXPIRY + HOUR:
        t += 5.0
        n += 1
        events += short_call(f"2.{n}", t)
        if n % 60 == 0:  # an event of the long call every five minutes
            events.append({"Event": "NewConnectedLine", "Uniqueid": "3.0", "Linkedid": "3.0",
                           "Channel": "PJSIP/trunk-3.0", "Timestamp": f"{t:.6f}"})  # fmt: skip
    ended = [out for event in events for out in tracker.feed(event) if isinstance(out, Ended)]
    lost = [e for e in ended if e.reason == "lost"]
    assert [e.call_id for e in lost] == ["1.0"] and tracker.expired == 1
    assert lost[0].duration is not None and lost[0].duration >= DEFAULT_IDLE_EXPIRY
    assert [c.call_id for c in tracker.active_calls()] == ["3.0"]


def test_replay_expires_as_live(tmp_path: Path) -> None:
    events = ringing_call("1.0", 0.0)
    for n in range(1, 3000):
        events += short_call(f"2.{n}", n * 10.0)
    capture = tmp_path / "c.jsonl"
    capture.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    with capture.open("rb") as stream:
        out = [e for e in replay(stream) if e.call_id == "1.0"]
    assert isinstance(out[0], Ringing)
    assert isinstance(out[-1], Ended) and out[-1].reason == "lost"


def test_without_timestamps_only_max_active_bounds() -> None:
    tracker = CallTracker(max_active=10)
    for i in range(5000):
        tracker.feed(newchannel(f"2.{i}", None))
    assert tracker.expired == 0 and tracker.evicted == 4990
    assert len(tracker.active_calls()) == 10
