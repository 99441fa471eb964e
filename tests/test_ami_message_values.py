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
