"""`cti replay FILE [--json]`: run a recorded AMI stream through the call tracker."""

from __future__ import annotations

import sys
from typing import BinaryIO, TextIO

from cti_cli.calls.replay import render_summary, replay, summarize
from cti_cli.calls.sources import ReplayInputError

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def replay_command(file: str, json_out: bool, extension_pattern: str | None = None) -> int:
    """Print call events (`--json`: one JSON object per line) or a per-call summary.

    `file` "-" reads stdin. Unreadable or garbage input: one line on stderr, exit code 2.
    """
    out = _Utf8Out(sys.stdout)
    try:
        stream: BinaryIO = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}; check the path")
    try:
        events = replay(stream, extension_pattern)
        if json_out:
            for event in events:
                out.write(event.to_json() + "\n")
        else:
            for summary in summarize(events):
                out.write(render_summary(summary) + "\n")
        out.flush()
    except ReplayInputError as exc:
        out.flush()
        return _fail(f"{file}: {exc}")
    except ValueError as exc:  # a bad extension pattern
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return EXIT_OK


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


def _fail(message: str) -> int:
    print(f"cti: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
