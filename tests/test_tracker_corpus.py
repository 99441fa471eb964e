"""The tracker against real traffic nobody here wrote: the cacofonisk corpus (Asterisk 13).

Expected outcomes below are the upstream project's own test expectations (VoIPGRID/cacofonisk
`tests/test_simple.py`, `tests/test_queue.py`, `tests/test_xfer_blind.py`,
`tests/test_xfer_misc.py`), translated into our terms: upstream names channels
(`SIP/150010002-0000000e`); our extension is the device name (`150010002`); the upstream
"on_up" targets (and transfer targets that got connected) are our `answered_by`. Known
difference: upstream reports queue_a_cancel's hangup as "completed" (with a FIXME); the caller
left the queue before anyone answered, which is `abandoned` here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from corpus import CORPUS, FILES, needs_corpus

from cti_cli.calls import CallEvent, CallTracker, Ended, Ringing, Transferred

pytestmark = needs_corpus

# file -> [(caller channel name, answered, answered_by, reason or None = not compared)]
UPSTREAM: dict[str, list[tuple[str, bool, list[str], str | None]]] = {
    "simple/ab_success_a_hangup": [("SIP/150010001-00000004", True, ["150010002"], "completed")],
    "simple/ab_success_b_hangup": [("SIP/150010001-00000013", True, ["150010002"], "completed")],
    "simple/ab_success_twoclients": [
        # 260010001 dials out through the trunk (answered by a non-operator party) ...
        ("SIP/260010001-00000015", True, [], "completed"),
        # ... and the same call comes back in through the trunk to account 150010001.
        ("SIP/voipgrid-siproute-docker-00000017", True, ["150010001"], "completed"),
    ],
    "simple/ab_reject": [("SIP/150010001-00000008", False, [], "busy")],
    "simple/ab_dnd": [("SIP/150010001-00000006", False, [], "busy")],
    "simple/ab_a_cancel": [("SIP/150010001-00000002", False, [], "cancelled")],
    "simple/ab_callgroup": [("SIP/150010001-0000000d", True, ["150010002"], "completed")],
    "simple/ab_callgroup_no_answer": [("SIP/150010001-00000010", False, [], "no-answer")],
    "simple/ab_success_o3": [("SIP/100060001-0000000e", True, ["100060002"], "completed")],
    # upstream: a single on_hangup, no on_up (reason wording differs: nobody was dialled)
    "simple/a_created_no_answer": [("SIP/voipgrid-siproute-docker-00000009", False, [], None)],
    "queue/queue_simple": [
        ("SIP/voipgrid-siproute-docker-00000025", True, ["150010002"], "completed")
    ],
    "queue/queue_group": [
        ("SIP/voipgrid-siproute-docker-0000001b", True, ["150010002"], "completed")
    ],
    "queue/queue_a_cancel": [("SIP/voipgrid-siproute-docker-00000019", False, [], "abandoned")],
    "queue/queue_attn_xfer": [
        ("SIP/voipgrid-siproute-docker-00000087", True, ["150010001", "150010002"], "completed"),
        # the consultation call 150010001 -> 150010002 (upstream: on_b_dial/on_up of it)
        ("SIP/150010001-00000089", True, ["150010002"], "completed"),
    ],
    "queue/queue_blind_xfer": [
        ("SIP/voipgrid-siproute-docker-0000008d", True, ["150010001", "150010002"], "completed")
    ],
    "xfer_blind/xfer_blind_abbcac": [
        ("SIP/150010001-00000003", True, ["150010002", "150010003"], "completed")
    ],
    "xfer_blind/xfer_blind_abacbc": [
        ("SIP/150010001-00000006", True, ["150010002", "150010003"], "completed")
    ],
    "xfer_blind/xfer_blind_a_no_answer": [
        ("SIP/150010001-00000012", True, ["150010002"], "completed")
    ],
    "xfer_blind/xfer_blind_b_no_answer": [
        ("SIP/150010001-00000015", True, ["150010002"], "completed")
    ],
    "xfer_blind/xfer_blind_reject": [("SIP/150010001-00000018", True, ["150010002"], None)],
    "xfer_blind/xfer_blind_group": [
        ("SIP/voipgrid-siproute-docker-00000017", True, ["150010001", "150010003"], "completed")
    ],
    "xfer_blind/xfer_blind_group_no_answer": [
        ("SIP/voipgrid-siproute-docker-00000023", True, ["150010001"], "completed")
    ],
    # 201 calls 202 (150010002 rings); 150010003 picks it up (`*8` / SIP pickup) and talks.
    # The picker's own dial-in leg is folded into this call: no second call is reported.
    "xfer_misc/star_pickup": [("SIP/150010001-00000022", True, ["150010003"], "completed")],
    "xfer_misc/sip_pickup": [("SIP/150010001-0000001f", True, ["150010003"], "completed")],
}


def load(relative: str) -> list[Mapping[str, str]]:
    events: list[Mapping[str, str]] = json.loads((CORPUS / f"{relative}.json").read_text("utf-8"))
    return events


def run(events: list[Mapping[str, str]]) -> tuple[list[CallEvent], CallTracker]:
    tracker = CallTracker()
    out: list[CallEvent] = []
    for event in events:
        out.extend(tracker.feed(event))
    return out, tracker


def uniqueid_of(events: list[Mapping[str, str]], channel: str) -> str:
    return next(e["Uniqueid"] for e in events if e.get("Channel") == channel and "Uniqueid" in e)


def test_corpus_is_complete() -> None:
    assert len(FILES) == 51
    assert {f"{p.parent.name}/{p.stem}" for p in FILES} >= set(UPSTREAM)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_file_ends_every_call_and_keeps_no_state(path: Path) -> None:
    events = json.loads(path.read_text("utf-8"))
    out, tracker = run(events)
    ended = [e for e in out if isinstance(e, Ended)]
    assert ended, "every recording holds at least one call"
    assert len({e.call_id for e in ended}) == len(ended), "a call ends once"
    assert tracker.active_calls() == []
    assert tracker._chans == {} and tracker._calls == {}  # bounded memory: nothing left behind
    for end in ended:
        assert set(end.answered_by) <= set(end.rang)
        assert end.answered or not end.answered_by
        assert all(not ext.startswith("Local") for ext in end.rang)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_attaching_mid_call_never_raises(path: Path) -> None:
    """Drop the first k events, for every k: the tracker reports what it can, never raises."""
    events = json.loads(path.read_text("utf-8"))
    for k in range(len(events) + 1):
        out, _ = run(events[k:])
        ids = [e.call_id for e in out if isinstance(e, Ended)]
        assert len(ids) == len(set(ids)), f"k={k}: a call ended twice"
        for event in out:
            json.loads(event.to_json())


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_outcomes_match_upstream_expectations(name: str) -> None:
    events = load(name)
    out, _ = run(events)
    ended = {e.uniqueid: e for e in out if isinstance(e, Ended)}
    for channel, answered, answered_by, reason in UPSTREAM[name]:
        end = ended[uniqueid_of(events, channel)]
        assert end.answered is answered, channel
        assert list(end.answered_by) == answered_by, channel
        if reason is not None:
            assert end.reason == reason, channel


def test_busy_member_never_rang_but_rejecting_member_did() -> None:
    dnd = [e for e in run(load("simple/ab_dnd"))[0] if isinstance(e, Ended)]
    assert dnd[0].rang == ()  # 486 at once: DialBegin + DialEnd BUSY, no Ringing
    rejected = [e for e in run(load("simple/ab_reject"))[0] if isinstance(e, Ended)]
    assert rejected[0].rang == ("150010002",)  # rang, then declined


def test_ring_group_rings_both_members_once_each() -> None:
    out, _ = run(load("simple/ab_callgroup"))
    assert [e.extension for e in out if isinstance(e, Ringing)] == ["150010002", "150010003"]


@pytest.mark.parametrize(
    ("name", "source", "target"),
    [
        ("xfer_blind/xfer_blind_abbcac", "150010002", "203"),
        ("xfer_blind/xfer_blind_abacbc", "150010001", "203"),
        ("xfer_blind/xfer_blind_group", "150010001", "401"),
        ("queue/queue_blind_xfer", "150010001", "202"),
        ("queue/queue_attn_xfer", "150010001", "150010002"),
    ],
)
def test_transfers_are_reported(name: str, source: str, target: str) -> None:
    out, _ = run(load(name))
    transfers = [(e.from_extension, e.to) for e in out if isinstance(e, Transferred)]
    assert transfers == [(source, target)]


def test_caller_identity_and_dialed_number_come_from_the_caller_channel() -> None:
    out, _ = run(load("queue/queue_a_cancel"))
    end = out[-1]
    assert isinstance(end, Ended)
    assert (end.caller, end.caller_name, end.dialed) == ("+31150010001", "", "+31150010004")
    assert end.queue == "670100-540100"
    assert end.call_id == end.uniqueid == "40a7a1f2a669-1585318545.326"


@pytest.mark.parametrize("name", ["xfer_misc/star_pickup", "xfer_misc/sip_pickup"])
def test_pickup_pops_up_on_the_picker_in_the_callers_call(name: str) -> None:
    """The phone that rang keeps its `ringing`; the picker gets `answered` in the caller's call."""
    events = load(name)
    out, _ = run(events)
    caller_uid = next(e["Uniqueid"] for e in events if e.get("Event") == "Newchannel")
    assert {e.call_id for e in out} == {caller_uid}, "one call: the picker's leg is not a call"
    kinds = [(e.kind, getattr(e, "extension", "")) for e in out]
    assert kinds == [
        ("ringing", "150010002"),
        ("ringing", "150010003"),
        ("answered", "150010003"),
        ("ended", ""),
    ]
    end = out[-1]
    assert isinstance(end, Ended)
    assert end.rang == ("150010002", "150010003") and end.caller == "201"
