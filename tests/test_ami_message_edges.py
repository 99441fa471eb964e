"""AMI message edges: every lookup path (a name asked for the first time, again, in another
case) gives the same value; the full header list keeps values exactly. Pure units."""

from __future__ import annotations

import itertools

import pytest

from cti_cli.ami.message import HeaderDict, Message, fold_name, parse_header_lines

_fresh = itertools.count()


def _new_name(stem: str) -> str:
    """A header name no lookup has used yet (a first lookup takes its own path)."""
    return f"X-{stem}-{next(_fresh)}-{id(object())}"


def _lookups(raw: bytes, name: str) -> list[str | None]:
    """The value of `name` from get and [] (each asked first, then again) on fresh messages."""
    out: list[str | None] = []
    for _ in range(2):
        out.append(Message(raw).get(name))
        try:
            out.append(Message(raw)[name])
        except KeyError:
            out.append(None)
    return out


def test_a_header_spelled_as_asked_wins_over_an_earlier_one_in_other_case() -> None:
    for name in ("Uniqueid", _new_name("Spell")):
        raw = f"Event: Hangup\r\n{name.lower()}: 1.1\r\n{name}: 1.2\r\nCause: 16".encode()
        assert _lookups(raw, name) == ["1.2"] * 4
        assert _lookups(raw, name.upper()) == ["1.1"] * 4  # no exact spelling: the first
        assert Message(raw).get_all(name) == ["1.1", "1.2"]


def test_first_lookups_of_new_names_find_every_spelling_and_position() -> None:
    for _ in range(3):
        name = _new_name("Pos")
        first = f"{name}: a\r\nEvent: X".encode()
        middle = f"Event: X\r\n{name}: b\r\nY: 1".encode()
        last = f"Event: X\r\n{name}: c".encode()
        folded = f"Event: X\r\n{name.lower()}: d\r\nY: 1".encode()
        assert Message(first).get(_new_name("Miss")) is None
        assert [Message(raw).get(name) for raw in (first, middle, last, folded)] == [
            "a",
            "b",
            "c",
            "d",
        ]


@pytest.mark.parametrize("name", ["Uniqueid", "Linkedid", "Cause"])
def test_a_header_in_other_case_is_found_wherever_it_is(name: str) -> None:
    low = name.lower()
    for raw, value in [
        (f"{low}: 1.0\r\nEvent: Hangup".encode(), "1.0"),
        (f"Event: Hangup\r\n{low}: 1.1\r\nX: y".encode(), "1.1"),
        (f"Event: Hangup\r\n{low}: 1.2".encode(), "1.2"),
        (f"Event: Hangup\r\n{low}: 1.3\r".encode(), "1.3"),
        (f"Event: Hangup\n{low}:1.4\nX: y".encode(), "1.4"),
    ]:
        assert _lookups(raw, name) == [value] * 4, raw


def test_the_last_header_reads_whole_with_or_without_its_line_end() -> None:
    for raw in (b"Event: Hangup\r\nCause: 16", b"Event: Hangup\r\nCause: 16\r"):
        assert _lookups(raw, "Cause") == ["16"] * 4
    assert _lookups(b"Event: Hangup\r\nCause: 1", "Cause") == ["1"] * 4
    assert _lookups(b"Cause: 17", "Cause") == ["17"] * 4


def test_a_missing_header_gives_the_default_on_every_path() -> None:
    msg = Message(b"Event: Hangup\r\nCause: 16")
    for name in ("Uniqueid", "uniqueid", _new_name("Absent"), "A:B", "Bad\nName", "Bad\rName"):
        assert msg.get(name, "dflt") == "dflt", name
        assert msg.get(name) is None
        assert name not in msg
    assert msg.get("", "dflt") == "dflt"  # no line without a colon
    assert msg.get("Cause", "dflt") == "16"


def test_a_missing_header_names_itself_in_the_key_error_on_every_path() -> None:
    msg = Message(b"Event: Hangup\r\nuniqueid: 1.1")
    for name in ("Linkedid", "LINKEDID", _new_name("Key"), "A:B", ""):
        with pytest.raises(KeyError) as err:
            msg[name]
        assert err.value.args == (name,)


def test_a_name_that_cannot_be_a_header_is_never_found() -> None:
    msg = Message(b"Event: X\r\nA: B: 1\r\nC\nD: 2\r\nE\rF: 3\r\nG: 4")
    for name in ("A: B", "A:", "C\nD", "E\rF", "D\r\nG", ": B"):
        assert msg.get(name) is None, name
        assert msg.get(name, "dflt") == "dflt"
        assert name not in msg
    assert (msg["A"], msg["D"], msg["G"]) == ("B: 1", "2", "4")
    assert msg.headers[-2:] == [("E\rF", "3"), ("G", "4")]  # listed, but not a name to ask


def test_names_are_looked_up_as_their_utf8_bytes() -> None:
    msg = Message(b"Event: X\r\n\xd0\x98\xd0\xbc\xd1\x8f: \xd0\x9e\xd0\xbb\xd1\x8f")
    assert msg.get("Имя") == "Оля" and msg["Имя"] == "Оля"
    name = _new_name("Raw")  # a name decoded from a recording with surrogateescape:
    raw = b"Event: X\r\n\xff" + name.encode() + b": raw"
    assert Message(raw).get("\udcff" + name) == "raw"


def test_a_repeated_header_reads_as_its_first_value_on_a_first_lookup() -> None:
    for _ in range(3):
        name = _new_name("Rep")
        raw = f"Event: VarSet\r\n{name}: A=1\r\nX: y\r\n{name}: B=2\r\nZ: 1".encode()
        assert Message(raw).get(name) == "A=1"
        name = _new_name("Rep")
        raw = f"Event: VarSet\r\n{name}: A=1\r\nX: y\r\n{name}: B=2\r\nZ: 1".encode()
        assert Message(raw)[name] == "A=1"
        assert Message(raw).get_all(name) == ["A=1", "B=2"]


# -- the full header list ------------------------------------------------------------------
def test_the_header_list_keeps_values_exactly() -> None:
    raw = (
        b"Event: Odd\r\n"
        b"Name:value\r\n"
        b"Spaced:  two  \r\n"
        b":no name\r\n"
        b"Empty:\r\n"
        b"CallerIDName: \xff\xd0 \xd0\x9f\xd1\x91\xd1\x82\xd1\x80\r\n"
        b"just text\r"
    )
    expected = [
        ("Event", "Odd"),
        ("Name", "value"),
        ("Spaced", " two  "),
        ("", "no name"),
        ("Empty", ""),
        ("CallerIDName", "\ufffd\ufffd Пётр"),
        ("", "just text"),
    ]
    assert parse_header_lines(raw) == expected
    msg = Message(raw)
    assert msg.headers == expected
    assert [msg[name] for name, _ in expected[1:3]] == ["value", " two  "]
    assert msg[""] == "no name" and msg.get_all("") == ["no name", "just text"]
    assert msg.get("CallerIDName") == "\ufffd\ufffd Пётр"
    assert len(msg) == 6 and list(msg) == ["Event", "Name", "Spaced", "", "Empty", "CallerIDName"]


def test_spaces_around_a_value_are_kept_on_every_path() -> None:
    value = f"  {_new_name('Spaces')}  "  # never decoded before
    raw = f"Event: X\r\nSpaced:{value}\r\nY: 1".encode()
    assert Message(raw)["Spaced"] == value[1:]
    assert Message(raw).get("Spaced") == value[1:]
    assert Message(raw).headers[1] == ("Spaced", value[1:])


def test_from_headers_keeps_undecodable_bytes_of_a_recording() -> None:
    value = b"\xff\xfe \xd0\x98".decode("utf-8", "surrogateescape")
    msg = Message.from_headers([("Event", "UserEvent"), ("Data", value)])
    assert msg.raw == b"Event: UserEvent\r\nData: \xff\xfe \xd0\x98"
    assert msg["Data"] == "\ufffd\ufffd И"


# -- names ignore ASCII case only ------------------------------------------------------------
def test_only_ascii_letters_are_folded_in_names() -> None:
    assert fold_name("UniqueID") == "uniqueid"
    assert fold_name("ИМЯ-Id") == "ИМЯ-id"
    assert fold_name("Имя") == "Имя"
    msg = Message("Event: X\r\nИМЯ: 1\r\nИмя-ID: 2".encode())
    assert msg.get("имя") is None and msg.get_all("имя") == []  # every path agrees
    assert msg.get_all("ИМЯ") == ["1"]
    assert msg.get("Имя-id") == "2" and msg.get_all("Имя-id") == ["2"]


# -- HeaderDict (a JSON recording's events) -------------------------------------------------
def test_a_header_dict_prefers_the_exact_spelling() -> None:
    ev = HeaderDict({"uniqueid": "1.1", "Uniqueid": "1.2", "Event": "Hangup"})
    assert ev.get("Uniqueid") == "1.2" and ev["Uniqueid"] == "1.2"
    assert ev.get("UNIQUEID") == "1.1" and ev["UNIQUEID"] == "1.1"
    assert ev.get("event") == "Hangup" and "EVENT" in ev and "Event" in ev
    assert ev.get("Linkedid") is None and ev.get("Linkedid", "") == ""
    assert "Linkedid" not in ev


def test_a_header_dict_names_a_missing_header_in_the_key_error() -> None:
    ev = HeaderDict({"Event": "Hangup"})
    for name in ("Cause", "cause"):
        with pytest.raises(KeyError) as err:
            ev[name]
        assert err.value.args == (name,)
