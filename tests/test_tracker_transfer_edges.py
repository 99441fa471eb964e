"""Transfers and call pickup (Asterisk 12+ and 1.x) in the shapes the captures do not hold:
attended transfers whose consultation or parties were never seen, a transferee that is not one
channel, ring-group consultations, a pickup by a trunk or by a Local channel, and the headers
Asterisk may leave out. Each asserts what a screen or a webhook shows.
Headers as Asterisk 22 writes them (`OrigTransferer*`, `SecondTransferer*`, `TransferTarget*`,
`Transferee*`, `Target*` channel snapshots).
"""

from __future__ import annotations

from cti_cli.ami.message import Message
from cti_cli.calls import CallEvent, CallTracker, Ended, Transferred
from tests.test_tracker_ami2_events import (
    LINKED,
    OP101,
    OP102,
    TRUNK,
    answered,
    attended,
    consultation,
    ev,
    seen,
    snap,
    track,
    transfers,
)

CONSULT = "1796155127.0"  # 101's consultation call to 102
OP101_B = "PJSIP/101-00000003"  # 101's second line, the consultation's caller
OP103 = "PJSIP/103-00000004"


def ends(out: list[CallEvent]) -> dict[str, Ended]:
    return {e.call_id: e for e in out if isinstance(e, Ended)}


def hangups(*chans: tuple[str, str, str]) -> list[dict[str, str]]:
    return [ev("Hangup", snap(name, uid, "6", linkedid=linked), Cause="16")
            for name, uid, linked in chans]  # fmt: skip


# -- AttendedTransfer -----------------------------------------------------------------------
def test_an_attended_transfer_whose_consultation_was_never_seen_names_the_target_device() -> None:
    """cti attached while 101 already talked to 102 on its second line: the event alone."""
    target = snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    out = track([*answered(), attended(**target)])
    assert transfers(out) == [(LINKED, "101", "102")]
    assert [e.kind for e in out].count("ended") == 0


def test_an_attended_transfer_to_a_trunk_names_the_number_dialled_not_its_caller_id() -> None:
    """101 consulted 5550123 over the trunk: the target has no extension; the second leg's
    Exten is the number 101 dialled, the trunk channel's own caller ID is not."""
    target = snap("PJSIP/trunk-00000007", "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    target["TransferTargetCallerIDNum"] = "+74950001122"
    out = track([*answered(), attended(SecondTransfererExten="5550123", **target)])
    assert transfers(out) == [(LINKED, "101", "5550123")]


def test_an_attended_transfer_to_a_trunk_without_the_second_exten_names_its_number() -> None:
    target = snap("PJSIP/trunk-00000007", "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    target["TransferTargetCallerIDNum"] = "+74950001122"
    event = attended(**target)
    del event["SecondTransfererExten"]
    out = track([*answered(), event])
    assert transfers(out) == [(LINKED, "101", "+74950001122")]


def test_an_attended_transfer_named_by_nothing_goes_nowhere_named() -> None:
    event = attended()
    del event["SecondTransfererExten"]
    out = track([*answered(), event])
    assert transfers(out) == [(LINKED, "101", "")]


def test_a_blonde_transfer_to_a_ring_group_names_the_group_not_one_phone() -> None:
    """The consultation rings 102 and 103 (group 600): no single phone is the target."""
    out = track([
        *consultation(),
        ev("DialBegin", snap(OP101_B, CONSULT, "6", linkedid=CONSULT),
           snap(OP103, "1796155127.2", prefix="Dest", linkedid=CONSULT)),
        ev("Newstate", snap(OP103, "1796155127.2", "5", linkedid=CONSULT)),
        attended(SecondTransfererExten="600"),
    ])  # fmt: skip
    assert transfers(out) == [(LINKED, "101", "600")]
    ringing_in_call = [
        getattr(e, "extension", "") for e in out if e.kind == "ringing" and e.call_id == LINKED
    ]
    assert sorted(ringing_in_call[-2:]) == ["102", "103"]  # both phones now ring in the call


def test_an_attended_transfer_moves_the_target_and_ends_a_consultation_left_empty() -> None:
    """101's second line (the consultation's caller) was never seen; 102 was, talking. The
    transfer takes 102 into the caller's call and nothing is left of the consultation."""
    out = track([
        *answered(),
        ev("BridgeEnter", snap(OP102, "1796155127.1", "6", linkedid=CONSULT)),
        attended(**snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)),
        *hangups((OP102, "1796155127.1", CONSULT), (OP101, "1796155126.1", LINKED),
                 (TRUNK, LINKED, LINKED)),
    ])  # fmt: skip
    assert transfers(out) == [(LINKED, "101", "102")]
    assert seen(out) == [
        ("ringing", "101"), ("answered", "101"),  # the caller's call
        ("ringing", "102"), ("answered", "102"),  # the consultation
        ("transferred", ""),
        ("ringing", "102"), ("answered", "102"),  # 102 now talks with the caller
        ("ended", "completed"),  # the consultation, at the transfer
        ("ended", "completed"),
    ]  # fmt: skip
    assert [e.call_id for e in out if e.kind == "ended"] == [CONSULT, LINKED]
    assert ends(out)[LINKED].answered_by == ("101", "102")


def test_the_consultation_stays_while_the_second_transferer_is_in_it() -> None:
    target = snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    out = track([
        *consultation(),
        ev("Newstate", snap(OP102, "1796155127.1", "6", linkedid=CONSULT)),
        attended(**target),
    ])  # fmt: skip
    assert [e.kind for e in out].count("ended") == 0
    out2 = track([
        *consultation(),
        ev("Newstate", snap(OP102, "1796155127.1", "6", linkedid=CONSULT)),
        attended(**target),
        *hangups((OP101_B, CONSULT, CONSULT)),
    ])  # fmt: skip
    assert [e.call_id for e in out2 if e.kind == "ended"] == [CONSULT]
    assert ends(out2)[CONSULT].answered_by == ("102",)


def test_a_consultation_in_the_same_call_is_one_call_transferred() -> None:
    """The `atxfer` feature code: 101's consultation leg shares the call's Linkedid."""
    second = snap(OP101_B, "1796155126.3", "6", "SecondTransferer")
    out = track([
        *answered(),
        ev("Newchannel", snap(OP101_B, "1796155126.3", "4")),
        ev("DialBegin", snap(OP101_B, "1796155126.3", "6"),
           snap(OP102, "1796155126.4", prefix="Dest")),
        ev("Newstate", snap(OP102, "1796155126.4", "6")),
        ev("AttendedTransfer", snap(OP101, "1796155126.1", "6", "OrigTransferer"), second,
           snap(TRUNK, LINKED, "6", "Transferee"),
           snap(OP102, "1796155126.4", "6", "TransferTarget"), Result="Success",
           DestType="Bridge"),
    ])  # fmt: skip
    assert transfers(out) == [(LINKED, "101", "102")]
    assert seen(out)[-1] == ("transferred", "")  # nothing moved: 102 already in the call


def test_an_attended_transfer_without_a_single_transferee_keeps_the_transferers_call() -> None:
    """Asterisk leaves out `Transferee*` when the transferer's bridge held more than one other
    party (a conference): the call is the original transferer's."""
    event = attended(SecondTransfererExten="5550123")
    for key in [k for k in event if k.startswith("Transferee")]:
        del event[key]
    out = track([*answered(), event])
    assert transfers(out) == [(LINKED, "101", "5550123")]
    unseen = track([event])  # and neither party known: nothing to tell
    assert unseen == []


def test_an_attended_transfer_seen_first_attaches_the_transferred_call() -> None:
    target = snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    out = track([attended(**target)])
    assert transfers(out) == [(LINKED, "101", "102")]
    assert (out[0].caller, out[0].caller_name, out[0].uniqueid) == (
        "+79165550101", "Иван Петров", LINKED,
    )  # fmt: skip


def test_a_transfer_without_a_result_header_is_taken_as_done() -> None:
    event = attended(SecondTransfererExten="5550123")
    del event["Result"]
    assert transfers(track([*answered(), event])) == [(LINKED, "101", "5550123")]
    blind = ev(
        "BlindTransfer", snap(TRUNK, LINKED, "6", "Transferee"),
        snap(OP101, "1796155126.1", "6", "Transferer"), Extension="102",
    )  # fmt: skip
    assert transfers(track([*answered(), blind])) == [(LINKED, "101", "102")]


# -- BlindTransfer ------------------------------------------------------------------------------
def blind(**kw: str) -> dict[str, str]:
    return ev(
        "BlindTransfer", snap(TRUNK, LINKED, "6", "Transferee"),
        snap(OP101, "1796155126.1", "6", "Transferer"), Result="Success", Extension="102",
        Context="from-internal", IsExternal="No", **kw,
    )  # fmt: skip


def test_a_blind_transfer_without_a_transferee_is_the_transferers_call() -> None:
    event = blind()
    for key in [k for k in event if k.startswith("Transferee")]:
        del event[key]
    assert transfers(track([*answered(), event])) == [(LINKED, "101", "102")]
    assert track([event]) == []  # neither party known


def test_a_blind_transfer_by_an_unseen_operator_is_named_by_its_device() -> None:
    event = blind()
    event["TransfererUniqueid"] = "1796155126.9"
    event["TransfererCallerIDNum"] = "+74950000000"
    assert transfers(track([*answered(), event])) == [(LINKED, "101", "102")]


def test_a_blind_transfer_by_a_seen_operator_is_named_by_its_extension() -> None:
    """The transferer's device name may have changed (a Local optimised away): the channel's
    known extension wins over what its name in the event says."""
    event = blind()
    event["TransfererChannel"] = "Local/101@from-internal-00000001;1"
    event["TransfererCallerIDNum"] = "+74950000000"
    assert transfers(track([*answered(), event])) == [(LINKED, "101", "102")]


def test_a_blind_transfer_without_an_extension_names_no_destination() -> None:
    event = blind()
    del event["Extension"]
    assert transfers(track([*answered(), event])) == [(LINKED, "101", "")]


# -- Transfer (1.x) -----------------------------------------------------------------------------
def m(event: str, **headers: str) -> Message:
    return Message.from_headers({"Event": event, **headers})


def legacy_call() -> list[Message]:
    """1.8: the trunk (8.1) answered by 101 (8.2); 102 (8.3) idle."""
    return [
        m("Newchannel", Channel="SIP/trunk-00000001", ChannelState="4", CallerIDNum="0612345678",
          CallerIDName="Иван Петров", Exten="5551000", Uniqueid="8.1"),
        m("Newchannel", Channel="SIP/101-00000002", ChannelState="0", Uniqueid="8.2"),
        m("Dial", SubEvent="Begin", Channel="SIP/trunk-00000001", Destination="SIP/101-00000002",
          UniqueID="8.1", DestUniqueID="8.2", Dialstring="101"),
        m("Newstate", Channel="SIP/101-00000002", ChannelState="6", Uniqueid="8.2"),
        m("Newchannel", Channel="SIP/102-00000003", ChannelState="0", Uniqueid="8.3"),
    ]  # fmt: skip


def feed(events: list[Message]) -> list[CallEvent]:
    tracker = CallTracker()
    return [e for event in events for e in tracker.feed(event)]


def test_a_1_x_transfer_by_the_trunk_names_its_number() -> None:
    """The caller's side transfers (a trunk sending REFER): no extension, its caller ID."""
    out = feed([
        *legacy_call(),
        m("Transfer", TransferMethod="SIP", TransferType="Blind", Channel="SIP/trunk-00000001",
          Uniqueid="8.1", CallerIDNum="0612345678", TargetChannel="SIP/101-00000002",
          TargetUniqueid="8.2", TransferExten="5550199"),
    ])  # fmt: skip
    assert [(t.call_id, t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [
        ("8.1", "0612345678", "5550199")
    ]


def test_a_1_x_transfer_whose_target_is_unknown_is_the_transferers_call() -> None:
    out = feed([
        *legacy_call(),
        m("Transfer", TransferMethod="SIP", TransferType="Blind", Channel="SIP/101-00000002",
          Uniqueid="8.2", TargetChannel="SIP/trunk-00000009", TargetUniqueid="9.9",
          TransferExten="5550199"),
    ])  # fmt: skip
    assert [(t.call_id, t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [
        ("8.1", "101", "5550199")
    ]


def test_a_1_x_attended_transfer_to_a_trunk_names_the_exten() -> None:
    out = feed([
        *legacy_call(),
        m("Newchannel", Channel="SIP/trunk-00000004", ChannelState="6", Uniqueid="8.4"),
        m("Transfer", TransferMethod="SIP", TransferType="Attended", Channel="SIP/101-00000002",
          Uniqueid="8.2", TargetChannel="SIP/trunk-00000004", TargetUniqueid="8.4",
          TransferExten="5550199"),
    ])  # fmt: skip
    assert [(t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [
        ("101", "5550199")
    ]


def test_a_1_x_transfer_without_an_exten_names_no_destination() -> None:
    out = feed([
        *legacy_call(),
        m("Transfer", TransferType="Blind", Channel="SIP/101-00000002", Uniqueid="8.2",
          TargetChannel="SIP/trunk-00000001", TargetUniqueid="8.1"),
    ])  # fmt: skip
    assert [(t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [("101", "")]


# -- Pickup ---------------------------------------------------------------------------------------
def ringing_call() -> list[dict[str, str]]:
    """The trunk's call to 101, ringing."""
    return [
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("DialBegin", snap(TRUNK, LINKED, "4"), snap(OP101, "1796155126.1", prefix="Dest")),
        ev("Newstate", snap(OP101, "1796155126.1", "5")),
    ]


def pickup(picker: str, uid: str, linked: str, **kw: str) -> dict[str, str]:
    return ev("Pickup", snap(picker, uid, "6", linkedid=linked),
              snap(OP101, "1796155126.1", "5", "Target"), **kw)  # fmt: skip


def test_a_pickup_by_a_trunk_answers_the_call_without_an_operator() -> None:
    """A remote PBX's channel dials the pickup code: the caller is answered, by no extension."""
    remote = "PJSIP/branch-00000010"
    out = track([
        *ringing_call(),
        ev("Newchannel", snap(remote, "1796155128.0", "6", linkedid="1796155128.0")),
        pickup(remote, "1796155128.0", "1796155128.0"),
        *hangups((OP101, "1796155126.1", LINKED), (TRUNK, LINKED, LINKED),
                 (remote, "1796155128.0", LINKED)),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ended", "completed")]
    end = ends(out)[LINKED]
    assert (end.answered, end.answered_by, end.rang) == (True, (), ("101",))


def test_a_pickup_by_a_local_channel_is_not_an_answer_by_itself() -> None:
    """An originated `Local/**101@from-internal`: its `;2` half picks up, its `;1` half stays
    in a call of its own (it goes on to dial the operator's phone)."""
    half1, half2 = "Local/**101@from-internal-00000001;1", "Local/**101@from-internal-00000001;2"
    own = "1796155128.0"
    tracker = CallTracker()
    out = track([
        *ringing_call(),
        ev("Newchannel", snap(half1, own, "6", linkedid=own)),
        ev("Newchannel", snap(half2, "1796155128.1", "6", linkedid=own)),
        pickup(half2, "1796155128.1", own),
        *hangups((OP101, "1796155126.1", LINKED), (TRUNK, LINKED, LINKED),
                 (half2, "1796155128.1", LINKED), (half1, own, own)),
    ], tracker)  # fmt: skip
    assert [(e.call_id, e.kind) for e in out] == [
        (LINKED, "ringing"), (LINKED, "ended"), (own, "ended")
    ]  # fmt: skip
    assert ends(out)[LINKED].answered is False


def test_a_picker_not_the_caller_of_its_own_call_leaves_it_behind() -> None:
    """103 was itself called (an intercom call from 104), then dials the pickup code: it moves
    to the ringing call answered; 104's call goes on without it."""
    intercom = "1796155128.0"
    op104 = "PJSIP/104-00000011"
    out = track([
        *ringing_call(),
        ev("Newchannel", snap(op104, intercom, "6", linkedid=intercom)),
        ev("DialBegin", snap(op104, intercom, "6", linkedid=intercom),
           snap(OP103, "1796155128.1", prefix="Dest", linkedid=intercom)),
        ev("Newstate", snap(OP103, "1796155128.1", "6", linkedid=intercom)),
        pickup(OP103, "1796155128.1", intercom),
        *hangups((OP101, "1796155126.1", LINKED), (TRUNK, LINKED, LINKED),
                 (OP103, "1796155128.1", LINKED), (op104, intercom, intercom)),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, getattr(e, "extension", "")) for e in out] == [
        (LINKED, "ringing", "101"),
        (intercom, "ringing", "103"), (intercom, "answered", "103"),
        (LINKED, "ringing", "103"), (LINKED, "answered", "103"),
        (LINKED, "ended", ""), (intercom, "ended", ""),
    ]  # fmt: skip
    assert ends(out)[LINKED].answered_by == ("103",)


def test_a_pickers_own_call_left_empty_ends() -> None:
    """A trunk channel dialled by nobody known (its caller hung up unseen) picks up."""
    own = "1796155128.0"
    remote = "PJSIP/branch-00000010"
    out = track([
        *ringing_call(),
        ev("Newchannel", snap(remote, "1796155128.1", "6", linkedid=own)),
        pickup(remote, "1796155128.1", own),
        *hangups((OP101, "1796155126.1", LINKED), (TRUNK, LINKED, LINKED),
                 (remote, "1796155128.1", LINKED)),
    ])  # fmt: skip
    assert [(e.call_id, e.kind) for e in out] == [
        (LINKED, "ringing"), (own, "ended"), (LINKED, "ended")
    ]  # fmt: skip
    assert ends(out)[LINKED].answered is True


def test_a_pickup_of_an_ended_call_or_with_no_call_named_starts_nothing() -> None:
    picker = "PJSIP/103-00000009"
    mine = snap(picker, "1796155126.9", "6", linkedid="1796155126.9")
    ended_first = track([
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("Hangup", snap(TRUNK, LINKED, "4"), Cause="16"),
        ev("Newchannel", mine),
        ev("Pickup", mine, snap(OP101, "1796155126.1", "5", "Target")),
    ])  # fmt: skip
    assert seen(ended_first) == [("ended", "cancelled")]
    no_linkedid = snap(OP101, "1796155126.1", "5", "Target")
    del no_linkedid["TargetLinkedid"]
    assert track([ev("Newchannel", mine), ev("Pickup", mine, no_linkedid)]) == []


def test_a_pickup_of_a_call_known_only_by_its_linkedid_joins_it() -> None:
    """The ringing phone was never seen, its caller was: the Target's Linkedid names the call."""
    picker = "PJSIP/103-00000009"
    mine = snap(picker, "1796155126.9", "6", linkedid="1796155126.9")
    out = track([
        ev("Newchannel", snap(TRUNK, LINKED, "4")),
        ev("Newchannel", mine),
        ev("Pickup", mine, snap(OP101, "1796155126.1", "5", "Target")),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, e.caller) for e in out] == [
        (LINKED, "ringing", "+79165550101"), (LINKED, "answered", "+79165550101")
    ]  # fmt: skip


def test_a_pickup_seen_first_with_an_unknown_connected_line_has_no_caller() -> None:
    picker = "PJSIP/103-00000009"
    mine = snap(picker, "1796155126.9", "6", linkedid="1796155126.9")
    target = snap(OP101, "1796155126.1", "5", "Target")
    target["TargetConnectedLineNum"] = "<unknown>"
    out = track([ev("Pickup", mine, target)])
    assert [(e.kind, e.caller, e.caller_name) for e in out] == [
        ("ringing", "", ""), ("answered", "", "")
    ]  # fmt: skip
    target["TargetConnectedLineNum"] = "+79165550101"
    target["TargetConnectedLineName"] = "<unknown>"
    out = track([ev("Pickup", mine, target)])
    assert {(e.caller, e.caller_name) for e in out} == {("+79165550101", "")}
    del target["TargetConnectedLineName"]
    out = track([ev("Pickup", mine, target)])
    assert {(e.caller, e.caller_name) for e in out} == {("+79165550101", "")}
    assert {e.time for e in out} == {"1796155130.000000"}


def test_a_picker_already_talking_is_not_answered_twice() -> None:
    """The picker's leg was answered and counted before the Pickup came (a late Pickup)."""
    picker = "PJSIP/103-00000009"
    mine = snap(picker, "1796155126.9", "6", linkedid="1796155126.9")
    out = track([
        *ringing_call(),
        ev("Newchannel", mine),
        ev("DialEnd", snap(TRUNK, LINKED, "6"), snap(picker, "1796155126.9", "6", "Dest",
           linkedid="1796155126.9"), DialStatus="ANSWER"),
        ev("Pickup", mine, snap(OP101, "1796155126.1", "5", "Target")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ringing", "103"), ("answered", "103")]


# -- more parties never seen, or seen under another name -----------------------------------------
def test_a_failed_attended_transfer_of_known_parties_is_not_reported() -> None:
    target = snap(OP102, "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    event = {**attended(**target), "Result": "Fail"}
    out = track([*consultation(), event])
    assert transfers(out) == [] and "ended" not in [e.kind for e in out]


def test_attended_transfer_parties_known_under_another_name_keep_their_extensions() -> None:
    """The event names the parties by channels that are not their devices (Local halves):
    the extensions the channels were known by are the ones told."""
    target = snap("Local/102@from-internal-00000002;1", "1796155127.1", "6", "TransferTarget",
                  linkedid=CONSULT)  # fmt: skip
    event = attended(**target)
    event["OrigTransfererChannel"] = "Local/101@from-internal-00000001;1"
    event["OrigTransfererCallerIDNum"] = "+74950000000"
    out = track([
        *consultation(),
        ev("Newstate", snap(OP102, "1796155127.1", "6", linkedid=CONSULT)),
        event,
    ])  # fmt: skip
    assert transfers(out) == [(LINKED, "101", "102")]


def test_a_transfer_of_an_outbound_calls_customer_seen_first_is_the_operators_call() -> None:
    """101 called a customer out (101's channel is the call, the trunk the callee) and
    transfers the customer to 102; cti saw nothing before."""
    outbound = "1796155150.0"
    event = ev(
        "BlindTransfer",
        snap("PJSIP/trunk-00000008", "1796155150.1", "6", "Transferee", linkedid=outbound),
        snap("PJSIP/101-00000007", outbound, "6", "Transferer", linkedid=outbound),
        Result="Success", Extension="102",
    )  # fmt: skip
    out = track([event])
    assert [(e.call_id, e.from_extension, e.to) for e in out if isinstance(e, Transferred)] == [
        (outbound, "101", "102")
    ]


def test_a_blind_transfer_by_a_trunk_without_a_caller_id_names_nobody() -> None:
    event = blind()
    event["TransfererChannel"] = "PJSIP/trunk-00000005"
    event["TransfererUniqueid"] = "1796155126.5"
    del event["TransfererCallerIDNum"]
    assert transfers(track([*answered(), event])) == [(LINKED, "", "102")]


def test_a_1_x_transfer_by_a_known_operator_keeps_its_extension() -> None:
    out = feed([
        *legacy_call(),
        m("Transfer", TransferType="Blind", Channel="Local/101@from-internal-0001;2",
          Uniqueid="8.2", CallerIDNum="0612345678", TargetChannel="SIP/trunk-00000001",
          TargetUniqueid="8.1", TransferExten="5550199"),
    ])  # fmt: skip
    assert [(t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [
        ("101", "5550199")
    ]


def test_a_1_x_transfer_by_a_channel_named_by_nothing_names_nobody() -> None:
    out = feed([
        *legacy_call(),
        m("Transfer", TransferType="Blind", Uniqueid="9.9", TargetChannel="SIP/trunk-00000001",
          TargetUniqueid="8.1", TransferExten="5550199"),
    ])  # fmt: skip
    assert [(t.from_extension, t.to) for t in out if isinstance(t, Transferred)] == [
        ("", "5550199")
    ]


# -- more pickups -------------------------------------------------------------------------------
def test_a_picker_first_seen_in_the_pickup_and_not_its_own_caller() -> None:
    intercom = "1796155128.0"
    out = track([*ringing_call(), pickup(OP103, "1796155128.1", intercom)])
    assert [(e.call_id, e.kind, getattr(e, "extension", "")) for e in out] == [
        (LINKED, "ringing", "101"),
        (intercom, "ringing", "103"), (intercom, "answered", "103"),
        (LINKED, "ringing", "103"), (LINKED, "answered", "103"),
        (intercom, "ended", ""),  # 103's own call, left empty
    ]  # fmt: skip


def test_a_pickup_of_a_phone_ringing_after_a_blonde_transfer_answers_the_callers_call() -> None:
    """102 still rings (Linkedid of the consultation) when 103 picks it up: the caller's call,
    where the blonde transfer took 102, is answered by 103."""
    picker = snap(OP103, "1796155128.0", "6", linkedid="1796155128.0")
    out = track([
        *consultation(),
        attended(),
        ev("Newchannel", picker),
        ev("Pickup", picker, snap(OP102, "1796155127.1", "5", "Target", linkedid=CONSULT)),
    ])  # fmt: skip
    assert [(e.call_id, e.kind, getattr(e, "extension", "")) for e in out][-2:] == [
        (LINKED, "ringing", "103"), (LINKED, "answered", "103"),
    ]  # fmt: skip


def test_a_call_started_by_a_pickup_lasts_from_the_pickup() -> None:
    picker = "PJSIP/103-00000009"
    mine = snap(picker, "1796155126.9", "6", linkedid="1796155126.9")
    target = snap(OP101, "1796155126.1", "5", "Target")
    del target["TargetConnectedLineNum"]
    out = track([
        ev("Pickup", mine, target, ts="1796155130.000000"),
        ev("Hangup", snap(picker, "1796155126.9", "6"), Cause="16", ts="1796155175.000000"),
    ])  # fmt: skip
    end = out[-1]
    assert isinstance(end, Ended) and (end.duration, end.caller, end.reason) == (
        45, "", "completed",
    )  # fmt: skip


def test_a_picker_whose_answer_was_filtered_out_is_answered_by_the_pickup() -> None:
    """`eventfilter` without Newstate: the picker was last seen dialling (Ring)."""
    picker = "PJSIP/103-00000009"
    out = track([
        *ringing_call(),
        ev("Newchannel", snap(picker, "1796155126.9", "4", linkedid="1796155126.9")),
        ev("Pickup", snap(picker, "1796155126.9", "6", linkedid="1796155126.9"),
           snap(OP101, "1796155126.1", "5", "Target")),
    ])  # fmt: skip
    assert seen(out) == [("ringing", "101"), ("ringing", "103"), ("answered", "103")]


def test_an_operator_transferred_by_the_trunk_seen_first_rings_and_answers() -> None:
    """A remote PBX (the caller's side) sends REFER: Asterisk's BlindTransfer names the trunk
    as transferer and 101 as the transferee; cti attached just before."""
    event = ev(
        "BlindTransfer", snap(OP101, "1796155126.1", "6", "Transferee"),
        snap(TRUNK, LINKED, "6", "Transferer"), Result="Success", Extension="5550199",
    )  # fmt: skip
    out = track([event])
    assert [(e.kind, getattr(e, "extension", "")) for e in out] == [
        ("ringing", "101"), ("answered", "101"), ("transferred", ""),
    ]  # fmt: skip
    assert transfers(out) == [(LINKED, "+79165550101", "5550199")]


def test_an_operator_transferred_attended_by_the_trunk_seen_first_rings_and_answers() -> None:
    event = ev(
        "AttendedTransfer", snap(TRUNK, LINKED, "6", "OrigTransferer"),
        snap("PJSIP/trunk-00000003", CONSULT, "6", "SecondTransferer", linkedid=CONSULT),
        snap(OP101, "1796155126.1", "6", "Transferee"), Result="Success", DestType="Bridge",
    )  # fmt: skip
    event["SecondTransfererExten"] = "5550199"
    out = track([event])
    assert [(e.kind, getattr(e, "extension", "")) for e in out] == [
        ("ringing", "101"), ("answered", "101"), ("transferred", ""),
    ]  # fmt: skip
    assert transfers(out) == [(LINKED, "+79165550101", "5550199")]


def test_a_transferee_without_a_channel_name_is_still_the_call_transferred() -> None:
    event = blind()
    del event["TransfereeChannel"]
    out = track([event])
    assert transfers(out) == [(LINKED, "101", "102")]
    assert (out[0].caller, out[0].caller_name) == ("+79165550101", "Иван Петров")


def test_an_attended_transfer_dialled_inside_a_freepbx_macro_is_not_named_s() -> None:
    """FreePBX runs the consultation's Dial in macro-dial-one: the second leg's Exten is "s",
    a dialplan step, not where the call went; the target's own number is the better name."""
    target = snap("PJSIP/trunk-00000007", "1796155127.1", "6", "TransferTarget", linkedid=CONSULT)
    target["TransferTargetCallerIDNum"] = "+74950001122"
    out = track([*answered(), attended(SecondTransfererExten="s", **target)])
    assert transfers(out) == [(LINKED, "101", "+74950001122")]
