"""AMI header names match ignoring case, and keep the spelling they were sent in.

Asterisk spells one header differently across versions and modules (`Uniqueid`/`UniqueID`,
`DestUniqueid`/`DestUniqueID`, `Linkedid`/`LinkedID`, 1.8's `CallerIDnum`): a stream in any
spelling must give the very call events of the canonical one, whether it arrives as raw AMI, as
a JSON recording or as a `CoreShowChannels` snapshot, while what is shown or recorded of a
message keeps its names byte for byte.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pytest
from corpus import FILES, needs_corpus
from fuzz_support import TRANSCRIPTS

from cti_cli.ami.codec import AMIDecoder
from cti_cli.ami.message import HeaderDict, Message
from cti_cli.calls import CallTracker
from cti_cli.calls.replay import replay
from cti_cli.cli.watch import event_json

_NAME = re.compile(rb"(?m)^([A-Za-z0-9-]+):")
# How older Asterisk modules spell what Asterisk 12+ spells `...Uniqueid` / `...Linkedid`.
_LEGACY = re.compile(r"(Uniqueid|UniqueID|Linkedid|LinkedID)$")
_LEGACY_SPELLING = {"Uniqueid": "UniqueID", "UniqueID": "Uniqueid", "Linkedid": "LinkedID"}


def legacy(name: str) -> str:
    return _LEGACY.sub(lambda m: _LEGACY_SPELLING.get(m.group(1), m.group(1)), name)


RESPELLINGS: dict[str, Callable[[str], str]] = {
    "legacy": legacy,
    "upper": str.upper,
    "lower": str.lower,
}


def respell_raw(data: bytes, spell: Callable[[str], str]) -> bytes:
    """`data` with every header name respelled (values, banner and blank lines untouched)."""
    return _NAME.sub(lambda m: spell(m.group(1).decode()).encode() + b":", data)


def to_raw(events: list[dict[str, str]]) -> bytes:
    return b"".join(
        "".join(f"{k}: {v}\r\n" for k, v in e.items()).encode() + b"\r\n" for e in events
    )


def replay_bytes(data: bytes) -> list[dict[str, object]]:
    return [e.to_dict() for e in replay(io.BytesIO(data))]


# -- lookups ------------------------------------------------------------------------------------
def test_any_spelling_of_a_name_finds_the_header() -> None:
    msg = Message(
        "Event: Dial\r\nUniqueID: 1.1\r\nDestUniqueID: 1.2\r\nCALLERIDNAME: Иван Петров".encode()
    )
    assert msg.get("Uniqueid") == msg["uniqueid"] == msg["UNIQUEID"] == "1.1"
    assert msg.get("DestUniqueid") == "1.2" and "destuniqueid" in msg
    assert msg.get("CallerIDName") == "Иван Петров"
    assert msg.get_all("calleridname") == ["Иван Петров"]
    assert Message(b"EVENT: Hangup\r\nuniqueid: 1.1").name == "Hangup"


def test_a_name_is_never_matched_inside_a_longer_one() -> None:
    msg = Message(b"Event: Dial\r\nDestUniqueID: 1.2\r\nLinkedidX: 9")
    assert msg.get("Uniqueid") is None and "uniqueid" not in msg
    assert msg.get("Linkedid") is None
    with pytest.raises(KeyError):
        msg["LINKEDID"]


def test_the_exact_spelling_wins_so_every_listed_name_reads_its_own_value() -> None:
    msg = Message(b"Event: X\r\nUniqueID: first\r\nUniqueid: second")
    assert msg["Uniqueid"] == "second" and msg["UniqueID"] == "first"
    assert msg["uniqueid"] == "first"  # no exact spelling: the first header of that name
    assert {name: msg[name] for name in msg} == dict(msg.headers)
    assert msg.get_all("UNIQUEID") == ["first", "second"]


def test_a_json_event_matches_names_as_a_raw_one_does() -> None:
    event = HeaderDict({"Event": "Dial", "UniqueID": "1.1", "CallerIDName": "Пётр"})
    assert event.get("Uniqueid") == event["uniqueid"] == "1.1" and "UNIQUEID" in event
    assert event.get("Linkedid") is None and event.get("Linkedid", "-") == "-"
    assert "Linkedid" not in event and 1 not in event
    with pytest.raises(KeyError):
        event["Linkedid"]
    assert event == {"Event": "Dial", "UniqueID": "1.1", "CallerIDName": "Пётр"}
    assert json.dumps(event, ensure_ascii=False) == (
        '{"Event": "Dial", "UniqueID": "1.1", "CallerIDName": "Пётр"}'
    )


# -- what is shown and recorded keeps the spelling ------------------------------------------------
def test_a_message_keeps_the_names_it_was_sent_with() -> None:
    sent = "Event: Dial\r\nUniqueID: 1.1\r\nLinkedID: 1.0\r\nCallerIDName: Иван Петров\r\n"
    (msg,) = AMIDecoder(expect_banner=False).feed(sent.encode() + b"\r\n")
    assert msg.raw == sent.encode()[:-2]
    assert [name for name, _ in msg.headers] == ["Event", "UniqueID", "LinkedID", "CallerIDName"]
    assert list(msg) == ["Event", "UniqueID", "LinkedID", "CallerIDName"]
    assert "UniqueID" in repr(msg)
    # what `cti watch --events --json` prints, and so what a recording holds
    assert json.loads(event_json(msg)) == {
        "Event": "Dial",
        "UniqueID": "1.1",
        "LinkedID": "1.0",
        "CallerIDName": "Иван Петров",
    }
    assert "Иван Петров" in event_json(msg)


# -- whole streams --------------------------------------------------------------------------------
@needs_corpus
@pytest.mark.parametrize("spelling", RESPELLINGS)
def test_corpus_in_other_spellings_is_tracked_exactly_like_the_canonical(spelling: str) -> None:
    spell = RESPELLINGS[spelling]
    for path in FILES:
        events = [
            {k: v for k, v in e.items() if k != "content"}
            for e in json.loads(path.read_text("utf-8"))
        ]
        canonical = replay_bytes(to_raw(events))
        assert canonical, path
        assert replay_bytes(respell_raw(to_raw(events), spell)) == canonical, path
        respelled_json = json.dumps([{spell(k): v for k, v in e.items()} for e in events])
        assert replay_bytes(respelled_json.encode()) == canonical, path


@pytest.mark.parametrize("spelling", RESPELLINGS)
def test_old_dialect_captures_in_other_spellings_are_tracked_alike(spelling: str) -> None:
    for path in TRANSCRIPTS:
        data = path.read_bytes()
        canonical = replay_bytes(data)
        assert canonical, path
        assert replay_bytes(respell_raw(data, RESPELLINGS[spelling])) == canonical, path


def test_raw_events_printed_as_json_lines_replay_like_the_capture() -> None:
    """`cti watch --events --json` of a 1.8 server (UniqueID, DestUniqueID), then `cti replay`."""
    for path in TRANSCRIPTS:
        data = path.read_bytes()
        lines = "\n".join(event_json(m) for m in AMIDecoder().feed(data) if m.is_event)
        assert replay_bytes(lines.encode()) == replay_bytes(data), path


def test_a_snapshot_in_other_spellings_attaches_the_call_alike() -> None:
    """CoreShowChannels after a reconnect, with the names as 1.8 spells some (`UniqueID`,
    `CallerIDnum`): the call in progress is attached, then ends lost, exactly alike."""
    caller = {
        "Event": "CoreShowChannel", "Channel": "PJSIP/trunk-0000001a", "ChannelState": "6",
        "CallerIDNum": "+79161234567", "CallerIDName": "Иван Петров", "Exten": "200",
        "Uniqueid": "1400000000.10", "Linkedid": "1400000000.10", "Application": "Queue",
        "ApplicationData": "support,t", "Duration": "00:00:12",
    }  # fmt: skip
    member = {
        "Event": "CoreShowChannel", "Channel": "PJSIP/101-0000001b", "ChannelState": "6",
        "CallerIDNum": "101", "ConnectedLineNum": "+79161234567", "Uniqueid": "1400000000.11",
        "Linkedid": "1400000000.10", "Duration": "00:00:04",
    }  # fmt: skip

    def one8(name: str) -> str:
        return {"Uniqueid": "UniqueID", "CallerIDNum": "CallerIDnum"}.get(name, legacy(name))

    def track(spell: Callable[[str], str]) -> list[dict[str, object]]:
        snapshot = AMIDecoder(expect_banner=False).feed(
            respell_raw(to_raw([caller, member]), spell)
        )
        tracker = CallTracker()
        out = tracker.reconcile(snapshot, time="1400000020.000000")
        out += tracker.reconcile([], time="1400000030.000000")
        return [e.to_dict() for e in out]

    canonical = track(str)
    assert [(e["event"], e.get("extension")) for e in canonical] == [
        ("ringing", "101"), ("answered", "101"), ("ended", None),
    ]  # fmt: skip
    end = canonical[-1]
    assert (end["caller"], end["caller_name"], end["queue"]) == (
        "+79161234567", "Иван Петров", "support",
    )  # fmt: skip
    assert (end["reason"], end["duration"]) == ("lost", 22)  # started 12 s before the snapshot
    for spell in (one8, *RESPELLINGS.values()):
        assert track(spell) == canonical, spell
