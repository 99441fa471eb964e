"""Call-event contract and Asterisk 22 semantics (as recorded in the lab notes), event by event."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cti_cli.calls import Answered, CallEvent, CallTracker, Ended, Ringing, Transferred

LINKEDID = "1732550000.10"
CALLER = "1732550000.10"


def chan(event: str, name: str, uid: str, state: str, **extra: str) -> dict[str, str]:
    desc = {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up"}[state]
    return {
        "Event": event,
        "Channel": name,
        "Uniqueid": uid,
        "Linkedid": LINKEDID,
        "ChannelState": state,
        "ChannelStateDesc": desc,
        "CallerIDNum": extra.pop("CallerIDNum", "+74951234567"),
        "CallerIDName": extra.pop("CallerIDName", "Иван Петров"),
        "Exten": extra.pop("Exten", "5551000"),
        **extra,
    }


def dial(event: str, dest: str, dest_uid: str, dest_state: str, **extra: str) -> dict[str, str]:
    ev = chan(event, "PJSIP/trunk-00000001", CALLER, "4")
    ev.update(
        {
            "DestChannel": dest,
            "DestUniqueid": dest_uid,
            "DestLinkedid": LINKEDID,
            "DestChannelState": dest_state,
            **extra,
        }
    )
    return ev


def queue_call_one_busy_one_answers() -> Iterator[dict[str, str]]:
    """Asterisk 22 ring-all queue: 101 answers 486 at once, 102 rings and answers."""
    ts = iter(f"1732550{n:03d}.000000" for n in range(0, 999, 3))
    caller = "PJSIP/trunk-00000001"
    for ev in [
        chan("Newchannel", caller, CALLER, "0"),
        chan("VarSet", caller, CALLER, "4", Variable="X", Value="1"),
        chan("Newstate", caller, CALLER, "4"),
        chan("QueueCallerJoin", caller, CALLER, "4", Queue="support", Position="1"),
        chan("Newchannel", "PJSIP/101-00000002", "1732550000.11", "0", Exten="s"),
        dial(
            "AgentCalled",
            "PJSIP/101-00000002",
            "1732550000.11",
            "0",
            Queue="support",
            Interface="PJSIP/101",
        ),
        dial("DialBegin", "PJSIP/101-00000002", "1732550000.11", "0", DialString="101"),
        chan("Newchannel", "PJSIP/102-00000003", "1732550000.12", "0", Exten="s"),
        dial(
            "AgentCalled",
            "PJSIP/102-00000003",
            "1732550000.12",
            "0",
            Queue="support",
            Interface="PJSIP/102",
        ),
        dial("DialBegin", "PJSIP/102-00000003", "1732550000.12", "0", DialString="102"),
        dial("DialEnd", "PJSIP/101-00000002", "1732550000.11", "0", DialStatus="BUSY"),
        chan(
            "Hangup",
            "PJSIP/101-00000002",
            "1732550000.11",
            "0",
            Cause="17",
            **{"Cause-txt": "User busy"},
        ),
        chan("Newstate", "PJSIP/102-00000003", "1732550000.12", "5"),
        dial("DialState", "PJSIP/102-00000003", "1732550000.12", "5", DialStatus="RINGING"),
        chan("Newstate", "PJSIP/102-00000003", "1732550000.12", "6"),
        dial("DialEnd", "PJSIP/102-00000003", "1732550000.12", "6", DialStatus="ANSWER"),
        dial(
            "AgentConnect",
            "PJSIP/102-00000003",
            "1732550000.12",
            "6",
            Queue="support",
            Interface="PJSIP/102",
        ),
        chan("BridgeEnter", caller, CALLER, "6"),
        chan("BridgeEnter", "PJSIP/102-00000003", "1732550000.12", "6"),
        dial("AgentComplete", "PJSIP/102-00000003", "1732550000.12", "6", Queue="support"),
        chan("Hangup", "PJSIP/102-00000003", "1732550000.12", "6", Cause="16"),
        chan("Hangup", caller, CALLER, "6", Cause="16"),
    ]:
        ev["Timestamp"] = next(ts)
        yield ev


def feed_all(tracker: CallTracker, events: Iterator[dict[str, str]]) -> list[CallEvent]:
    out: list[CallEvent] = []
    for ev in events:
        out.extend(tracker.feed(ev))
    return out


def test_queue_call_on_asterisk_22() -> None:
    out = feed_all(CallTracker(), queue_call_one_busy_one_answers())
    assert [e.to_dict()["event"] for e in out] == ["ringing", "answered", "ended"]
    end = out[-1]
    assert isinstance(end, Ended)
    assert end.rang == ("102",)  # 101 was dialled but answered 486 at once: it never rang
    assert end.answered_by == ("102",) and end.reason == "completed"
    assert end.queue == "support" and end.dialed == "5551000"
    assert end.duration == 63  # first to last Timestamp of the call


def test_contract_keys_order_and_json_line() -> None:
    out = feed_all(CallTracker(), queue_call_one_busy_one_answers())
    common = ["event", "call_id", "uniqueid", "caller", "caller_name", "dialed", "queue", "time"]
    assert list(out[0].to_dict()) == [*common, "extension"]
    assert list(out[-1].to_dict()) == [
        *common,
        "answered",
        "answered_by",
        "rang",
        "reason",
        "duration",
    ]
    line = out[0].to_json()
    assert "\n" not in line and "Иван Петров" in line and ", " not in line
    assert json.loads(line) == out[0].to_dict()
    transferred = Transferred("c", "u", "1", "", "2", None, None, "101", "203")
    assert list(transferred.to_dict())[-2:] == ["from_extension", "to"]


def test_abandoned_queue_call() -> None:
    events = list(queue_call_one_busy_one_answers())[:14]  # 102 is ringing
    events += [
        chan("QueueCallerAbandon", "PJSIP/trunk-00000001", CALLER, "4", Queue="support"),
        dial("DialEnd", "PJSIP/102-00000003", "1732550000.12", "5", DialStatus="CANCEL"),
        chan("Hangup", "PJSIP/102-00000003", "1732550000.12", "5", Cause="26"),
        chan("Hangup", "PJSIP/trunk-00000001", CALLER, "4", Cause="16"),
    ]
    tracker = CallTracker()
    out = feed_all(tracker, iter(events[:14]))
    (view,) = tracker.active_calls()
    assert (view.state, view.ringing, view.queue, view.caller_name) == (
        "ringing",
        ("102",),
        "support",
        "Иван Петров",
    )
    out += feed_all(tracker, iter(events[14:]))
    end = out[-1]
    assert isinstance(end, Ended) and end.reason == "abandoned" and end.answered is False
    assert tracker.active_calls() == []


def test_unknown_caller_name_is_empty() -> None:
    tracker = CallTracker()
    out = tracker.feed(chan("Newchannel", "PJSIP/trunk-1", CALLER, "0", CallerIDName="<unknown>"))
    out += tracker.feed(chan("Hangup", "PJSIP/trunk-1", CALLER, "0", Cause="16"))
    assert out[-1].caller_name == "" and out[-1].caller == "+74951234567"


def test_freepbx_queue_member_local_channel_maps_to_the_extension() -> None:
    local1, local2 = "Local/101@from-queue-0000001;1", "Local/101@from-queue-0000001;2"
    tracker = CallTracker()
    events = [
        chan("Newchannel", "PJSIP/trunk-1", CALLER, "0"),
        chan("Newchannel", local1, "1732550000.21", "0"),
        chan("Newchannel", local2, "1732550000.22", "4"),
        dial(
            "AgentCalled",
            local1,
            "1732550000.21",
            "0",
            Interface="Local/101@from-queue/n",
            Queue="400",
        ),
        chan("Newchannel", "PJSIP/101-00000009", "1732550000.23", "0"),
        chan("Newstate", "PJSIP/101-00000009", "1732550000.23", "5"),
        chan("Newstate", local1, "1732550000.21", "5"),
        chan("Newstate", "PJSIP/101-00000009", "1732550000.23", "6"),
        chan("Newstate", local1, "1732550000.21", "6"),
        chan("Hangup", local1, "1732550000.21", "6"),
        chan("Hangup", local2, "1732550000.22", "6"),
        chan("Hangup", "PJSIP/101-00000009", "1732550000.23", "6"),
        chan("Hangup", "PJSIP/trunk-1", CALLER, "6"),
    ]
    out = feed_all(tracker, iter(events))
    assert [(e.to_dict()["event"], getattr(e, "extension", "")) for e in out[:-1]] == [
        ("ringing", "101"),
        ("answered", "101"),
    ]
    end = out[-1]
    assert isinstance(end, Ended) and end.rang == ("101",) and end.queue == "400"


def test_extension_pattern_option_for_other_device_naming() -> None:
    events = [
        chan("Newchannel", "PJSIP/trunk-1", CALLER, "0"),
        chan("Newstate", "PJSIP/desk-alice-0000000a", "1732550000.31", "5"),
        chan("Hangup", "PJSIP/desk-alice-0000000a", "1732550000.31", "5"),
        chan("Hangup", "PJSIP/trunk-1", CALLER, "4"),
    ]
    default = feed_all(CallTracker(), iter(events))
    assert [type(e) for e in default] == [Ended]  # not a numeric device: not an operator
    custom = feed_all(CallTracker(r"^PJSIP/desk-(?P<ext>[a-z]+)-[0-9a-f]+$"), iter(events))
    assert isinstance(custom[0], Ringing) and custom[0].extension == "alice"
    with pytest.raises(ValueError, match="not a valid regex"):
        CallTracker("(")
    with pytest.raises(ValueError, match="capture group"):
        CallTracker("PJSIP/.*")


def test_answer_without_observable_ringing_reports_ringing_first() -> None:
    events = [
        chan("Newchannel", "IAX2/trunk-1", CALLER, "0"),
        chan("Newchannel", "IAX2/205-77", "1732550000.41", "0"),
        chan("Newstate", "IAX2/205-77", "1732550000.41", "6"),
    ]
    out = feed_all(CallTracker(), iter(events))
    assert [(type(e), getattr(e, "extension", "")) for e in out] == [
        (Ringing, "205"),
        (Answered, "205"),
    ]


def test_blind_transfer_on_asterisk_22() -> None:
    first = list(queue_call_one_busy_one_answers())[:19]  # 102 is talking with the caller
    rest = [
        {
            "Event": "BlindTransfer",
            "Result": "Success",
            "Extension": "103",
            "TransfererChannel": "PJSIP/102-00000003",
            "TransfererUniqueid": "1732550000.12",
            "TransfereeChannel": "PJSIP/trunk-00000001",
            "TransfereeUniqueid": CALLER,
            "TransfereeLinkedid": LINKEDID,
        },
        chan("Hangup", "PJSIP/102-00000003", "1732550000.12", "6", Cause="16"),
        chan("Newchannel", "PJSIP/103-00000004", "1732550000.13", "0"),
        dial("DialBegin", "PJSIP/103-00000004", "1732550000.13", "0"),
        chan("Newstate", "PJSIP/103-00000004", "1732550000.13", "5"),
        chan("Newstate", "PJSIP/103-00000004", "1732550000.13", "6"),
        chan("Hangup", "PJSIP/trunk-00000001", CALLER, "6", Cause="16"),
        chan("Hangup", "PJSIP/103-00000004", "1732550000.13", "6", Cause="16"),
    ]
    out = feed_all(CallTracker(), iter(first + rest))
    assert [e.to_dict()["event"] for e in out] == [
        "ringing",
        "answered",
        "transferred",
        "ringing",
        "answered",
        "ended",
    ]
    transfer = out[2]
    assert isinstance(transfer, Transferred)
    assert (transfer.from_extension, transfer.to) == ("102", "103")
    end = out[-1]
    assert isinstance(end, Ended) and end.answered_by == ("102", "103")
    assert {e.call_id for e in out} == {LINKEDID} and {e.uniqueid for e in out} == {CALLER}


def test_attaching_mid_call_reports_what_it_can() -> None:
    events = list(queue_call_one_busy_one_answers())[15:]  # joins while 102 talks
    tracker = CallTracker()
    out = feed_all(tracker, iter(events))
    end = out[-1]
    assert isinstance(end, Ended)
    assert end.answered_by == ("102",) and end.call_id == LINKEDID and end.uniqueid == CALLER
    assert tracker.active_calls() == []


def test_garbage_events_never_raise() -> None:
    tracker = CallTracker()
    for ev in [
        {},
        {"Event": "Hangup"},
        {"Event": "DialBegin", "DestUniqueid": "x"},
        {"Event": "AttendedTransfer"},
        {"Event": "Bridge", "Uniqueid1": "a"},
        {"Event": "Dial", "SubEvent": "Begin"},
        {"Event": "Newstate", "Uniqueid": "q"},
        {"Event": "Rename", "Newname": "x"},
        {"Event": "Masquerade", "Clone": "x"},
    ]:
        tracker.feed(ev)


PICKER = "1732550000.20"  # 103's own dial-in leg: Uniqueid = its own Linkedid


def picker_chan(event: str, state: str, **extra: str) -> dict[str, str]:
    ev = chan(event, "PJSIP/103-00000004", PICKER, state, CallerIDNum="103", Exten="**101")
    ev.update({"CallerIDName": "Operator 103", "Linkedid": PICKER, **extra})
    return ev


def pickup_event() -> dict[str, str]:
    """AMI `Pickup` (main/pickup.c): the picker's snapshot, then the ringing one as `Target*`."""
    ev = picker_chan("Pickup", "6", ConnectedLineNum="+74951234567")
    ringing = chan("", "PJSIP/101-00000002", "1732550000.11", "5", Exten="s")
    ringing["ConnectedLineNum"] = "+74951234567"
    ringing["ConnectedLineName"] = "Иван Петров"
    ev.update({f"Target{k}": v for k, v in ringing.items() if k != "Event"})
    return ev


def call_picked_up_by_103(order: str = "asterisk22") -> list[dict[str, str]]:
    """Trunk call to 101; 101 rings; 103 dials **101 (`Pickup(101@from-trunk)`) and talks.

    `asterisk22` is the order the lab's Asterisk 22.10 sends: `Pickup`, then the caller's
    `DialEnd ANSWER` naming the picker, then the ringing phone's hangup (answered elsewhere).
    `pickup_late`: the ringing phone's hangup overtakes `Pickup`; `no_pickup_event`: a stream
    without it (filtered, or an event class not granted) - the DialEnd alone must tell.
    """
    caller = "PJSIP/trunk-00000001"
    ringing = ("PJSIP/101-00000002", "1732550000.11")
    before = [
        chan("Newchannel", caller, CALLER, "4", Exten="101"),
        chan("Newchannel", *ringing, "0", Exten="s"),
        dial("DialBegin", *ringing, "0", DialString="101"),
        chan("Newstate", *ringing, "5"),
        dial("DialState", *ringing, "5", DialStatus="RINGING"),
        picker_chan("Newchannel", "4"),
        picker_chan("Newstate", "6"),
    ]
    answer = [
        dial(
            "DialEnd", "PJSIP/103-00000004", PICKER, "6", DialStatus="ANSWER", DestLinkedid=PICKER
        ),
        chan("Newstate", caller, CALLER, "6"),
    ]
    hangup_ringing = [chan("Hangup", *ringing, "5", Cause="26")]
    after = [
        picker_chan("BridgeEnter", "6"),
        chan("BridgeEnter", caller, CALLER, "6"),
        chan("BridgeLeave", caller, CALLER, "6"),
        picker_chan("BridgeLeave", "6", Linkedid=LINKEDID),
        chan("Hangup", caller, CALLER, "6", Cause="16"),
        picker_chan("Hangup", "6", Linkedid=LINKEDID, Cause="16"),
    ]
    if order == "pickup_late":
        return [*before, *hangup_ringing, pickup_event(), *answer, *after]
    if order == "no_pickup_event":
        return [*before, *answer, *hangup_ringing, *after]
    return [*before, pickup_event(), *answer, *hangup_ringing, *after]


@pytest.mark.parametrize("order", ["asterisk22", "pickup_late", "no_pickup_event"])
def test_pickup_is_answered_by_the_picker_in_the_callers_call(order: str) -> None:
    tracker = CallTracker()
    out = feed_all(tracker, iter(call_picked_up_by_103(order)))
    assert [(e.kind, getattr(e, "extension", "")) for e in out] == [
        ("ringing", "101"),
        ("ringing", "103"),
        ("answered", "103"),
        ("ended", ""),
    ]
    assert {e.call_id for e in out} == {LINKEDID}, "103's own **101 leg is no call of its own"
    assert {e.caller for e in out} == {"+74951234567"}
    end = out[-1]
    assert isinstance(end, Ended)
    assert (end.answered, end.answered_by, end.rang, end.reason) == (
        True,
        ("103",),
        ("101", "103"),
        "completed",
    )
    assert tracker.active_calls() == [] and tracker._chans == {} and tracker._calls == {}


def test_pickup_seen_from_the_middle_of_the_call() -> None:
    """Attached at the Pickup event: the caller comes from the target's connected line."""
    events = call_picked_up_by_103("pickup_late")
    start = next(i for i, ev in enumerate(events) if ev["Event"] == "Pickup")
    out = feed_all(CallTracker(), iter(events[start:]))
    assert [(e.kind, getattr(e, "extension", "")) for e in out] == [
        ("ringing", "103"),
        ("answered", "103"),
        ("ended", ""),
    ]
    assert {(e.call_id, e.caller, e.caller_name) for e in out} == {
        (LINKEDID, "+74951234567", "Иван Петров")
    }


def test_pickup_with_missing_headers_never_raises() -> None:
    for ev in [
        {"Event": "Pickup"},
        {"Event": "Pickup", "Uniqueid": "u1", "Channel": "PJSIP/103-1"},
        {"Event": "Pickup", "Uniqueid": "u2", "TargetUniqueid": "nope", "TargetLinkedid": ""},
        picker_chan("Pickup", "6"),
    ]:
        out = CallTracker().feed(ev)
        assert all(e.kind != "ended" for e in out)
