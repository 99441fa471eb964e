"""Hostile PBX strings at the rendering edge: a caller chooses their own caller-ID name, so
`ESC[2J`, `ESC]0;…BEL` and rich markup in it must reach no terminal as such — in `cti watch`,
`cti replay`, `cti recordings`, `cti calls`, on stdout and in stderr messages alike."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdr_support import ScratchCdr, leg, scratch_cdr, wav_bytes
from rich.console import Console
from typer.testing import CliRunner

from cti_cli.ami.message import Message
from cti_cli.ami.reconnect import ConnectionState
from cti_cli.calls import CallTracker
from cti_cli.cli.app import _register, app
from cti_cli.cli.live_calls import FADE_SECONDS, CallBoard
from cti_cli.cli.replay import replay_command
from cti_cli.cli.watch import event_text
from cti_cli.textsafe import printable
from lab import MariaDB

_register()

EVIL = "\x1b[2J\x1b]0;pwned\x07[red]Иван[/red] [link=https://evil.example]x[/link]\u202e:smile:"
CONTROLS = ("\x1b", "\x07", "\u202e")


def clean(text: str) -> None:
    for char in CONTROLS:
        assert char not in text, f"{char!r} reached the terminal: {text!r}"


def call_events(uid: str = "1700000000.1", name: str = EVIL) -> list[dict[str, str]]:
    """A call from a caller named `name` that rings 101, is answered, and hangs up."""
    op = uid + "1"
    base = {"Linkedid": uid, "CallerIDNum": "+79161234567", "CallerIDName": name}
    caller = {**base, "Channel": "PJSIP/trunk-00000001", "Uniqueid": uid, "Exten": "200"}
    member = {
        "Linkedid": uid, "Channel": "PJSIP/101-00000002", "Uniqueid": op,
        "CallerIDNum": "101", "ConnectedLineNum": "+79161234567", "ConnectedLineName": name,
    }  # fmt: skip
    return [
        {"Event": "Newchannel", "Timestamp": "1700000000.0", "ChannelState": "4", **caller},
        {"Event": "Newchannel", "Timestamp": "1700000000.1", "ChannelState": "0", **member},
        {"Event": "Newstate", "Timestamp": "1700000000.2", "ChannelState": "5", **member},
        {"Event": "Newstate", "Timestamp": "1700000002.0", "ChannelState": "6", **member},
        {"Event": "Hangup", "Timestamp": "1700000009.0", **member},
        {"Event": "Hangup", "Timestamp": "1700000009.1", **caller},
    ]


def raw_ami(events: list[dict[str, str]]) -> bytes:
    out = "Asterisk Call Manager/5.0.0\r\n"
    for event in events:
        out += "".join(f"{k}: {v}\r\n" for k, v in event.items()) + "\r\n"
    return out.encode("utf-8")


def test_printable_escapes_terminal_controls_and_keeps_text() -> None:
    assert printable("\x1b[2J\x1b]0;t\x07") == "\\x1b[2J\\x1b]0;t\\x07"
    assert printable("\x9b2J \u2028 \u200f \udcff") == "\\x9b2J \\u2028 \\u200f \\udcff"
    assert printable("Иван [red] :smile:") == "Иван [red] :smile:"


def test_the_agents_json_log_line_carries_hostile_text_escaped_and_decodes_to_it() -> None:
    """journalctl/tail show a JSON log line on a terminal: a caller name with an 8-bit CSI, NEL,
    a bidi override or a line separator must not act there, and the JSON must still decode to
    exactly what the PBX sent (Cyrillic written as it is)."""
    import json
    import logging

    from cti_cli.agent.logs import JsonFormatter

    name = "Иван\x9b2J\x85\u202eПетров\u2028\x7f\x1b[31m"
    record = logging.LogRecord("cti.agent", logging.INFO, __file__, 1, "pop for %s", (name,), None)
    line = JsonFormatter().format(record)
    assert not any(ch in line for ch in "\x9b\x85\u202e\u2028\x7f\x1b\n"), repr(line)
    assert "Иван" in line and json.loads(line)["message"] == f"pop for {name}"


def frame(board: CallBoard, now: float) -> str:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None, force_terminal=False).print(board.render(now))
    return out.getvalue()


def test_watch_board_shows_hostile_names_as_text() -> None:
    tracker = CallTracker()
    board = CallBoard(tracker, server="pbx:5038")
    board.set_connection(ConnectionState("error", error="not an AMI server: got '\x1b[31m'"), 0)
    events = call_events()
    for i, event in enumerate(events[:4]):
        board.record(tracker.feed(event), float(i))
    talking = frame(board, 4.0)
    assert "talking" in talking
    for i, event in enumerate(events[4:]):
        board.record(tracker.feed(event), 5.0 + i)
    ending = frame(board, 7.0)
    recent = frame(board, 7.0 + FADE_SECONDS + 1)
    for screen in (talking, ending, recent):
        clean(screen)
        assert "[red]Иван[/red] [link=https://evil.example]x[/link]" in screen
        assert ":smile:" in screen and "\\x1b[2J" in screen
    assert "ended: completed" in ending and "recent" in recent


def test_watch_events_text_escapes_values() -> None:
    text = event_text(Message(b"Event: Newchannel\r\nCallerIDName: \x1b[2J\x07evil"))
    clean(text)
    assert "CallerIDName: \\x1b[2J\\x07evil" in text


def test_replay_summary_and_its_errors_escape_controls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "call.ami"
    capture.write_bytes(raw_ami(call_events()))
    assert replay_command(str(capture), json_out=False) == 0
    out = capsys.readouterr().out
    clean(out)
    assert "[red]Иван[/red]" in out and "completed" in out
    assert replay_command(str(capture), json_out=True) == 0
    assert "\\u001b[2J" in capsys.readouterr().out  # JSON escapes them its own way
    missing = tmp_path / "no\x1b]0;such\x07.ami"
    assert replay_command(str(missing), json_out=False) == 2
    err = capsys.readouterr().err
    clean(err)
    assert "cannot read" in err


def test_stderr_failures_escape_controls(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    conf.write_text('[[teams]]\nname = "T"\n[[teams.members]]\nlogin = "a"\nextensions = ["101"]\n')
    conf.chmod(0o600)
    result = CliRunner().invoke(
        app, ["--config", str(conf), "rule", "test", str(tmp_path / "x\x1b[2J\x07.ami")]
    )
    assert result.exit_code == 2
    clean(result.stderr)
    assert "cannot read" in result.stderr


# ---------------------------------------------------------------- cti recordings / cti calls


@pytest.fixture
def cdr(mariadb: MariaDB, tmp_path: Path) -> Iterator[ScratchCdr]:
    with scratch_cdr(mariadb, tmp_path) as scratch:
        yield scratch


def test_recordings_and_calls_escape_cdr_strings(cdr: ScratchCdr, tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b]0;p\x07[red]Иван[/red]"
    uid = "1795641007.0"
    name = f"in-\x1b[2J\x1b]0;x\x07-20261125-100000-{uid}.wav"
    day = cdr.recordings / "2026/11/25"
    day.mkdir(parents=True)
    (day / name).write_bytes(wav_bytes(1.0))
    cdr.insert([
        leg(uid, cnam=evil, clid=f'"{evil}" <+79161234567>', recordingfile=name,
            dstchannel="PJSIP/101-\x1b[5m0002"),
        leg(uid, cnam="", clid=f'"{evil}" <+79161234567>', recordingfile=f"../\x1b[2J{name}",
            sequence=2),
    ])  # fmt: skip
    for args in (
        ("recordings", uid),
        ("recordings", uid, "--copy-to", str(tmp_path / "out")),
        ("calls", "--since", "2026-11-01"),
    ):
        result = cdr.cti(*args)
        clean(result.out + result.err)
        assert "[red]Иван[/red]" in result.out, (args, result.out, result.err)
    assert "\\x1b[2J" in cdr.cti("recordings", uid).out
