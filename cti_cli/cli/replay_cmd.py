"""`cti replay FILE [--json]`: run a recorded AMI stream through the call tracker."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, TextIO

from cti_cli.calls.replay import render_summary, replay, summarize
from cti_cli.calls.sources import ReplayInputError
from cti_cli.calls.tracker import CallTracker, DropNotice
from cti_cli.textsafe import printable, shorten

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def replay_command(file: str, json_out: bool, extension_pattern: str | None = None) -> int:
    """Print call events (`--json`: one JSON object per line) or a per-call summary.

    `file` "-" reads stdin. Damaged messages are skipped (a warning on stderr, exit code 0);
    unreadable input or input that is no recording: one line on stderr, exit code 2. A reader
    that stops early (`| head`) ends the replay quietly.
    """
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
        events = replay(stream, damaged=damage, tracker=tracker)
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
