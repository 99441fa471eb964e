"""Header values stay exact when many messages repeat them (decoded values are shared)."""

from __future__ import annotations

from cti_cli.ami.message import Message


def test_same_bytes_in_every_line_form_give_each_form_its_own_value() -> None:
    forms = [
        (b"Event: Hangup\r\nName: \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\r\nX: 1", "Иван"),
        (b"Event: Hangup\r\nName:\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\r\nX: 1", "Иван"),
        (b"Event: Hangup\r\nName:  \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\r\nX: 1", " Иван"),
        (b"Event: Hangup\nName: \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\nX: 1", "Иван"),
        (b"Event: Hangup\r\nX: 1\r\nName: \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd", "Иван"),
        (b"Event: Hangup\r\nName: \xd0\x98\xd0\xb2\xd0\xb0\r\nX: 1", "Ива"),
        (b"Event: Hangup\r\nName: \xd0\x98\xd0\xb2\xd0\r\nX: 1", "Ив\ufffd"),
        (b"Event: Hangup\r\nName: \r\nX: 1", ""),
    ]
    for _ in range(3):  # first sight and repeats must agree
        for raw, expected in forms:
            msg = Message(raw)
            assert msg["Name"] == expected, raw
            assert msg.get("Name") == expected, raw
            assert msg.get("X") == "1" and msg["Event"] == "Hangup"


def test_many_distinct_values_are_all_returned_exactly() -> None:
    for i in range(20_000):  # more distinct values than are ever kept for reuse
        uid = f"1764100000.{i}"
        msg = Message(f"Event: Newchannel\r\nUniqueid: {uid}\r\nCallerIDName: Пётр {i}".encode())
        assert msg["Uniqueid"] == uid
        assert msg.get("CallerIDName") == f"Пётр {i}"
    long_value = "Ё" * 5000
    assert Message(f"Event: UserEvent\r\nData: {long_value}".encode())["Data"] == long_value


def test_a_repeated_header_reads_as_its_first_value_on_every_path() -> None:
    raw = b"Event: VarSet\r\nChanVariable: A=1\r\nX: y\r\nChanVariable: B=2"
    assert Message(raw).get("ChanVariable") == "A=1"
    assert Message(raw)["ChanVariable"] == "A=1"
    assert Message(raw).get("chanvariable") == "A=1"  # through the case-insensitive search
    assert Message(raw).get_all("ChanVariable") == ["A=1", "B=2"]


def test_a_name_looked_up_for_the_first_time_is_found() -> None:
    for n in range(3):  # a name never asked before takes the slow path once
        name = f"X-Unheard-Of-{n}-{id(object())}"
        msg = Message(f"Event: UserEvent\r\n{name}: Пётр {n}".encode())
        assert msg.get(name) == f"Пётр {n}"
        assert msg[name.upper()] == f"Пётр {n}"


def test_a_missing_header_names_itself_in_the_key_error() -> None:
    msg = Message(b"Event: Hangup")
    for name in ("Cause", f"Never-Asked-{id(msg)}"):
        try:
            msg[name]
        except KeyError as exc:
            assert exc.args == (name,)
        else:
            raise AssertionError(f"{name} found in {msg!r}")
