"""Asterisk 12+ dispatch at the edges: the event that first names a channel (cti attached
mid-call), originated dials with no calling channel, dials to Local channels and trunks,
headers Asterisk may leave out, calls merged after they were shown, snapshots after a reconnect
and the bounded state (idle expiry, max_active). Each asserts what a screen or webhook shows.
Headers as Asterisk 22 writes them (channel snapshots, `Dest*` prefixes).
"""

from __future__ import annotations

import pytest

from cti_cli.calls import CallEvent, CallTracker, Ended
from cti_cli.calls.tracker import DropNotice
from tests.test_tracker_ami2_events import LINKED, OP101, OP102, TRUNK, ev, seen, snap, track
from tests.test_tracker_legacy_events import bridge, caller, dial, hangup, newchannel, ringing
from tests.test_tracker_legacy_events import ev as ev1
from tests.test_tracker_legacy_events import track as track1

OTHER = "1796155100.0"  # a call whose first events cti missed


def ends(out: list[CallEvent]) -> list[Ended]:
    return [e for e in out if isinstance(e, Ended)]


# -- the first event naming a channel ---------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    ["Newstate", "NewCallerid", "NewConnectedLine", "QueueCallerJoin", "QueueCallerLeave",
     "QueueCallerAbandon", "DialBegin", "DialState", "DialEnd", "Pickup"],
)  # fmt: skip
def test_an_operator_first_named_by_any_event_rings_in_its_call(event: str) -> None:
    """cti attached while 101 rang: whichever event names 101's channel first, 101 rings."""
    out = track([ev(event, snap(OP101, "1796155100.1", "5", linkedid=OTHER), Queue="q")])
    assert seen(out)[:1] == [("ringing", "101")]
    assert out[0].caller == "+79165550101"  # its connected line: the caller


@pytest.mark.parametrize("event", ["DialState", "DialEnd", "AgentCalled", "AgentConnect"])
def test_an_operator_first_named_as_a_destination_rings(event: str) -> None:
    out = track([
        ev(event, snap(TRUNK, OTHER, "6", linkedid=OTHER),
           snap(OP101, "1796155100.1", "5", "Dest", linkedid=OTHER), Queue="support"),
    ])  # fmt: skip
    assert seen(out)[0] == ("ringing", "101")
    if event.startswith("Agent"):
        assert {e.queue for e in out} == {"support"}


def test_an_operator_first_seen_with_its_caller_unknown_or_unnamed() -> None:
    unknown = snap(OP101, "1796155100.1", "5", linkedid=OTHER, ConnectedLineNum="<unknown>")
    out = track([ev("Newstate", unknown)])
    assert (out[0].caller, out[0].caller_name) == ("", "")
    unnamed = snap(OP101, "1796155100.1", "5", linkedid=OTHER, ConnectedLineName="<unknown>")
    out = track([ev("Newstate", unnamed)])
    assert (out[0].caller, out[0].caller_name) == ("+79165550101", "")
    nameless = snap(OP101, "1796155100.1", "5", linkedid=OTHER)
    del nameless["ConnectedLineName"]
    out = track([ev("Newstate", nameless)])
    assert (out[0].caller, out[0].caller_name) == ("+79165550101", "")


def test_a_newstate_without_a_state_changes_nothing() -> None:
    tracker = CallTracker()
    track([ev("Newchannel", snap(TRUNK, LINKED, "4")),
           ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", prefix="Dest")),
           ev("Newstate", snap(OP101, "1796155126.1", "5"))], tracker)  # fmt: skip
    stateless = snap(OP101, "1796155126.1")
    del stateless["ChannelState"]
    assert track([ev("Newstate", stateless)], tracker) == []
    assert tracker.active_calls()[0].ringing == ("101",)
    assert track([ev("Newstate", snap(OP101, "1796155126.1", "7"))], tracker) == []
    assert tracker.active_calls()[0].ringing == ()  # busy: no longer ringing


def test_a_1_4_state_description_alone_rings() -> None:
    out = track1([
        caller("1.1"),
        ev1("Newchannel", Channel=OP101.replace("PJSIP", "SIP"), State="Down", Uniqueid="1.2"),
        dial("SIP/trunk-00000001", "1.1", "SIP/101-00000001", "1.2"),
        ev1("Newstate", Channel="SIP/101-00000001", State="Ringing", Uniqueid="1.2"),
        ev1("Newstate", Channel="SIP/101-00000001", ChannelStateDesc="Up", Uniqueid="1.2"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101")]


def test_a_1_4_caller_id_header_names_the_caller() -> None:
    out = track1([
        ev1("Newchannel", Channel="SIP/trunk-00000001", State="Ring", CallerID="0612345678",
            CallerIDName="Иван", Uniqueid="1.1"),
        newchannel("SIP/101-00000002", "1.2"),
        dial("SIP/trunk-00000001", "1.1", "SIP/101-00000002", "1.2"),
        ringing("SIP/101-00000002", "1.2"),
    ])  # fmt: skip
    assert (out[0].caller, out[0].caller_name) == ("0612345678", "Иван")


# -- dials ------------------------------------------------------------------------------------
def test_an_originated_dial_has_no_calling_channel() -> None:
    """`Originate` to PJSIP/101: DialBegin/DialEnd carry only the `Dest*` channel, whose own
    caller ID and exten are the call's; a busy phone ends it busy."""
    dest = snap(OP101, "1796155140.0", "0", "Dest", linkedid="1796155140.0")
    dest["DestCallerIDNum"], dest["DestExten"] = "5550100", "100"
    out = track([
        ev("DialBegin", dest, DialString="101"),
        ev("DialEnd", dest, DialStatus="BUSY"),
        ev("Hangup", snap(OP101, "1796155140.0", "0", linkedid="1796155140.0"), Cause="16"),
    ])  # fmt: skip
    end = ends(out)[0]
    assert (end.caller, end.dialed, end.reason) == ("5550100", "100", "busy")


def test_a_dial_end_naming_no_channel_is_ignored() -> None:
    assert track([ev("DialEnd", DialStatus="ANSWER")]) == []


def dial_to(dest: str, status: str) -> list[dict[str, str]]:
    """The trunk's call dials `dest`, which ends the dial with `status`; the caller hangs up."""
    return [
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(dest, "1796155126.1", prefix="Dest")),
        ev("DialEnd", snap(TRUNK, LINKED, "4"), snap(dest, "1796155126.1", "6", "Dest"),
           DialStatus=status),
        ev("Hangup", snap(dest, "1796155126.1", "6"), Cause="16"),
        ev("Hangup", snap(TRUNK, LINKED, "4"), Cause="16"),
    ]  # fmt: skip


def test_a_local_channel_answering_a_dial_is_nobody_answering() -> None:
    """A ring group reached through `Local/600@from-internal`: the Local half answers at once."""
    end = ends(track(dial_to("Local/600@from-internal-00000001;1", "ANSWER")))[0]
    assert (end.answered, end.reason) == (False, "cancelled")


def test_a_trunk_answering_a_dial_answers_the_call() -> None:
    end = ends(track(dial_to("PJSIP/mobile-00000009", "ANSWER")))[0]
    assert (end.answered, end.reason) == (True, "completed")


def test_a_busy_trunk_does_not_answer_the_call() -> None:
    end = ends(track(dial_to("PJSIP/mobile-00000009", "BUSY")))[0]
    assert (end.answered, end.reason) == (False, "busy")


def test_a_dial_end_without_a_status_keeps_the_last_one() -> None:
    events = dial_to("PJSIP/mobile-00000009", "BUSY")
    no_status = dict(events[2])
    del no_status["DialStatus"]
    end = ends(track([*events[:3], no_status, *events[3:]]))[0]
    assert end.reason == "busy"


def test_a_caller_hanging_up_without_a_cause_is_cancelled() -> None:
    out = track([ev("Newchannel", snap(TRUNK, LINKED, "4")), ev("Hangup", snap(TRUNK, LINKED))])
    assert seen(out) == [("ended", "cancelled")]


def test_a_dial_without_linkedids_ties_a_phone_already_ringing_to_the_caller() -> None:
    """A stream whose channel snapshots carry no Linkedid: the dial alone ties the phone, which
    was seen ringing on its own, and its ringing is told in the caller's call."""

    def bare(name: str, uid: str, state: str, prefix: str = "") -> dict[str, str]:
        part = snap(name, uid, state, prefix)
        del part[f"{prefix}Linkedid"]
        return part

    out = track([
        ev("Newchannel", bare(TRUNK, "1.1", "4")),
        ev("Newchannel", bare(OP101, "1.2", "5")),
        ev("DialBegin", bare(TRUNK, "1.1", "4"), bare(OP101, "1.2", "5", "Dest")),
        ev("Hangup", bare(OP101, "1.2", "5"), Cause="16"),
        ev("Hangup", bare(TRUNK, "1.1", "4"), Cause="16"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind) for e in out] == [("1.1", "ringing"), ("1.1", "ended")]


def test_a_phone_answering_again_in_a_later_round_is_told_again_without_ringing() -> None:
    """101 answered, its line dropped; 101's second line answers the same call (auto-answer):
    a second `answered`, no second `ringing`."""
    out = track([
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", prefix="Dest")),
        ev("Newstate", snap(OP101, "1796155126.1", "6")),
        ev("Hangup", snap(OP101, "1796155126.1", "6"), Cause="16"),
        ev("DialBegin", snap(TRUNK, LINKED, "6"),
           snap("PJSIP/101-00000005", "1796155126.5", prefix="Dest")),
        ev("Newstate", snap("PJSIP/101-00000005", "1796155126.5", "6")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("answered", "101")]


# -- merged calls (1.x) -----------------------------------------------------------------------
def test_a_call_shown_then_merged_ends_and_its_state_moves() -> None:
    """1.8: the `;2` half of a Local channel began a call of its own (its `;1` unseen), joined
    queue `support`, its phone rang; LocalBridge says it is the caller's call: that call ends
    on the screen and the ringing, the queue carry on in the caller's."""
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    op201 = "SIP/201-00000004"
    out = track1([
        caller("9.1"),
        newchannel(half2, "9.3"),
        ev1("Join", Channel=half2, Queue="support", Position="1", Uniqueid="9.3"),
        dial(half2, "9.3", op201, "9.4"),
        ringing(op201, "9.4"),
        dial("SIP/trunk-00000001", "9.1", half1, "9.2"),
        ev1("LocalBridge", Channel1=half1, Channel2=half2, Uniqueid1="9.2", Uniqueid2="9.3"),
        hangup(op201, "9.4"), hangup(half2, "9.3"), hangup(half1, "9.2"),
        hangup("SIP/trunk-00000001", "9.1"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, e.queue) for e in out] == [
        ("9.3", "ringing", "support"), ("9.3", "ended", "support"),
        ("9.1", "ringing", "support"), ("9.1", "ended", "support"),
    ]  # fmt: skip


def test_an_abandon_in_a_merged_call_is_the_callers_reason() -> None:
    half1, half2 = "Local/600@from-internal-0001;1", "Local/600@from-internal-0001;2"
    out = track1([
        caller("9.1"),
        newchannel(half2, "9.3"),
        ev1("QueueCallerAbandon", Channel=half2, Queue="support", Uniqueid="9.3"),
        dial("SIP/trunk-00000001", "9.1", half1, "9.2"),
        ev1("LocalBridge", Channel1=half1, Channel2=half2, Uniqueid1="9.2", Uniqueid2="9.3"),
        hangup(half2, "9.3"), hangup(half1, "9.2"), hangup("SIP/trunk-00000001", "9.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "abandoned")]


def test_merged_calls_are_one_call_in_the_snapshot_and_in_the_bound() -> None:
    tracker = CallTracker(max_active=2)
    for event in [
        caller("1.1"),
        newchannel(OP101.replace("PJSIP", "SIP"), "1.2"),
        dial("SIP/trunk-00000001", "1.1", "SIP/101-00000001", "1.2"),
        caller("2.1", "SIP/trunk-00000002"),
    ]:
        tracker.feed(event)
    assert [c.call_id for c in tracker.active_calls()] == ["1.1", "2.1"]
    assert [c.uniqueid for c in tracker.active_calls()] == ["1.1", "2.1"]
    assert tracker.evicted == 0


def test_a_1_x_local_half_seen_after_its_other_half_joins_its_call() -> None:
    """Attached mid-call: the `;2` half's events came first; the `;1` half is its call."""
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    out = track1([
        newchannel(half2, "9.3"),
        newchannel(half1, "9.2"),
        newchannel("SIP/201-00000004", "9.4"),
        dial(half1, "9.2", "SIP/201-00000004", "9.4"),
        ringing("SIP/201-00000004", "9.4"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind) for e in out] == [("9.3", "ringing")]


def test_a_bridge_after_an_unseen_answer_answers_the_operator() -> None:
    """A filtered 1.x stream: 101's phone was Up in a call of its own before the Bridge tied
    it to the caller."""
    out = track1([
        caller("1.1"),
        newchannel("SIP/101-00000002", "1.2"),
        ev1("Newstate", Channel="SIP/101-00000002", ChannelState="6", Uniqueid="1.2"),
        bridge(("SIP/trunk-00000001", "1.1"), ("SIP/101-00000002", "1.2")),
        hangup("SIP/101-00000002", "1.2"),
        hangup("SIP/trunk-00000001", "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


# -- snapshots after a reconnect --------------------------------------------------------------
def entry(channel: str, uid: str, state: str, duration: str, **kw: str) -> dict[str, str]:
    return {"Event": "CoreShowChannel", **snap(channel, uid, state, **kw), "Duration": duration}


def test_a_snapshot_dates_new_calls_by_their_oldest_channel_and_keeps_known_ones() -> None:
    tracker = CallTracker()
    track([ev("Newchannel", snap(TRUNK, LINKED, "4"), ts="1796155126.000000")], tracker)
    new = "1796150000.0"
    tracker.reconcile(
        [entry(TRUNK, LINKED, "4", "00:00:30"),
         entry("PJSIP/trunk-00000003", new, "6", "01:02:03", linkedid=new)],
        time=1796160000,
    )  # fmt: skip
    started = {c.call_id: c.started for c in tracker.active_calls()}
    assert started == {LINKED: "1796155126.000000", new: f"{1796160000 - 3723:.6f}"}


@pytest.mark.parametrize("duration", ["", "01:02", "1:x:3"])
def test_a_snapshot_duration_not_understood_keeps_the_snapshot_time(duration: str) -> None:
    tracker = CallTracker()
    tracker.reconcile([entry(TRUNK, LINKED, "4", duration)], time=1796160000)
    assert tracker.active_calls()[0].started == "1796160000.000000"


def test_a_snapshot_names_the_queue_a_caller_waits_in() -> None:
    tracker = CallTracker()
    caller_entry = entry(TRUNK, LINKED, "6", "00:00:10", Application="Queue",
                         ApplicationData="support,t,,,300")  # fmt: skip
    tracker.reconcile([caller_entry])
    assert tracker.active_calls()[0].queue == "support"
    other = CallTracker()
    other.reconcile([{**entry(TRUNK, LINKED, "6", "00:00:10"), "Application": "Queue"}])
    assert other.active_calls()[0].queue is None


def test_a_snapshot_attaches_callers_before_operators_whatever_the_order() -> None:
    tracker = CallTracker()
    linked = "1796155129.5"  # sorts after its operator's Uniqueid
    out = tracker.reconcile([
        entry(OP101, "1796155129.10", "5", "00:00:05", linkedid=linked,
              ConnectedLineNum="<unknown>", ConnectedLineName="<unknown>"),
        entry(TRUNK, linked, "6", "00:00:06", linkedid=linked),
    ])  # fmt: skip
    assert [(e.kind, e.caller, e.caller_name) for e in out] == [
        ("ringing", "+79165550101", "Иван Петров")
    ]


def test_every_call_gone_from_a_snapshot_ends_lost() -> None:
    tracker = CallTracker()
    track([ev("Newchannel", snap(TRUNK, LINKED, "4")),
           ev("Newchannel", snap("PJSIP/trunk-00000003", "1796155127.0", "4",
                                 linkedid="1796155127.0"))], tracker)  # fmt: skip
    out = tracker.reconcile([], time=1796155200)
    assert sorted((e.call_id, e.reason) for e in ends(out)) == [
        (LINKED, "lost"), ("1796155127.0", "lost")
    ]  # fmt: skip


def test_a_snapshot_past_max_active_drops_the_oldest() -> None:
    tracker = CallTracker(max_active=1)
    out = tracker.reconcile(
        [entry(TRUNK, LINKED, "4", "00:00:10"),
         entry("PJSIP/trunk-00000003", "1796155127.0", "4", "00:00:05", linkedid="1796155127.0")],
        time=1796155200,
    )  # fmt: skip
    assert [(e.call_id, e.reason, e.time) for e in ends(out)] == [
        (LINKED, "lost", "1796155200.000000")
    ]


def test_after_a_snapshot_a_new_round_of_ringing_is_told_again() -> None:
    tracker = CallTracker()
    tracker.reconcile([entry(TRUNK, LINKED, "6", "00:00:10"),
                       entry(OP101, "1796155126.1", "5", "00:00:05")])  # fmt: skip
    out = track([
        ev("Hangup", snap(OP101, "1796155126.1", "5"), Cause="19"),
        ev("DialBegin", snap(TRUNK, LINKED, "6"),
           snap("PJSIP/101-00000005", "1796155126.5", prefix="Dest")),
        ev("Newstate", snap("PJSIP/101-00000005", "1796155126.5", "5")),
    ], tracker)  # fmt: skip
    assert seen(out) == [("ringing", "101")]


# -- bounded state ------------------------------------------------------------------------------
@pytest.mark.parametrize("ignored", ["AgentComplete", "AgentRingNoAnswer", "Unlink"])
def test_a_call_silent_past_idle_expiry_is_dropped_by_events_that_say_nothing(
    ignored: str,
) -> None:
    """The sweep comes every 64 handled events, events the tracker ignores included: a call
    whose last event was 7200 s of stream time ago ends lost at the second sweep."""
    tracker = CallTracker(idle_expiry=7200)
    notice = DropNotice(tracker)
    first = ev("DialBegin", snap(TRUNK, LINKED, "4"),
               snap(OP101, "1796155126.1", prefix="Dest"), ts="1796150000.000000")  # fmt: skip
    second = ev("Newchannel", snap("PJSIP/trunk-00000003", "1796150000.5", "4",
                                   linkedid="1796150000.5"), ts="1796150000.000000")  # fmt: skip
    quiet = [ev(ignored, ts="1796150000.000000") for _ in range(62)]
    later = [ev(ignored, ts="1796157200.000000") for _ in range(64)]  # exactly 7200 s on
    out = track([first, second, *quiet, *later[:-1]], tracker)
    assert out == [] and notice.check() is None
    out = tracker.feed(later[-1])
    assert sorted((e.call_id, e.reason) for e in ends(out)) == [
        ("1796150000.5", "lost"), (LINKED, "lost")
    ]  # fmt: skip
    assert (tracker.expired, tracker.evicted) == (2, 0)
    assert notice.check() == (
        "stopped following 2 call(s) that never hung up: 0 dropped as the oldest past [calls] "
        "max_active = 20000, 2 silent for 2 h; they end as lost"
    )


def test_a_channel_of_a_dropped_call_hanging_up_later_says_nothing() -> None:
    tracker = CallTracker(max_active=1)
    out = track([
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("Newchannel", snap("PJSIP/trunk-00000003", "1796155127.0", "4",
                              linkedid="1796155127.0")),
        ev("Hangup", snap(TRUNK, LINKED, "4"), Cause="16"),
    ], tracker)  # fmt: skip
    assert [(e.call_id, e.reason) for e in ends(out)] == [(LINKED, "lost")]


def test_straggling_events_of_the_last_8192_ended_calls_start_no_ghost() -> None:
    tracker = CallTracker()
    for n in range(8193):
        uid = f"1.{n}"
        tracker.feed({"Event": "Newchannel", "Channel": TRUNK, "Uniqueid": uid, "Linkedid": uid})
        tracker.feed({"Event": "Hangup", "Channel": TRUNK, "Uniqueid": uid, "Linkedid": uid})
    late = {"Event": "Newstate", "Channel": OP102, "ChannelState": "5", "Linkedid": "1.1",
            "Uniqueid": "1.1x"}  # fmt: skip
    assert tracker.feed(late) == [] and tracker.active_calls() == []
    forgotten = {**late, "Linkedid": "1.0", "Uniqueid": "1.0x"}
    assert [e.kind for e in tracker.feed(forgotten)] == ["ringing"]


def test_a_dial_progressing_without_ringing_rings_nobody() -> None:
    out = track([
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", prefix="Dest")),
        ev("DialState", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", prefix="Dest"),
           DialStatus="PROGRESS"),
    ])  # fmt: skip
    assert out == []


def test_an_agent_connect_of_a_member_gone_already_says_nothing() -> None:
    tracker = CallTracker()
    member = snap(OP101, "1796155126.1", "6")
    track([*[ev("Newchannel", snap(TRUNK, LINKED, "4")), ev("Newchannel", member)],
           ev("Hangup", member, Cause="16")], tracker)  # fmt: skip
    connect = ev("AgentConnect", snap(TRUNK, LINKED, "6"),
                 snap(OP101, "1796155126.1", "6", "Dest"), Queue="support")  # fmt: skip
    assert tracker.feed(connect) == []
    assert track1([ev1("AgentConnect", Queue="support", Uniqueid="6.1", Channel="SIP/1-x")]) == []


def test_max_active_below_one_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match=r"^max_active must be at least 1, got 0$"):
        CallTracker(max_active=0)


def test_a_rename_found_by_uniqueid_when_the_old_name_is_not_known() -> None:
    out = track1([
        caller("7.1"),
        newchannel("Local/101@from-internal-0001;2", "7.2"),
        dial("SIP/trunk-00000001", "7.1", "Local/101@from-internal-0001;2", "7.2"),
        ev1("Rename", Channel="Local/101@from-internal-0001;2<ZOMBIE>",
            Newname="SIP/101-00000002", Uniqueid="7.2"),
        ringing("SIP/101-00000002", "7.2"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101")]
