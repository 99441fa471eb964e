"""Pure rules of the call journal: numbers, --since, uniqueids, folding legs into one call."""

from __future__ import annotations

from datetime import datetime

import pytest

from cti_cli.calls.naming import ExtensionMatcher
from cti_cli.cdr.journal import parse_since, summarise
from cti_cli.cdr.numbers import like_pattern, same_number
from cti_cli.cdr.queries import CdrRow, valid_uniqueid
from cti_cli.cdr.recordings import Recording, RecStatus


@pytest.mark.parametrize(
    ("wanted", "stored", "same"),
    [
        ("8 916 123-45-67", "+79161234567", True),
        ("+7 (916) 123-45-67", "89161234567", True),
        ("9161234567", "79161234567", True),
        ("101", "101", True),
        ("101", "1101", False),
        ("8 916 123-45-67", "+79161234568", False),
        ("+1 212 555 0100", "0012125550100", True),
        ("12", "", False),
    ],
)
def test_same_number(wanted: str, stored: str, same: bool) -> None:
    assert same_number(wanted, stored) is same


def test_like_pattern_keeps_only_significant_digits() -> None:
    assert like_pattern("8 (916) 123-45-67") == "%9%1%6%1%2%3%4%5%6%7%"
    assert like_pattern("1' OR '1'='1") == "%1%1%1%"


def test_since() -> None:
    assert parse_since("90m").seconds == 5400
    assert parse_since("1H").seconds == 3600
    assert parse_since("2026-11-25").moment == datetime(2026, 11, 25)
    assert parse_since("2026-11-25 10:30").moment == datetime(2026, 11, 25, 10, 30)
    for bad in ("yesterday", "1y", "2026-13-01", "-1h"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1795641007.0", True),
        ("host-1529936170.42", True),
        ("pbx-a.example_1-1529936170.42", True),
        ("1795641007", False),
        ("1795641007.0 ", False),
        ("1795641007.0\n", False),
        ("-1795641007.0", False),
        ("x" * 140 + "-1795641007.0", False),
        ("1795641007.0'--", False),
    ],
)
def test_uniqueid_shape(text: str, ok: bool) -> None:
    assert valid_uniqueid(text) is ok


def row(**values: object) -> CdrRow:
    base: dict[str, object] = {
        "calldate": datetime(2026, 11, 25, 10),
        "uniqueid": "1.1",
        "src": "+79161234567",
        "dst": "200",
        "recordingfile": "a.wav",
    }
    base.update(values)
    return CdrRow(**base)  # type: ignore[arg-type]


def test_summary_of_a_transferred_call() -> None:
    legs = [
        row(dstchannel="PJSIP/101-01", disposition="ANSWERED", billsec=30, clid='"Анна" <1>'),
        row(dstchannel="PJSIP/103-02", disposition="ANSWERED", billsec=45),
        row(dstchannel="PJSIP/102-03", disposition="NO ANSWER", billsec=0),
    ]
    call = summarise("1.1", legs, lambda r: Recording("a.wav", RecStatus.MISSING))
    assert (call.answered, call.answered_by, call.talk_seconds) == (True, ("101", "103"), 75)
    assert (call.caller, call.caller_name, call.dialled, call.recording, call.legs) == (
        "+79161234567", "Анна", "200", "missing", 3
    )  # fmt: skip


def test_answered_by_the_pbx_alone_is_missed() -> None:
    legs = [row(dstchannel="", disposition="ANSWERED", billsec=20, did="74951234567")]
    call = summarise("1.1", legs, lambda r: Recording("", RecStatus.NONE))
    assert (call.answered, call.answered_by, call.dialled) == (False, (), "74951234567")


def test_operators_named_by_the_site_pattern() -> None:
    legs = [
        row(dstchannel="SIP/op-anna-0000001", disposition="ANSWERED", billsec=5),
        row(dstchannel="Local/102@from-queue-00000001;1", disposition="ANSWERED", billsec=7),
    ]
    plain = summarise("1.1", legs, lambda r: Recording("", RecStatus.NONE))
    assert plain.answered_by == ("SIP/op-anna-0000001", "102")
    site = ExtensionMatcher(r"^SIP/op-(?P<ext>[a-z]+)-")
    named = summarise("1.1", legs, lambda r: Recording("", RecStatus.NONE), site)
    assert named.answered_by == ("anna", "102")
