"""Per-call operator counting (`state.Call`): what the tracker's call events and snapshots show
as ringing and talking per extension. Pure units, no tracker."""

from __future__ import annotations

from cti_cli.calls.naming import ExtensionMatcher, local_pair_base
from cti_cli.calls.outcome import end_reason
from cti_cli.calls.state import Call, Chan


def _call() -> Call:
    return Call("1764100000.1", "1764100000.1", 7)


def _chan(call: Call, uid: str, ext: str | None, name: str = "PJSIP/101-00000001") -> Chan:
    chan = Chan(uid, name, call, ext, False)
    call.chans[uid] = chan
    return chan


def test_a_new_call_and_channel_start_empty() -> None:
    call = _call()
    assert (call.call_id, call.caller_uid, call.seq) == ("1764100000.1", "1764100000.1", 7)
    assert (call.caller, call.caller_name, call.dialed, call.dial_status) == ("", "", "", "")
    assert call.queue is None and call.start_ts is None and call.caller_cause is None
    assert call.answered is False and call.abandoned is False and call.emitted is False
    assert call.touched == 0
    assert (call.chans, call.rang, call.answered_by, call.aliases) == ({}, [], [], [])
    assert (call.ringing, call.talking) == ({}, {})
    assert end_reason(call) == "cancelled"
    chan = Chan("1764100000.2", "Local/101@from-queue-0001;1", call, "101", True)
    assert (chan.uid, chan.name, chan.call, chan.ext) == (
        "1764100000.2",
        "Local/101@from-queue-0001;1",
        call,
        "101",
    )
    assert chan.local is True and chan.state == ""
    assert chan.ring_ext is None and chan.talk_ext is None


def test_a_channel_ringing_twice_counts_once() -> None:
    call = _call()
    chan = _chan(call, "u2", "101")
    assert call.ring(chan, retell=False) == "101"
    assert call.ring(chan, retell=True) is None
    assert call.ringing == {"101": 1} and call.rang == ["101"]
    call.unring(chan)
    assert call.ringing == {} and chan.ring_ext is None
    call.unring(chan)  # nothing left to release
    assert call.ringing == {}


def test_two_channels_of_one_extension_ring_as_one_operator() -> None:
    call = _call()
    local = _chan(call, "u2", "101", "Local/101@from-queue-0001;1")
    device = _chan(call, "u3", "101")
    assert call.ring(local, retell=False) == "101"
    assert call.ring(device, retell=False) is None
    assert call.ringing == {"101": 2}
    call.unring(local)
    assert call.ringing == {"101": 1}
    call.unring(device)
    assert call.ringing == {}


def test_a_channel_already_talking_does_not_ring() -> None:
    call = _call()
    chan = _chan(call, "u2", "101")
    assert call.answer(chan, retell=False) == "101"
    assert call.ring(chan, retell=True) is None
    assert call.ringing == {} and call.rang == []


def test_a_channel_that_is_not_an_operator_neither_rings_nor_answers() -> None:
    call = _call()
    caller = _chan(call, "1764100000.1", None, "PJSIP/trunk-00000001")
    assert call.ring(caller, retell=True) is None
    assert call.answer(caller, retell=True) is None
    assert (call.ringing, call.talking, call.rang, call.answered_by) == ({}, {}, [], [])
    assert call.answered is False
    assert caller.ring_ext is None and caller.talk_ext is None


def test_answering_moves_an_operator_from_ringing_to_talking() -> None:
    call = _call()
    chan = _chan(call, "u2", "101")
    call.ring(chan, retell=False)
    assert call.answer(chan, retell=False) == "101"
    assert (call.ringing, call.talking) == ({}, {"101": 1})
    assert chan.ring_ext is None and chan.talk_ext == "101"
    assert call.answered and call.answered_by == ["101"]
    assert call.answer(chan, retell=True) is None  # already talking
    assert call.talking == {"101": 1} and call.answered_by == ["101"]
    call.untalk(chan)
    assert call.talking == {} and chan.talk_ext is None
    assert call.answered and call.answered_by == ["101"]  # an answer is never taken back
    call.untalk(chan)
    assert call.talking == {}


def test_two_talking_channels_of_one_extension_release_one_by_one() -> None:
    call = _call()
    local = _chan(call, "u2", "101", "Local/101@from-queue-0001;1")
    device = _chan(call, "u3", "101")
    assert call.answer(local, retell=False) == "101"
    assert call.answer(device, retell=True) is None
    assert call.talking == {"101": 2}
    call.untalk(device)
    assert call.talking == {"101": 1}
    call.untalk(local)
    assert call.talking == {}


def test_an_operator_answering_again_is_news_only_when_retold() -> None:
    call = _call()
    chan = _chan(call, "u2", "101")
    call.answer(chan, retell=False)
    call.untalk(chan)
    assert call.answer(chan, retell=False) is None
    call.untalk(chan)
    assert call.answer(chan, retell=True) == "101"
    assert call.answered_by == ["101", "101"]


def test_ringing_again_in_a_later_round_is_news_only_when_retold() -> None:
    call = _call()
    chan = _chan(call, "u2", "101")
    call.ring(chan, retell=False)
    call.unring(chan)
    assert call.ring(chan, retell=False) is None
    assert call.ringing == {"101": 1}
    call.unring(chan)
    assert call.ring(chan, retell=True) == "101"
    assert call.rang == ["101"]


# -- channel names -> operators (`naming`) ------------------------------------------------
def test_a_site_pattern_names_its_extension_group() -> None:
    matcher = ExtensionMatcher(r"^(PJSIP|SIP)/(?P<ext>\d+)-[0-9a-f]+$")
    assert matcher.extension("PJSIP/101-0000002a") == "101"
    assert matcher.extension("SIP/2002-00000004") == "2002"
    assert matcher.extension("IAX2/101-1") is None
    plain = ExtensionMatcher(r"^(?P<tech>PJSIP)/(\d+)-")
    assert plain.extension("PJSIP/101-0000002a") == "PJSIP"  # no `ext` group: the first one


def test_only_local_channels_have_a_pair_base() -> None:
    assert local_pair_base("Local/101@from-queue-0001;1") == "Local/101@from-queue-0001"
    assert local_pair_base("Local/101@from-queue-0001;2") == "Local/101@from-queue-0001"
    assert local_pair_base("Local/101@from-queue-0001") is None
    assert local_pair_base("PJSIP/101-0000002a;1") is None
    assert local_pair_base("SIP/x;2") is None
