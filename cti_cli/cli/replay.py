"""`cti replay FILE [--json]`: what cti understood of a captured AMI stream, call by call.

The recording runs through the call tracker (calls/replay.py, imported when the command runs:
`cti --help` does not pay for it); this module prints the call events or a line per call.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, BinaryIO, TextIO

import typer

from cti_cli.textsafe import printable, shorten

if TYPE_CHECKING:
    from cti_cli.calls.replay import CallSummary

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def replay(
    file: Annotated[
        str, typer.Argument(help="Raw AMI capture, JSON array or JSON Lines; - reads stdin.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Call events as JSON Lines.")] = False,
    extension_pattern: Annotated[
        str | None,
        typer.Option(
            metavar="REGEX", help="Regex with a group for the extension in device channel names."
        ),
    ] = None,
) -> None:
    """Replay a captured AMI stream through the call tracker (per-call summary or --json)."""
    raise typer.Exit(replay_command(file, json_out, extension_pattern))


def replay_command(file: str, json_out: bool, extension_pattern: str | None = None) -> int:
    """Print call events (`--json`: one JSON object per line) or a per-call summary.

    `file` "-" reads stdin. Damaged messages are skipped (a warning on stderr, exit code 0);
    unreadable input or input that is no recording: one line on stderr, exit code 2. A reader
    that stops early (`| head`) ends the replay quietly.
    """
    from cti_cli.calls.replay import replay as call_events
    from cti_cli.calls.replay import summarize
    from cti_cli.calls.sources import ReplayInputError
    from cti_cli.calls.tracker import CallTracker, DropNotice

    out = _Utf8Out(sys.stdout)
    try:
        tracker = CallTracker(extension_pattern)
    except ValueError as exc:  # a bad extension pattern
        return _fail(str(exc))
    try:
        stream: BinaryIO = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}; check the path")
    damage = _Damage(file)
    try:
        events = call_events(stream, damaged=damage, tracker=tracker)
        if json_out:
            for event in events:
                out.write(event.to_json() + "\n")
        else:
            for summary in summarize(events):
                out.write(printable(render_summary(summary)) + "\n")
        out.flush()
    except BrokenPipeError:
        _stdout_closed()
        return EXIT_OK
    except ReplayInputError as exc:
        try:
            out.flush()
        except BrokenPipeError:
            _stdout_closed()
        return _fail(f"{file}: {exc}")
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    damage.summary()
    if line := DropNotice(tracker).check():
        _warn(line)
    return EXIT_OK


def render_summary(summary: CallSummary) -> str:
    """One line per call, e.g. `+3115... "Иван" -> 202 | queue sales | rang 101, 102 | ...`."""
    who = summary.caller or "unknown caller"
    if summary.caller_name:
        who += f' "{summary.caller_name}"'
    parts = [f"{who} -> {summary.dialed or '?'}"]
    if summary.queue:
        parts.append(f"queue {summary.queue}")
    parts.append("rang " + (", ".join(summary.rang) or "nobody"))
    parts.append("answered by " + (", ".join(summary.answered_by) or "nobody"))
    for source, target in summary.transfers:
        parts.append(f"transferred {source or '?'} -> {target or '?'}")
    if summary.reason is None:
        parts.append("still in progress at end of recording")
    else:
        ending = summary.reason
        if summary.duration is not None:
            ending += f", {summary.duration} s"
        parts.append(ending)
    return " | ".join(parts)


class _Damage:
    """Told of each damaged message: warns at the first (with its place), sums up at the end."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.first = ""

    def __call__(self, where: str, why: str) -> None:
        self.count += 1
        if self.count == 1:
            self.first = where
            _warn(f"{self.file}: {where}: skipped a damaged message ({why}); reading on")

    def summary(self) -> None:
        if self.count > 1:
            _warn(f"{self.file}: skipped {self.count} damaged messages (the first at {self.first})")


def _stdout_closed() -> None:
    """The reader went away: point stdout at /dev/null so that the final flush is quiet too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (tests)
        pass


class _Utf8Out:
    """Caller names are UTF-8 (Cyrillic...): never let a C locale mangle or crash on them."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        utf8 = (text.encoding or "").lower().replace("-", "") == "utf8"
        self._binary = None if utf8 else getattr(text, "buffer", None)

    def write(self, line: str) -> None:
        if self._binary is None:
            self._text.write(line)
        else:
            self._binary.write(line.encode("utf-8"))

    def flush(self) -> None:
        self._text.flush()
        if self._binary is not None:
            self._binary.flush()


def _warn(message: str) -> None:
    print(f"cti: warning: {printable(shorten(message))}", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"cti: {printable(shorten(message))}", file=sys.stderr)
    return EXIT_BAD_INPUT
