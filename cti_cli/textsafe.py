"""Strings from the PBX are hostile: a caller sets their own caller-ID name.

`printable()` is the one sanitiser for text that reaches a terminal or a log line: control
characters (C0, DEL, C1 — ESC sequences, BEL, CR/LF), bidirectional controls, line/paragraph
separators and lone surrogates (undecodable bytes) become visible `\\xNN` / `\\uNNNN` escapes;
every other character, Cyrillic included, is kept as is. It is applied at the rendering edge
(stdout, stderr warnings and errors, logs); rich markup is never interpreted in such text (it
is printed as `Text` or with `markup=False`), so `[red]` stays `[red]`.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control and bidi-override character shown as an escape."""
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, part) for part in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def json_printable(encoded: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with the characters JSON leaves
    raw but a terminal acts on (DEL, C1 controls, bidi overrides, U+2028/9) written as
    ``\\uNNNN``: still valid JSON that decodes to the same strings."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", encoded)


_SURROGATE = re.compile("[\ud800-\udfff]")


def whole_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD. JSON lets a sender write half of a
    character (`"\\ud83d"`: an emoji cut in the middle), which no UTF-8 encoder takes: one such
    string from a service desk must not make a pop, a page or a file unwritable."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def whole_json(value: object) -> object:
    """Decoded JSON with every string (keys too) made `whole_text`; the same object when it
    has no lone surrogate."""
    if isinstance(value, str):
        return whole_text(value)
    if isinstance(value, dict):
        return {whole_text(k) if isinstance(k, str) else k: whole_json(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [whole_json(v) for v in value]
    return value


def utf8(text: str) -> bytes:
    """`text` as UTF-8, a lone surrogate (from a rule, say) written as U+FFFD instead of an
    error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return whole_text(text).encode("utf-8")


MESSAGE_LIMIT = 600  # characters of one error or warning line


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` cut in the middle when longer than `limit`: a 100 KB argument quoted in an error
    shows its start and end, and how much was left out, not the whole of it."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 4
    return f"{text[:head]}…({len(text) - head - tail} characters left out)…{text[-tail:]}"
