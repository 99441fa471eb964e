"""Asterisk 1.4 - 11 sequences at the edges: a 1.4 `Dial` whose source was never seen (found
by its name), a Local `;2` dialling before cti saw it, `Bridge` without `Bridgestate`, calls out
through a trunk or into a Local channel, queue members known only by name, and 1.x's own names
for the queue and caller ID events. Each asserts what a screen or a webhook shows.
Headers as 1.x writes them (no Linkedid; `UniqueID`/`SrcUniqueID`, `Source`/`Destination`).
"""

from __future__ import annotations

from cti_cli.calls import CallEvent, CallTracker, Ended
from tests.test_tracker_legacy_events import (
    OP101,
    OP102,
    TRUNK,
    bridge,
    caller,
    dial,
    ended,
    ev,
    hangup,
    newchannel,
    ringing,
    seen,
    track,
    up,
)


def calls(out: list[CallEvent]) -> list[tuple[str, str, str]]:
    return [(e.call_id, e.kind, getattr(e, "extension", "")) for e in out]


# -- Dial -----------------------------------------------------------------------------------
def test_a_1_4_dial_from_a_source_never_seen_starts_its_call_by_the_source_name() -> None:
    """1.4: `Source`/`SrcUniqueID`; the source's first sight: a Local `;2` half whose `;1` is
    in the caller's call, so the phone it dials rings in the caller's call."""
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    op201 = "SIP/201-00000004"
    out = track([
        caller("9.1"),
        dial(TRUNK, "9.1", half1, "9.2"),
        ev("Dial", Source=half2, Destination=op201, CallerIDNum="0612345678",
           SrcUniqueID="9.3", DestUniqueID="9.4"),
        ringing(op201, "9.4"),
        up(op201, "9.4"),
        hangup(op201, "9.4"), hangup(half2, "9.3"), hangup(half1, "9.2"), hangup(TRUNK, "9.1"),
    ])  # fmt: skip
    assert calls(out) == [
        ("9.1", "ringing", "201"), ("9.1", "answered", "201"), ("9.1", "ended", ""),
    ]  # fmt: skip
    assert out[0].caller == "0612345678" and out[0].caller_name == "Иван Петров"


def test_a_dial_from_a_source_never_seen_takes_its_caller_id_and_dialled_number() -> None:
    out = track([
        ev("Dial", SubEvent="Begin", Channel=TRUNK, Destination=OP101, CallerIDNum="0612345678",
           CallerIDName="Мария", Exten="5551000", UniqueID="3.1", DestUniqueID="3.2"),
        ringing(OP101, "3.2"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert calls(out) == [("3.1", "ringing", "101"), ("3.1", "ended", "")]
    assert (out[0].caller, out[0].caller_name, out[0].dialed) == ("0612345678", "Мария", "5551000")


def test_a_dial_without_a_destination_uniqueid_ties_nothing() -> None:
    out = track([
        caller("3.1"),
        newchannel(OP101, "3.2"),
        ev("Dial", SubEvent="Begin", Channel=TRUNK, Destination=OP101, UniqueID="3.1"),
        ringing(OP101, "3.2"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    # 101's phone is no operator of 3.1: its own channel, a call of its own that ends unshown
    assert calls(out) == [("3.2", "ended", ""), ("3.1", "ended", "")]


def test_a_dial_without_a_source_is_ignored() -> None:
    out = track([
        ev("Dial", SubEvent="Begin", Destination=OP101, DestUniqueID="3.2"),
        ringing(OP101, "3.2"),
    ])  # fmt: skip
    assert out == []  # 101 was never tied to a caller: its own channel, no operator


def test_a_dial_from_a_straggler_of_an_ended_call_ties_nothing() -> None:
    out = track([
        caller("3.1"),
        hangup(TRUNK, "3.1"),
        dial(TRUNK, "3.1", OP101, "3.2"),
        ringing(OP101, "3.2"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]


def test_a_dial_end_of_an_unseen_source_records_its_status() -> None:
    out = track([
        caller("3.1"),
        dial(TRUNK, "3.1", OP101, "3.2"),
        ev("Dial", SubEvent="End", Channel=TRUNK, UniqueID="3.1", DialStatus="BUSY"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "busy")]


def test_a_dial_end_without_a_status_keeps_the_reason() -> None:
    out = track([
        caller("3.1"),
        dial(TRUNK, "3.1", OP101, "3.2"),
        ev("Dial", SubEvent="End", Channel=TRUNK, UniqueID="3.1", DialStatus="CHANUNAVAIL"),
        ev("Dial", SubEvent="End", Channel=TRUNK, UniqueID="3.1"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "failed")]


# -- Bridge / Link ----------------------------------------------------------------------------
def test_a_bridge_without_a_bridgestate_is_a_link() -> None:
    """1.6 sends `Bridge` with `Bridgestate`; a module writing none still links."""
    link = bridge((TRUNK, "1.1"), (OP101, "1.2"))
    headers = {k: v for k, v in link.items() if k != "Bridgestate"}
    out = track([
        caller("1.1"),
        newchannel(OP101, "1.2"),
        ev("Bridge", **{k: v for k, v in headers.items() if k != "Event"}),
        hangup(OP101, "1.2"),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


def test_a_link_event_is_a_link_whatever_its_bridgestate() -> None:
    out = track([
        caller("1.1"),
        newchannel(OP101, "1.2"),
        ev("Link", Channel1=TRUNK, Channel2=OP101, Uniqueid1="1.1", Uniqueid2="1.2",
           Bridgestate="Unlink"),
        ev("Unlink", Channel1=TRUNK, Channel2=OP101, Uniqueid1="1.1", Uniqueid2="1.2"),
        hangup(OP101, "1.2"),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


def test_a_bridge_with_a_channel_never_seen_ties_nothing() -> None:
    out = track([
        caller("1.1"),
        bridge((TRUNK, "1.1"), (OP101, "1.2")),
        hangup(TRUNK, "1.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]


def test_an_operators_call_out_through_a_trunk_is_answered_by_no_extension() -> None:
    """101 calls out: 101 is the caller (no operator of its own call), the trunk answers."""
    out = track([
        caller("2.1", OP101),
        newchannel("SIP/trunk-00000009", "2.2"),
        dial(OP101, "2.1", "SIP/trunk-00000009", "2.2"),
        bridge((OP101, "2.1"), ("SIP/trunk-00000009", "2.2")),
        hangup("SIP/trunk-00000009", "2.2"),
        hangup(OP101, "2.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "completed")]
    assert (ended(out)[0].answered, ended(out)[0].answered_by) == (True, ())


def test_a_trunk_call_bridged_to_a_local_channel_is_not_answered_by_it() -> None:
    """The caller bridged to a Local half (a queue or an IVR): nobody answered yet."""
    local = "Local/600@from-internal-0001;1"
    out = track([
        caller("2.1"),
        newchannel(local, "2.2"),
        dial(TRUNK, "2.1", local, "2.2"),
        bridge((TRUNK, "2.1"), (local, "2.2")),
        hangup(local, "2.2"),
        hangup(TRUNK, "2.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]


def test_two_operators_bridged_both_answer_in_the_call() -> None:
    """101 was the caller's operator; the second bridge (an attended transfer by hand) links
    the caller to 102, first seen here: 102 answers in the caller's call."""
    out = track([
        caller("4.1"),
        newchannel(OP101, "4.2"),
        dial(TRUNK, "4.1", OP101, "4.2"),
        up(OP101, "4.2"),
        newchannel(OP102, "4.3"),
        bridge((OP102, "4.3"), (TRUNK, "4.1")),
        hangup(OP101, "4.2"),
        hangup(OP102, "4.3"),
        hangup(TRUNK, "4.1"),
    ])  # fmt: skip
    assert calls(out)[-3:] == [("4.1", "ringing", "102"), ("4.1", "answered", "102"),
                               ("4.1", "ended", "")]  # fmt: skip
    assert ended(out)[0].answered_by == ("101", "102")


def test_a_bridge_of_an_operator_already_talking_says_nothing_new() -> None:
    out = track([
        caller("4.1"),
        newchannel(OP101, "4.2"),
        dial(TRUNK, "4.1", OP101, "4.2"),
        up(OP101, "4.2"),
        bridge((TRUNK, "4.1"), (OP101, "4.2")),
        bridge((OP101, "4.2"), (TRUNK, "4.1")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101")]


def test_a_bridge_found_by_channel_names_only() -> None:
    out = track([
        caller("4.1"),
        newchannel(OP101, "4.2"),
        ev("Link", Channel1=TRUNK, Channel2=OP101),
        hangup(OP101, "4.2"),
        hangup(TRUNK, "4.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


# -- LocalBridge and Masquerade -----------------------------------------------------------------
def test_an_asterisk_12_local_bridge_ties_nothing_more() -> None:
    """AMI 2 `LocalBridge` (LocalOne*/LocalTwo*): the halves share a Linkedid already; the
    1.x headers it does not have must not be looked for."""
    out = track([
        caller("9.1"),
        newchannel("Local/201@from-internal-0001;2", "9.3"),
        ev("LocalBridge", LocalOneUniqueid="9.2", LocalTwoUniqueid="9.3",
           Uniqueid1="9.1", Uniqueid2="9.3", Channel1=TRUNK,
           Channel2="Local/201@from-internal-0001;2"),
        newchannel("SIP/201-00000004", "9.4"),
        dial("Local/201@from-internal-0001;2", "9.3", "SIP/201-00000004", "9.4"),
        ringing("SIP/201-00000004", "9.4"),
    ])  # fmt: skip
    assert calls(out) == [("9.3", "ringing", "201")]


def test_a_local_bridge_with_a_half_never_seen_ties_nothing() -> None:
    out = track([
        caller("9.1"),
        ev("LocalBridge", Channel1="Local/201@from-internal-0001;1",
           Channel2="Local/201@from-internal-0001;2", Uniqueid1="9.2", Uniqueid2="9.3"),
        hangup(TRUNK, "9.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]


def test_a_masquerade_within_one_call_changes_nothing() -> None:
    out = track([
        caller("5.1"),
        newchannel(OP101, "5.2"),
        dial(TRUNK, "5.1", OP101, "5.2"),
        ringing(OP101, "5.2"),
        ev("Masquerade", Clone=OP101, Original=TRUNK),
        hangup(OP101, "5.2"),
        hangup(TRUNK, "5.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "cancelled")]


def test_a_masquerade_with_one_side_never_seen_changes_nothing() -> None:
    for clone, original in ((OP102, OP101), (OP101, OP102)):
        out = track([
            caller("5.1"),
            newchannel(OP101, "5.2"),
            dial(TRUNK, "5.1", OP101, "5.2"),
            ev("Masquerade", Clone=clone, Original=original),
            hangup(OP101, "5.2"),
            hangup(TRUNK, "5.1"),
        ])  # fmt: skip
        assert seen(out) == [("ended", "cancelled")]


# -- queues and caller ID in 1.x names ------------------------------------------------------
def test_1_x_join_leave_and_newcallerid_are_the_ami_2_events() -> None:
    out = track([
        caller("6.1"),
        ev("Newcallerid", Channel=TRUNK, CallerIDNum="0698765432", CallerIDName="Пётр",
           Uniqueid="6.1"),
        ev("Join", Channel=TRUNK, Queue="sales", Position="1", Uniqueid="6.1"),
        ev("Leave", Channel=TRUNK, Queue="other", Uniqueid="6.1"),
        newchannel(OP101, "6.2"),
        dial(TRUNK, "6.1", OP101, "6.2"),
        ringing(OP101, "6.2"),
        hangup(OP101, "6.2"),
        hangup(TRUNK, "6.1"),
    ])  # fmt: skip
    assert {(e.caller, e.caller_name, e.queue) for e in out} == {("0698765432", "Пётр", "sales")}


def test_an_agent_called_finds_the_caller_by_channel_when_its_uniqueid_is_unknown() -> None:
    out = track([
        caller("6.1"),
        newchannel(OP101, "6.2"),
        ev("AgentCalled", Queue="support", AgentCalled="SIP/101", ChannelCalling=TRUNK,
           DestinationChannel=OP101, Uniqueid="6.9"),
        ringing(OP101, "6.2"),
        hangup(OP101, "6.2"),
        hangup(TRUNK, "6.1"),
    ])  # fmt: skip
    assert calls(out) == [("6.1", "ringing", "101"), ("6.1", "ended", "")]
    assert {e.queue for e in out} == {"support"}


def test_an_agent_connect_finds_the_member_by_uniqueid() -> None:
    out = track([
        caller("6.1"),
        newchannel(OP101, "6.2"),
        dial(TRUNK, "6.1", OP101, "6.2"),
        ev("AgentConnect", Queue="support", Uniqueid="6.1", Channel="SIP/101-gone",
           BridgedChannel="6.2", Member="SIP/101"),
        hangup(OP101, "6.2"),
        hangup(TRUNK, "6.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]
    assert isinstance(out[-1], Ended) and out[-1].queue == "support"


def test_an_agent_connect_of_a_caller_never_seen_still_answers_the_member() -> None:
    tracker = CallTracker()
    out = [
        e
        for event in [
            caller("6.1"),
            newchannel(OP101, "6.2"),
            dial(TRUNK, "6.1", OP101, "6.2"),
            ev("AgentConnect", Queue="support", Uniqueid="6.9", Channel=OP101, Member="SIP/101"),
        ]
        for e in tracker.feed(event)
    ]
    assert seen(out) == [("ringing", "101"), ("answered", "101")]
    assert {e.queue for e in out} == {None}


# -- more first sights ------------------------------------------------------------------------
def test_a_1_8_dial_from_a_local_half_never_seen_is_found_by_its_channel_name() -> None:
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    out = track([
        caller("9.1"),
        dial(TRUNK, "9.1", half1, "9.2"),
        dial(half2, "9.3", "SIP/201-00000004", "9.4"),
        ringing("SIP/201-00000004", "9.4"),
    ])  # fmt: skip
    assert calls(out) == [("9.1", "ringing", "201")]


def test_a_dial_without_the_destination_name_ties_an_unnamed_channel() -> None:
    out = track([
        caller("3.1"),
        ev("Dial", SubEvent="Begin", Channel=TRUNK, UniqueID="3.1", DestUniqueID="3.2"),
        ringing(OP101, "3.2"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert seen(out) == [("ended", "cancelled")]  # a channel with no name is no operator


def test_a_phone_ringing_before_its_dial_rings_in_the_callers_call() -> None:
    out = track([
        caller("3.1"),
        newchannel(OP101, "3.2"),
        ringing(OP101, "3.2"),
        dial(TRUNK, "3.1", OP101, "3.2"),
        hangup(OP101, "3.2"),
        hangup(TRUNK, "3.1"),
    ])  # fmt: skip
    assert calls(out) == [("3.1", "ringing", "101"), ("3.1", "ended", "")]


def test_a_bridge_finds_its_channels_by_uniqueid_when_their_names_changed_unseen() -> None:
    out = track([
        caller("4.1"),
        newchannel(OP101, "4.2"),
        dial(TRUNK, "4.1", OP101, "4.2"),
        bridge((TRUNK + "<MASQ>", "4.1"), (OP101 + "<MASQ>", "4.2")),
        hangup(OP101, "4.2"),
        hangup(TRUNK, "4.1"),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101"), ("ended", "completed")]


def test_a_bridge_of_a_channel_up_before_it_was_an_operator_answers_it() -> None:
    """A Local half, Up, optimised into 101's phone (Rename): the Bridge answers 101."""
    local = "Local/101@from-internal-0001;2"
    out = track([
        caller("7.1"),
        newchannel(local, "7.2"),
        dial(TRUNK, "7.1", local, "7.2"),
        ev("Newstate", Channel=local, ChannelState="6", Uniqueid="7.2"),
        ev("Rename", Channel=local, Newname=OP101, Uniqueid="7.2"),
        bridge((TRUNK, "7.1"), (OP101, "7.2")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("answered", "101")]


def local_call(bridge_headers: dict[str, str]) -> list[CallEvent]:
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    return track([
        caller("9.1"),
        newchannel(half2, "9.3"),
        dial(TRUNK, "9.1", half1, "9.2"),
        newchannel("SIP/201-00000004", "9.4"),
        dial(half2, "9.3", "SIP/201-00000004", "9.4"),
        ev("LocalBridge", **bridge_headers),
        ringing("SIP/201-00000004", "9.4"),
    ])  # fmt: skip


def test_a_local_bridge_finds_its_halves_by_uniqueid_or_by_name() -> None:
    half1, half2 = "Local/201@from-internal-0001;1", "Local/201@from-internal-0001;2"
    by_uid = {"Channel1": half1 + "x", "Channel2": half2 + "x", "Uniqueid1": "9.2",
              "Uniqueid2": "9.3"}  # fmt: skip
    by_name = {"Channel1": half1, "Channel2": half2}
    for headers in (by_uid, by_name):
        assert calls(local_call(headers)) == [("9.1", "ringing", "201")]
    one_unknown = {"Channel1": half1, "Channel2": "Local/9@x-1;2", "Uniqueid2": "9.9"}
    assert calls(local_call(one_unknown)) == [("9.3", "ringing", "201")]


def test_a_1_x_member_ringing_before_its_agent_called_rings_in_the_callers_call() -> None:
    out = track([
        caller("6.1"),
        newchannel(OP101, "6.2"),
        ringing(OP101, "6.2"),
        ev("AgentCalled", Queue="support", AgentCalled="SIP/101", ChannelCalling=TRUNK,
           DestinationChannel=OP101, Uniqueid="6.1"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, e.queue) for e in out] == [("6.1", "ringing", "support")]


def test_a_1_x_member_up_before_its_agent_connect_is_answered_in_the_callers_call() -> None:
    out = track([
        caller("6.1"),
        newchannel(OP101, "6.2"),
        up(OP101, "6.2"),
        ev("AgentConnect", Queue="support", Uniqueid="6.1", Channel=OP101, Member="SIP/101",
           BridgedChannel="6.2"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind) for e in out] == [("6.1", "ringing"), ("6.1", "answered")]


def test_a_1_x_agent_called_finds_the_caller_by_uniqueid_first() -> None:
    out = track([
        caller("6.1"),
        newchannel(OP101, "6.2"),
        ev("AgentCalled", Queue="support", AgentCalled="SIP/101", ChannelCalling=TRUNK + "<M>",
           DestinationChannel=OP101, Uniqueid="6.1"),
        ringing(OP101, "6.2"),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, e.queue) for e in out] == [("6.1", "ringing", "support")]
