"""Strings from the PBX are hostile: a caller sets their own caller-ID name.

`printable()` is the one sanitiser for text that reaches a terminal or a log line: control
characters (C0, DEL, C1 — ESC sequences, BEL, CR/LF) and bidirectional overrides become
visible `\\xNN` / `\\uNNNN` escapes; every other character, Cyrillic included, is kept as is.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control and bidi-override character shown as an escape."""
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, part) for part in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
