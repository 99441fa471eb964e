"""Recording formats for `cti replay`: JSON array, JSON Lines, raw AMI; garbage -> clear error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cti_cli.calls.sources import ReplayInputError, read_events
from cti_cli.cli.replay import replay_command

TRANSCRIPTS = Path(__file__).parent / "transcripts"
NEWCHANNEL = {"Event": "Newchannel", "Channel": "PJSIP/101-1", "CallerIDName": "Иван"}


def events_of(data: bytes) -> list[dict[str, str]]:
    return [dict(e) for e in read_events(io.BytesIO(data))]


def test_json_array_json_lines_and_raw_ami_give_the_same_events() -> None:
    hangup = {"Event": "Hangup", "Channel": "PJSIP/101-1"}
    array = json.dumps([NEWCHANNEL, {"Response": "Success"}, hangup], ensure_ascii=False)
    lines = "\n".join(json.dumps(e, ensure_ascii=False) for e in (NEWCHANNEL, hangup)) + "\n"
    raw = (
        "Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: Authentication accepted"
        "\r\n\r\nEvent: Newchannel\r\nChannel: PJSIP/101-1\r\nCallerIDName: Иван\r\n\r\n"
        "Event: Hangup\nChannel: PJSIP/101-1\n\n"
    )
    expected = [NEWCHANNEL, hangup]
    assert events_of(array.encode()) == expected
    assert events_of(b"\xef\xbb\xbf  \n" + array.encode()) == expected
    assert events_of(lines.encode()) == expected
    assert events_of(raw.encode()) == expected


def test_large_json_array_is_streamed_across_chunks() -> None:
    many = [{**NEWCHANNEL, "Uniqueid": str(n), "Pad": "ж" * (n % 97)} for n in range(20000)]
    assert events_of(json.dumps(many, ensure_ascii=False).encode()) == many


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'[{"Event": "A"},\n{"Event": ', "line 2"),
        (b'[{"Event": "A"}\n {"Event": "B"}]', "line 1"),
        (b"[1, 2]", "line 1"),
        (b'[{"Event": "A"}]\ntrailing', "line 2"),
        (b"{bad\nnot json\n", "line 1"),  # JSON Lines of which no line is readable
        (b"Asterisk Call Manager/5.0\r\ngarbage\r\n\r\nmore\r\n\r\n", "byte 27"),
        (b'[{"Event": 1}]', "line 1"),
        (b"\x00\x01\x02 binary garbage", "byte 0"),
        (b"Event: Newchannel\r\nChannel: x", "byte 0"),
    ],
)
def test_garbage_is_reported_with_its_place(data: bytes, where: str) -> None:
    with pytest.raises(ReplayInputError, match=where):
        list(read_events(io.BytesIO(data)))


def test_replay_command_json_keeps_utf8_and_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = replay_command(str(TRANSCRIPTS / "ast18_queue_answered.ami"), json_out=True)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [json.loads(line)["event"] for line in out] == [
        "ringing",
        "ringing",
        "answered",
        "ended",
    ]
    assert "Иван Петров" in out[0]


def test_replay_command_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_command(str(TRANSCRIPTS / "ast18_blind_transfer.ami"), json_out=False) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line == (
        '0401234567 "Boris" -> 101 | rang 101, 102 | answered by 101, 102 '
        "| transferred 101 -> 102 | completed"
    )


def test_replay_command_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"Event": "Newchannel"}, oops]')
    assert replay_command(str(bad), json_out=True) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1" in err and "Traceback" not in err
    assert replay_command(str(tmp_path / "missing.json"), json_out=False) == 2
    assert "cannot read" in capsys.readouterr().err


# ---------------------------------------------------------------- damaged messages are skipped


def raw_event(n: int) -> bytes:
    return f"Event: Newchannel\r\nUniqueid: {n}\r\nCallerIDName: Иван\r\n\r\n".encode()


def read_with_damage(data: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    damage: list[tuple[str, str]] = []
    events = read_events(io.BytesIO(data), lambda where, why: damage.append((where, why)))
    return [e["Uniqueid"] for e in events], damage


def test_a_damaged_raw_message_far_in_is_skipped_and_named_by_its_byte() -> None:
    before = b"Asterisk Call Manager/5.0.0\r\n" + b"".join(raw_event(n) for n in range(5000))
    bad = b"this is no header\r\n\x00\xff nor this\r\n\r\n"
    after = b"".join(raw_event(n) for n in range(5000, 5003))
    ids, damage = read_with_damage(before + bad + after)
    assert ids == [str(n) for n in range(5003)]
    assert damage == [(f"byte {len(before)}", "lines that are not 'Header: value' AMI")]
    assert len(before) > 3 * 65536  # far past the first chunk


def test_an_oversized_block_is_skipped_up_to_its_blank_line() -> None:
    before = raw_event(1) + raw_event(2)
    huge = b"X: " + b"y" * (3 << 20) + b"\r\n\r\n"  # 3 MiB without a blank line
    ids, damage = read_with_damage(before + huge + raw_event(3) + b"\n" + raw_event(4))
    assert ids == ["1", "2", "3", "4"]
    assert [w for w, _ in damage] == [f"byte {len(before)}"]
    assert "larger than" in damage[0][1]


def test_a_capture_cut_inside_its_last_message_keeps_the_rest() -> None:
    data = raw_event(1) + raw_event(2) + b"Event: Hangup\r\nUniq"
    ids, damage = read_with_damage(data)
    assert ids == ["1", "2"]
    assert damage == [(f"byte {len(data) - 19}", "the capture ends inside an AMI message")]


def test_damaged_json_lines_and_array_items_are_skipped() -> None:
    deep = "[" * 5000 + "]" * 5000
    lines = [
        json.dumps({"Event": "A", "Uniqueid": "1"}),
        "not json",
        '{"Event": "A", "Uniqueid": 2}',
        '{"Event": "A", "Uniqueid": "3", "Nested": [1]}',
        "[" + deep + "]",
        json.dumps({"Event": "A", "Uniqueid": "4"}),
    ]
    ids, damage = read_with_damage("\n".join(lines).encode())
    assert ids == ["1", "4"]
    assert [w for w, _ in damage] == ["line 2", "line 3", "line 4", "line 5"]
    assert [why for _, why in damage] == [
        "invalid JSON (Expecting value)",
        "header 'Uniqueid' is a JSON int, not a string",
        "header 'Nested' is a JSON list, not a string",
        "JSON nested too deeply to be an AMI message",
    ]
    array = '[{"Event": "A", "Uniqueid": "1"}, {"Event": "A", "Uniqueid": null}, 7,\n' \
            '{"Event": "A", "Uniqueid": "2"}]'  # fmt: skip
    ids, damage = read_with_damage(array.encode())
    assert ids == ["1", "2"] and [w for w, _ in damage] == ["line 1", "line 1"]


def test_json_nested_too_deeply_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" + '{"a": ' * 5000 + "1" + "}" * 5000 + "]")
    assert replay_command(str(deep), json_out=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested too deeply" in err and "Traceback" not in err
    only_ints = tmp_path / "ints.jsonl"
    only_ints.write_text('{"Event": "Newchannel", "Uniqueid": 1}\n')
    assert replay_command(str(only_ints), json_out=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a string" in err


def test_replay_with_damage_goes_on_warns_once_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = (TRANSCRIPTS / "ast18_queue_answered.ami").read_bytes()
    cut = good.index(b"\r\n\r\n", len(good) // 2) + 4
    garbage = b"\x00\x01 garbage\r\n\r\nmore garbage\r\n\r\n"
    capture = tmp_path / "damaged.ami"
    capture.write_bytes(good[:cut] + garbage + good[cut:])
    assert replay_command(str(capture), json_out=True) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["event"] for line in captured.out.splitlines()] == [
        "ringing", "ringing", "answered", "ended",
    ]  # fmt: skip
    warnings = captured.err.splitlines()
    assert len(warnings) == 2, warnings
    assert f"byte {cut}: skipped a damaged message" in warnings[0]
    assert "skipped 2 damaged messages" in warnings[1]


def test_replay_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    capture = tmp_path / "many.jsonl"
    lines = [json.dumps({"Event": "Newchannel", "Uniqueid": f"1.{n}", "Linkedid": f"1.{n}",
                         "Channel": f"PJSIP/trunk-{n}", "CallerIDNum": "+79161234567"})
             + "\n" + json.dumps({"Event": "Hangup", "Uniqueid": f"1.{n}",
                                  "Channel": f"PJSIP/trunk-{n}"})
             for n in range(20000)]  # fmt: skip
    capture.write_text("\n".join(lines) + "\n", "utf-8")
    cti = Path(sys.executable).with_name("cti")
    proc = subprocess.Popen([str(cti), "replay", str(capture), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b'{"event":"ended"')
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 0 and err == b""
