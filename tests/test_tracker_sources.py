"""Recording formats for `cti replay`: JSON array, JSON Lines, raw AMI; garbage -> clear error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cti_cli.calls.sources import ReplayInputError, read_events
from cti_cli.cli.replay_cmd import replay_command

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
        (b'{"Event": "A"}\n{"Event": "B"}\nnot json\n', "line 3"),
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
