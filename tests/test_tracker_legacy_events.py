"""Asterisk 1.4 - 11 sequences the transcripts do not hold: each 1.x event the tracker reads is,
somewhere here, the only evidence of what the operator's screen must show.

Events are written header for header as 1.x sends them (no Linkedid: calls are tied along
`Dial`, `Bridge`, `Masquerade`, `AgentCalled`/`AgentConnect`), often on a filtered stream
(`eventfilter` leaving out Newchannel or Newstate Up), which real sites run.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from cti_cli.ami.message import Message
from cti_cli.calls import CallEvent, CallTracker, Ended, Transferred

TRUNK = "SIP/trunk-00000001"
OP101 = "SIP/101-00000002"
OP102 = "SIP/102-00000003"


def ev(event: str, **headers: str) -> Message:
    return Message.from_headers({"Event": event, **headers})


def track(events: Iterable[Message]) -> list[CallEvent]:
    tracker = CallTracker()
    return [call_event for e in events for call_event in tracker.feed(e)]


def seen(out: list[CallEvent]) -> list[tuple[str, str]]:
    return [(e.kind, getattr(e, "extension", "") or getattr(e, "reason", "")) for e in out]


def ended(out: list[CallEvent]) -> list[Ended]:
    return [e for e in out if isinstance(e, Ended)]


def caller(uid: str = "1.1", channel: str = TRUNK) -> Message:
    return ev(
        "Newchannel", Channel=channel, ChannelState="4", ChannelStateDesc="Ring",
        CallerIDNum="0612345678", CallerIDName="Иван Петров", Exten="5551000", Uniqueid=uid,
    )  # fmt: skip


def newchannel(channel: str, uid: str) -> Message:
    return ev("Newchannel", Channel=channel, ChannelState="0", CallerIDNum="", Uniqueid=uid)


def ringing(channel: str, uid: str) -> Message:
    return ev(
        "Newstate", Channel=channel, ChannelState="5", ChannelStateDesc="Ringing", Uniqueid=uid
    )


def up(channel: str, uid: str) -> Message:
    return ev("Newstate", Channel=channel, ChannelState="6", ChannelStateDesc="Up", Uniqueid=uid)


def hangup(channel: str, uid: str, cause: str = "16") -> Message:
    return ev("Hangup", Channel=channel, Uniqueid=uid, Cause=cause)


def dial(src: str, src_uid: str, dest: str, dest_uid: str, sub: str = "Begin") -> Message:
    return ev(
        "Dial", SubEvent=sub, Channel=src, Destination=dest, CallerIDNum="0612345678",
        UniqueID=src_uid, DestUniqueID=dest_uid, Dialstring="101",
    )  # fmt: skip


def bridge(one: tuple[str, str], two: tuple[str, str], state: str = "Link") -> Message:
    return ev(
        "Bridge", Bridgestate=state, Bridgetype="core", Channel1=one[0], Channel2=two[0],
        Uniqueid1=one[1], Uniqueid2=two[1], CallerID1="0612345678", CallerID2="101",
    )  # fmt: skip


# -- Dial and Bridge ----------------------------------------------------------------------------
def test_dial_alone_introduces_the_operator_and_the_bridge_alone_answers() -> None:
    """Filtered 1.8 stream: no Newchannel for the phone, no Newstate Up; Dial and Bridge say it."""
    out = track([
        caller(),
        dial(TRUNK, "1.1", OP101, "1.2"),
        ringing(OP101, "1.2"),
        bridge((TRUNK, "1.1"), (OP101, "1.2")),
        bridge((TRUNK, "1.1"), (OP101, "1.2"), state="Unlink"),
        hangup(OP101, "1.2"),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert {e.call_id for e in out} == {"1.1"}
    end = ended(out)[0]
    assert (end.caller, end.caller_name, end.dialed) == ("0612345678", "Иван Петров", "5551000")
    assert end.answered_by == ("101",) and end.rang == ("101",)


def test_an_unlinked_bridge_answers_nobody() -> None:
    out = track([
        caller(),
        newchannel(OP101, "1.2"),
        dial(TRUNK, "1.1", OP101, "1.2"),
        ringing(OP101, "1.2"),
        bridge((TRUNK, "1.1"), (OP101, "1.2"), state="Unlink"),
        hangup(OP101, "1.2"),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "cancelled")]


def test_a_1_4_link_answers_the_operator_bridged_in() -> None:
    out = track([
        caller(),
        newchannel(OP101, "1.2"),
        dial(TRUNK, "1.1", OP101, "1.2"),
        ev("Link", Channel1=TRUNK, Channel2=OP101, Uniqueid1="1.1", Uniqueid2="1.2"),
        hangup(OP101, "1.2"),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


def test_a_1_4_dial_ties_the_phone_to_the_caller_by_its_source_uniqueid() -> None:
    out = track([
        caller("3.1"),
        newchannel(OP101, "3.2"),
        ev("Dial", Source=TRUNK, Destination=OP101, CallerID="0612345678",
           CallerIDName="Иван Петров", SrcUniqueID="3.1", DestUniqueID="3.2"),
        ev("Newstate", Channel=OP101, State="Ringing", Uniqueid="3.2"),
        ev("Newstate", Channel=OP101, State="Up", Uniqueid="3.2"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert {e.call_id for e in out} == {"3.1"}


def test_a_call_out_through_a_trunk_is_answered_when_the_trunk_is_bridged() -> None:
    """101 calls a mobile: nobody is an operator of this call, the bridge to the trunk answers."""
    out = track([
        caller("4.1", OP101),
        newchannel(TRUNK, "4.2"),
        dial(OP101, "4.1", TRUNK, "4.2"),
        bridge((OP101, "4.1"), (TRUNK, "4.2")),
        hangup(TRUNK, "4.2"),
        hangup(OP101, "4.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "completed")]
    assert ended(out)[0].answered is True and ended(out)[0].answered_by == ()


@pytest.mark.parametrize(
    ("status", "reason"),
    [("BUSY", "busy"), ("NOANSWER", "no-answer"), ("CHANUNAVAIL", "failed"),
     ("CONGESTION", "failed"), ("CANCEL", "cancelled")],
)  # fmt: skip
def test_the_dial_end_status_is_why_an_unanswered_call_ended(status: str, reason: str) -> None:
    out = track([
        caller("2.1"),
        newchannel(OP101, "2.2"),
        dial(TRUNK, "2.1", OP101, "2.2"),
        hangup(OP101, "2.2", cause="17" if status == "BUSY" else "16"),
        ev("Dial", SubEvent="End", Channel=TRUNK, UniqueID="2.1", DialStatus=status),
        hangup(TRUNK, "2.1"),
    ])  # fmt: skip
    assert [e.reason for e in ended(out)] == [reason]


def test_a_dial_of_an_unknown_kind_ties_nothing() -> None:
    out = track([
        caller("2.1"),
        newchannel(OP101, "2.2"),
        dial(TRUNK, "2.1", OP101, "2.2", sub="Whatever"),
        up(OP101, "2.2"),
        hangup(OP101, "2.2"),
        hangup(TRUNK, "2.1"),
    ])  # fmt: skip
    # 101 stays the caller of a call of its own: no operator event, the trunk's call unanswered
    assert [kind for kind, _ in seen(out)] == ["ended", "ended"]
    assert [(e.call_id, e.answered) for e in ended(out)] == [("2.2", False), ("2.1", False)]


# -- Masquerade ---------------------------------------------------------------------------------
def test_a_1_8_pickup_by_masquerade_is_one_call_answered_by_the_picker() -> None:
    out = track([
        caller("5.1"),
        newchannel(OP101, "5.2"),
        dial(TRUNK, "5.1", OP101, "5.2"),
        ringing(OP101, "5.2"),
        ev("Newchannel", Channel=OP102, ChannelState="4", CallerIDNum="102", Exten="*8",
           Uniqueid="5.3"),
        up(OP102, "5.3"),
        ev("Masquerade", Clone=OP102, CloneState="Up", Original=OP101, OriginalState="Ringing"),
        hangup(OP101, "5.2"),
        hangup(OP102, "5.3"),
        hangup(TRUNK, "5.1"),
    ])  # fmt: skip
    assert seen(out) == [
        ("ringing", "101"), ("ringing", "102"), ("answered", "102"), ("ended", "completed"),
    ]  # fmt: skip
    assert {e.call_id for e in out} == {"5.1"}
    assert ended(out)[0].rang == ("101", "102") and ended(out)[0].answered_by == ("102",)


def test_a_masquerade_of_channels_never_seen_changes_nothing() -> None:
    out = track([
        caller("5.1"),
        ev("Masquerade", Clone=OP102, Original=OP101),
        hangup(TRUNK, "5.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]


# -- Rename -------------------------------------------------------------------------------------
@pytest.mark.parametrize("old", ["Channel", "Oldname"])
@pytest.mark.parametrize("by_uid", [True, False])
def test_a_renamed_channel_is_followed_by_its_new_name(old: str, by_uid: bool) -> None:
    """A Local half optimised into the phone's channel (1.8 `Channel`, 1.4 `Oldname`)."""
    local = "Local/101@from-internal-0001;2"
    rename = {old: local, "Newname": OP101, **({"Uniqueid": "7.2"} if by_uid else {})}
    out = track([
        caller("7.1"),
        newchannel(local, "7.2"),
        dial(TRUNK, "7.1", local, "7.2"),
        ev("Rename", **rename),
        ringing(OP101, "7.2"),
        bridge((TRUNK, "7.1"), (OP101, "")),  # the phone named only: found by its new name
        hangup(OP101, "7.2"),
        hangup(TRUNK, "7.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


def test_a_rename_without_a_new_name_is_ignored() -> None:
    out = track([
        caller("7.1"),
        newchannel(OP101, "7.2"),
        dial(TRUNK, "7.1", OP101, "7.2"),
        ev("Rename", Channel=OP101, Uniqueid="7.2"),
        up(OP101, "7.2"),
        hangup(OP101, "7.2"),
        hangup(TRUNK, "7.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


# -- queues -------------------------------------------------------------------------------------
def test_a_freepbx_queue_member_is_named_and_answered_by_the_agent_events() -> None:
    """1.8 queue with a Local member `Local/101@from-queue/n`: AgentCalled ties it to the caller
    (by name), AgentConnect answers it (no Newstate Up, no Bridge on this filtered stream)."""
    member = "Local/101@from-queue-0001;1"
    out = track([
        caller("6.1"),
        newchannel(member, "6.2"),
        newchannel("Local/101@from-queue-0001;2", "6.3"),
        ev("AgentCalled", Queue="support", AgentCalled="Local/101@from-queue/n",
           AgentName="Anna", ChannelCalling=TRUNK, DestinationChannel=member,
           CallerIDNum="0612345678", Uniqueid="6.1"),
        ringing(member, "6.2"),
        ev("AgentConnect", Queue="support", Uniqueid="6.1", Channel=member,
           Member="Local/101@from-queue/n", MemberName="Anna", Holdtime="3",
           BridgedChannel="6.2", Ringtime="2"),
        hangup(member, "6.2"),
        hangup("Local/101@from-queue-0001;2", "6.3"),
        hangup(TRUNK, "6.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert {e.call_id for e in out} == {"6.1"} and {e.queue for e in out} == {"support"}


def test_a_member_found_only_by_its_channel_name_is_answered() -> None:
    """AgentConnect whose BridgedChannel is not a Uniqueid we know: the member's name is."""
    out = track([
        caller("6.1"),
        ev("Join", Channel=TRUNK, Queue="support", Position="1", Uniqueid="6.1"),
        newchannel(OP101, "6.2"),
        ev("AgentCalled", Queue="support", AgentCalled="SIP/101", ChannelCalling=TRUNK,
           DestinationChannel=OP101, Uniqueid="6.1"),
        ev("AgentConnect", Queue="support", Uniqueid="6.1", Channel=OP101, Member="SIP/101",
           BridgedChannel="unknown"),
        hangup(OP101, "6.2"),
        hangup(TRUNK, "6.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert {e.queue for e in out} == {"support"}


# -- Transfer (1.x) -----------------------------------------------------------------------------
def answered_call() -> list[Message]:
    """The trunk's call 8.1, answered by 101 (8.2); 102 (8.3) exists, idle."""
    return [
        caller("8.1"),
        newchannel(OP101, "8.2"),
        dial(TRUNK, "8.1", OP101, "8.2"),
        up(OP101, "8.2"),
        ev("Newchannel", Channel=OP102, ChannelState="0", CallerIDNum="102", Uniqueid="8.3"),
    ]


def transfers(out: list[CallEvent]) -> list[tuple[str, str, str]]:
    return [(e.call_id, e.from_extension, e.to) for e in out if isinstance(e, Transferred)]


def test_a_1_8_blind_transfer_names_the_operator_and_the_number() -> None:
    out = track([
        *answered_call(),
        ev("Transfer", TransferMethod="SIP", TransferType="Blind", Channel=OP101, Uniqueid="8.2",
           TargetChannel=TRUNK, TargetUniqueid="8.1", TransferExten="5550102",
           TransferContext="from-internal"),
    ])  # fmt: skip
    assert transfers(out) == [("8.1", "101", "5550102")]


def test_a_1_8_attended_transfer_goes_to_the_operator_consulted() -> None:
    out = track([
        *answered_call(),
        ev("Transfer", TransferMethod="SIP", TransferType="Attended", Channel=OP101,
           Uniqueid="8.2", TargetChannel=OP102, TargetUniqueid="8.3", TransferExten="",
           TransferContext="from-internal"),
    ])  # fmt: skip
    assert [(f, t) for _, f, t in transfers(out)] == [("101", "102")]


@pytest.mark.parametrize(
    ("channel", "number", "source"),
    [(OP101, "", "101"), ("SIP/trunk-00000009", "0698765432", "0698765432")],
)
def test_a_transfer_by_a_channel_never_seen_names_it_by_device_or_number(
    channel: str, number: str, source: str
) -> None:
    out = track([
        *answered_call(),
        ev("Transfer", TransferType="Blind", Channel=channel, Uniqueid="9.9",
           CallerIDNum=number, TargetChannel=TRUNK, TargetUniqueid="8.1", TransferExten="200"),
    ])  # fmt: skip
    assert transfers(out) == [("8.1", source, "200")]


def test_a_transfer_of_channels_never_seen_is_not_reported() -> None:
    out = track([
        *answered_call(),
        ev("Transfer", TransferType="Blind", Channel=OP101, Uniqueid="9.8", TargetUniqueid="9.9",
           TransferExten="200"),
    ])  # fmt: skip
    assert transfers(out) == []


# -- LocalBridge --------------------------------------------------------------------------------
def test_local_bridge_joins_the_half_that_dialled_the_phone_to_the_callers_call() -> None:
    """The `;1` half's Newchannel was not seen (cti started between the two), so the `;2` half
    that dials 201 began a call of its own; LocalBridge says both halves are one channel."""
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    op201 = "SIP/201-00000004"
    local_bridge = {"Channel1": half1, "Channel2": half2, "Uniqueid1": "9.2", "Uniqueid2": "9.3"}
    out = track([
        caller("9.1"),
        newchannel(half2, "9.3"),
        dial(TRUNK, "9.1", half1, "9.2"),
        newchannel(op201, "9.4"),
        dial(half2, "9.3", op201, "9.4"),
        ev("LocalBridge", **local_bridge, Context="from-internal", LocalOptimization="No"),
        ringing(op201, "9.4"),
        up(op201, "9.4"),
        hangup(op201, "9.4"),
        hangup(half2, "9.3"),
        hangup(half1, "9.2"),
        hangup(TRUNK, "9.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "201"), ("answered", "201"), ("ended", "completed")]
    assert {e.call_id for e in out} == {"9.1"} and out[0].caller_name == "Иван Петров"
