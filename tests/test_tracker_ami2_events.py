"""Asterisk 12+ sequences the captures do not hold, each the only evidence of what an operator's
screen must show: filtered streams (no Newstate, no Up), hangup causes, transfers that failed
or whose parties were never seen, a pickup seen mid-call, snapshots after a reconnect.
Headers as Asterisk 22 writes them (channel snapshots, `Dest*`/`Transferee*` prefixes).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from cti_cli.calls import CallEvent, CallTracker, Ended, Transferred
from cti_cli.calls.tracker import DropNotice

LINKED = "1796155126.0"
TRUNK = "PJSIP/trunk-00000000"
OP101 = "PJSIP/101-00000001"
OP102 = "PJSIP/102-00000002"


def snap(
    channel: str, uid: str, state: str = "0", prefix: str = "", **extra: str
) -> dict[str, str]:
    is_caller = channel == TRUNK
    return {
        f"{prefix}Channel": channel,
        f"{prefix}ChannelState": state,
        f"{prefix}CallerIDNum": "+79165550101" if is_caller else channel[6:9],
        f"{prefix}CallerIDName": "Иван Петров" if is_caller else "<unknown>",
        f"{prefix}ConnectedLineNum": "<unknown>" if is_caller else "+79165550101",
        f"{prefix}ConnectedLineName": "<unknown>" if is_caller else "Иван Петров",
        f"{prefix}Exten": "200" if is_caller else "s",
        f"{prefix}Uniqueid": uid,
        f"{prefix}Linkedid": extra.pop("linkedid", LINKED),
        **extra,
    }


def ev(
    event: str, *parts: dict[str, str], ts: str = "1796155130.000000", **kw: str
) -> dict[str, str]:
    out = {"Event": event, "Timestamp": ts}
    for part in parts:
        out.update(part)
    return {**out, **kw}


def track(events: Iterable[dict[str, str]], tracker: CallTracker | None = None) -> list[CallEvent]:
    tracker = tracker or CallTracker()
    return [call_event for e in events for call_event in tracker.feed(e)]


def seen(out: list[CallEvent]) -> list[tuple[str, str]]:
    return [(e.kind, getattr(e, "extension", "") or getattr(e, "reason", "")) for e in out]


def caller(uid: str = LINKED) -> dict[str, str]:
    return ev("Newchannel", snap(TRUNK, uid, "4"), ts="1796155126.100000")


def queue_call() -> list[dict[str, str]]:
    """The trunk's call in queue `support`, 101's phone dialled (ringing not in the stream)."""
    return [
        caller(),
        ev("QueueCallerJoin", snap(TRUNK, LINKED, "6"), Queue="support", Position="1"),
        ev("DialBegin", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", prefix="Dest"),
           DialString="101"),
    ]  # fmt: skip


# -- filtered streams ----------------------------------------------------------------------------
def test_agent_connect_alone_answers_the_queue_member() -> None:
    out = track([
        *queue_call(),
        ev("AgentConnect", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", "6", "Dest"),
           Queue="support", Interface="PJSIP/101", MemberName="PJSIP/101"),
        ev("Hangup", snap(OP101, "1796155126.1", "6"), Cause="16"),
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16", ts="1796155140.000000"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert {e.queue for e in out} == {"support"} and out[-1].duration == 14


def test_dial_state_ringing_rings_when_newstate_is_filtered_out() -> None:
    out = track([
        *queue_call(),
        ev("DialState", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", prefix="Dest"),
           DialStatus="RINGING"),
        ev("DialEnd", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", prefix="Dest"),
           DialStatus="NOANSWER"),
        ev("Hangup", snap(OP101, "1796155126.1"), Cause="19"),
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "no-answer")]


def test_an_agent_called_ties_a_member_seen_first_in_it() -> None:
    out = track([
        caller(),
        ev("AgentCalled", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", "5", "Dest"),
           Queue="support", Interface="PJSIP/101", MemberName="PJSIP/101"),
        ev("Hangup", snap(OP101, "1796155126.1"), Cause="16"),
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "cancelled")]
    assert out[-1].queue == "support"


# -- why a call ended ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cause", "reason"),
    [("17", "busy"), ("21", "busy"), ("18", "no-answer"), ("19", "no-answer"),
     ("34", "failed"), ("16", "cancelled"), ("", "cancelled")],
)  # fmt: skip
def test_the_callers_hangup_cause_says_why_an_unanswered_call_ended(
    cause: str, reason: str
) -> None:
    out = track([caller(), ev("Hangup", snap(TRUNK, LINKED, "4"), Cause=cause)])
    end = out[-1]
    assert isinstance(end, Ended) and end.reason == reason


def test_a_busy_dial_is_why_when_the_caller_hung_up_normally() -> None:
    out = track([
        *queue_call(),
        ev("DialEnd", snap(TRUNK, LINKED, "6"), snap(OP101, "1796155126.1", prefix="Dest"),
           DialStatus="BUSY"),
        ev("Hangup", snap(OP101, "1796155126.1"), Cause="17"),  # the phone's cause is not why
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "busy")]


def test_an_operator_hanging_up_first_does_not_decide_the_reason() -> None:
    out = track([
        *queue_call(),
        ev("Newstate", snap(OP101, "1796155126.1", "6")),
        ev("Hangup", snap(OP101, "1796155126.1", "6"), Cause="17"),
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16"),
    ])  # fmt: skip
    assert seen(out)[-1] == ("ended", "completed")


# -- transfers -------------------------------------------------------------------------------------
def answered() -> list[dict[str, str]]:
    return [*queue_call(), ev("Newstate", snap(OP101, "1796155126.1", "6"))]


def transfers(out: list[CallEvent]) -> list[tuple[str, str, str]]:
    return [(e.call_id, e.from_extension, e.to) for e in out if isinstance(e, Transferred)]


def blind(result: str = "Success", **kw: str) -> dict[str, str]:
    return ev(
        "BlindTransfer", snap(TRUNK, LINKED, "6", "Transferee"),
        snap(OP101, "1796155126.1", "6", "Transferer"), Result=result, Extension="102",
        Context="from-internal", IsExternal="No", **kw,
    )  # fmt: skip


def test_a_blind_transfer_names_the_operator_and_the_extension() -> None:
    assert transfers(track([*answered(), blind()])) == [(LINKED, "101", "102")]


def test_a_failed_transfer_is_not_reported() -> None:
    assert transfers(track([*answered(), blind("Fail")])) == []
    assert transfers(track([*answered(), ev("AttendedTransfer", Result="Invalid")])) == []


def test_a_blind_transfer_seen_first_attaches_the_call_it_moves() -> None:
    """cti started mid-call: the transfer's own headers are all there is."""
    out = track([blind()])
    assert transfers(out) == [(LINKED, "101", "102")]
    assert out[0].caller == "+79165550101" and out[0].caller_name == "Иван Петров"


def test_a_blind_transfer_by_a_trunk_names_its_number() -> None:
    event = ev(
        "BlindTransfer", snap(TRUNK, LINKED, "6", "Transferee"),
        snap("PJSIP/trunk-00000005", "1796155126.5", "6", "Transferer"), Result="Success",
        Extension="102",
    )  # fmt: skip
    event["TransfererCallerIDNum"] = "+74950000000"
    assert transfers(track([*answered(), event])) == [(LINKED, "+74950000000", "102")]


def consultation() -> list[dict[str, str]]:
    """101 talks with the caller, puts it on hold and calls 102 (call 1796155127.0)."""
    consult = "1796155127.0"
    return [
        *answered(),
        ev("Newchannel", snap("PJSIP/101-00000003", consult, "4", linkedid=consult)),
        ev("DialBegin", snap("PJSIP/101-00000003", consult, "6", linkedid=consult),
           snap(OP102, "1796155127.1", prefix="Dest", linkedid=consult)),
        ev("Newstate", snap(OP102, "1796155127.1", "5", linkedid=consult)),
    ]  # fmt: skip


def attended(**kw: str) -> dict[str, str]:
    return ev(
        "AttendedTransfer", snap(OP101, "1796155126.1", "6", "OrigTransferer"),
        snap("PJSIP/101-00000003", "1796155127.0", "6", "SecondTransferer",
             linkedid="1796155127.0"),
        snap(TRUNK, LINKED, "6", "Transferee"), Result="Success", DestType="Bridge", **kw,
    )  # fmt: skip


def test_a_blonde_transfer_goes_to_the_phone_still_ringing() -> None:
    out = track([*consultation(), attended()])
    assert transfers(out) == [(LINKED, "101", "102")]
    assert seen(out).count(("ringing", "102")) == 2  # in the consultation, then in the call


def test_an_attended_transfer_to_a_target_that_answered_goes_to_it() -> None:
    target = snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid="1796155127.0")
    out = track([
        *consultation(),
        ev("Newstate", snap(OP102, "1796155127.1", "6", linkedid="1796155127.0")),
        attended(**target),
        ev("Hangup", snap("PJSIP/101-00000003", "1796155127.0", "6", linkedid="1796155127.0")),
        ev("Hangup", snap(OP102, "1796155127.1", "6", linkedid="1796155127.0")),
        ev("Hangup", snap(OP101, "1796155126.1", "6")),
        ev("Hangup", snap(TRUNK, LINKED, "6"), Cause="16"),
    ])  # fmt: skip
    assert transfers(out) == [(LINKED, "101", "102")]
    ends = {e.call_id: e for e in out if isinstance(e, Ended)}
    assert ends[LINKED].answered_by == ("101", "102")
    assert ends["1796155127.0"].answered_by == ("102",)


def test_an_attended_transfer_to_a_number_names_the_second_leg_exten() -> None:
    out = track([*answered(), attended(SecondTransfererExten="5550123")])
    assert transfers(out) == [(LINKED, "101", "5550123")]


# -- pickup seen mid-call ------------------------------------------------------------------------
def test_a_pickup_of_a_call_never_seen_starts_it_from_the_target_line() -> None:
    picker = "PJSIP/103-00000009"
    out = track([
        ev("Newchannel", snap(picker, "1796155126.9", "6", linkedid="1796155126.9")),
        ev("Pickup", snap(picker, "1796155126.9", "6", linkedid="1796155126.9"),
           snap(OP101, "1796155126.1", "5", "Target")),
        ev("Hangup", snap(picker, "1796155126.9", "6", linkedid="1796155126.9")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "103"), ("answered", "103"), ("ended", "completed")]
    assert {e.call_id for e in out} == {LINKED}
    assert (out[0].caller, out[0].caller_name) == ("+79165550101", "Иван Петров")


# -- after a reconnect, and when calls are dropped ------------------------------------------------
def test_a_snapshot_time_in_epoch_seconds_stamps_the_events() -> None:
    tracker = CallTracker()
    entry = {"Event": "CoreShowChannel", **snap(OP101, "1796155126.1", "6"), "Duration": "00:01:05"}
    caller_entry = {"Event": "CoreShowChannel", **snap(TRUNK, LINKED, "6"), "Duration": "00:01:10"}
    out = tracker.reconcile([entry, caller_entry], time=1796155200)
    assert seen(out) == [("ringing", "101"), ("answered", "101")]
    assert {e.time for e in out} == {"1796155200.000000"}
    assert out[0].caller == "+79165550101"  # the caller is attached first, whatever the order
    assert tracker.active_calls()[0].started == "1796155130.000000"
    end = tracker.reconcile([], time=1796155260)[0]
    assert isinstance(end, Ended) and (end.reason, end.duration) == ("lost", 130)


def test_the_drop_notice_comes_at_the_first_drop_and_each_tenfold() -> None:
    tracker = CallTracker(max_active=1, idle_expiry=7200)
    notice = DropNotice(tracker)
    lines = []
    for n in range(1, 120):
        tracker.feed(ev("Newchannel", snap(TRUNK, f"1.{n}", linkedid=f"1.{n}")))
        lines.append(notice.check())
    told = [(n + 1, line) for n, line in enumerate(lines) if line]
    assert [n for n, _ in told] == [2, 11, 101]
    assert told[0][1] == (
        "stopped following 1 call(s) that never hung up: 1 dropped as the oldest past [calls] "
        "max_active = 1, 0 silent for 2 h; they end as lost"
    )


# -- attaching mid-call by the events that introduce a channel -----------------------------------
@pytest.mark.parametrize("first", ["BridgeEnter", "BridgeLeave", "NewConnectedLine"])
def test_an_operator_first_seen_in_a_bridge_event_is_answered(first: str) -> None:
    """cti started while 101 talked: its first event is about the bridge, state Up."""
    other = "1796155100.0"  # the caller's channel was never seen: nothing is known of it
    out = track([
        ev(first, snap(OP101, "1796155100.1", "6", linkedid=other, ConnectedLineNum="")),
        ev("Hangup", snap(OP101, "1796155100.1", "6", linkedid=other), Cause="16"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert (out[0].caller, out[0].caller_name, out[0].dialed) == ("", "", "")


def test_a_dial_begin_introduces_both_of_its_channels() -> None:
    out = track([
        ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", "5", "Dest")),
        ev("Hangup", snap(OP101, "1796155126.1"), Cause="16"),
        ev("Hangup", snap(TRUNK, LINKED, "4"), Cause="16"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "cancelled")]
    assert (out[0].caller, out[0].dialed) == ("+79165550101", "200")
