"""Recorded AMI traffic -> AMI events, whatever the recording format.

`read_events(stream)` sniffs the first bytes: `[` is a JSON array of event objects (the
cacofonisk corpus format; streamed, so large files are fine), `{` is JSON Lines, anything else
must be a raw AMI capture (banner and responses included, CRLF or LF), framed at its blank
lines and filtered to events.

A damaged message (a block of lines that are not `Header: value`, an oversized block, a JSON
line that does not parse, values that are not strings) is skipped: `damaged(where, why)` is
told (`where` = "byte N" or "line N"), and reading goes on at the next blank line (next line).
Only input that is not a recording at all raises `ReplayInputError`, naming a line or byte
offset: the first bytes are no AMI/JSON, a JSON array's syntax breaks (no way to resynchronise
inside it), or not a single message could be read.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from cti_cli.ami.codec import DEFAULT_MAX_MESSAGE
from cti_cli.ami.message import HeaderDict, Message

_CHUNK = 1 << 16
_BOM = codecs.BOM_UTF8
_SPACE = re.compile(r"[ \t\r\n]*")

Damaged = Callable[[str, str], None]


class ReplayInputError(ValueError):
    """The input is not a recording we can read; `str()` is one line naming where."""


_HELD = 1000  # damage reports held back until a message was read (so garbage is one error)


class _Tally:
    """Counts what was read; passes damage on; refuses input of which nothing was readable.

    Damage seen before the first good message is held back (told at the next damage or at the
    end): if no message is ever read, the input is refused with one error instead."""

    def __init__(self, damaged: Damaged | None) -> None:
        self._damaged = damaged
        self.good = 0  # messages read (the hot path bumps this plain attribute)
        self.first: tuple[str, str] | None = None
        self._held: list[tuple[str, str]] | None = []

    def _release(self) -> None:
        held, self._held = self._held or [], None
        if self._damaged is not None:
            for where, why in held:
                self._damaged(where, why)

    def damage(self, where: str, why: str) -> None:
        if self.first is None:
            self.first = (where, why)
        if self._held is not None:
            self._held.append((where, why))
            if self.good or len(self._held) >= _HELD:
                self._release()
        elif self._damaged is not None:
            self._damaged(where, why)

    def finish(self) -> None:
        if self.good == 0 and self.first is not None:
            where, why = self.first
            raise ReplayInputError(f"{where}: {why}; no message in it could be read")
        self._release()


def read_events(stream: BinaryIO, damaged: Damaged | None = None) -> Iterator[Mapping[str, str]]:
    """Yield the AMI events recorded in `stream` (JSON array, JSON Lines or raw AMI bytes);
    damaged messages are skipped and reported to `damaged(where, why)`."""
    head = stream.read(_CHUNK)
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    first = head.lstrip()[:1]
    tally = _Tally(damaged)
    if first == b"[":
        return _json_array(head, stream, tally)
    if first == b"{":
        return _json_lines(head, stream, tally)
    if not first:
        return iter(())
    return _raw_ami(head, stream, tally)


def _chunks(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    if head:
        yield head
    while chunk := stream.read(_CHUNK):
        yield chunk


def _check_item(item: object) -> tuple[Mapping[str, str] | None, str | None]:
    """(the event, None), (None, None) for a non-event message, or (None, why) if damaged."""
    if not isinstance(item, dict):
        return None, f"expected a JSON object (one AMI message), got {repr(item)[:40]}"
    for key, value in item.items():
        if not isinstance(value, str):
            got = type(value).__name__
            return None, f"header {key[:40]!r} is a JSON {got}, not a string"
    event = HeaderDict(item)  # header names match ignoring case, as in a raw capture
    return (event if "Event" in event else None), None


def _json_array(head: bytes, stream: BinaryIO, tally: _Tally) -> Iterator[Mapping[str, str]]:
    """Stream the items of one top-level JSON array, decoding chunk by chunk."""
    buf = _TextBuffer(_chunks(head, stream))
    decoder = json.JSONDecoder()
    buf.skip_space()
    if buf.peek() != "[":
        raise ReplayInputError(f"{buf.where()}: expected '[' to open a JSON array")
    buf.pos += 1
    buf.skip_space()
    if buf.peek() == "]":
        buf.pos += 1
    else:
        while True:
            while True:
                try:
                    item, end = decoder.raw_decode(buf.text, buf.pos)
                    break
                except json.JSONDecodeError as exc:
                    if not buf.more():  # the value may continue in the next chunk
                        raise ReplayInputError(f"{buf.where()}: invalid JSON ({exc.msg})") from None
                except RecursionError:
                    raise ReplayInputError(
                        f"{buf.where()}: JSON nested too deeply to be an AMI message"
                    ) from None
            where = buf.where()
            buf.pos = end
            event, why = _check_item(item)
            if why is not None:
                tally.damage(where, why)
            else:
                tally.good += 1
                if event is not None:
                    yield event
            buf.skip_space()
            char = buf.peek()
            buf.pos += 1
            if char == "]":
                break
            if char != ",":
                what = "the JSON array is cut short" if not char else "expected ',' or ']'"
                raise ReplayInputError(f"{where}: {what} after this event")
            buf.skip_space()
    buf.skip_space()
    if buf.peek():
        raise ReplayInputError(f"{buf.where()}: unexpected data after the end of the JSON array")
    tally.finish()


class _TextBuffer:
    """Decoded text of a byte stream, read on demand; tracks line numbers for messages."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self._line = 1  # line number of text[0]
        self._eof = False

    def more(self) -> bool:
        """Append the next chunk (dropping consumed text); False at end of stream."""
        if self._eof:
            return False
        self._line += self.text.count("\n", 0, self.pos)
        self.text = self.text[self.pos :]
        self.pos = 0
        chunk = next(self._chunks, None)
        try:
            if chunk is None:
                self._eof = True
                self.text += self._utf8.decode(b"", final=True)
            else:
                self.text += self._utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            raise ReplayInputError(f"{self.where()}: invalid UTF-8 ({exc.reason})") from None
        return True

    def skip_space(self) -> None:
        while True:
            match = _SPACE.match(self.text, self.pos)
            if match is not None:
                self.pos = match.end()
            if self.pos < len(self.text) or not self.more():
                return

    def peek(self) -> str:
        """Next character ("" at end of stream)."""
        while self.pos >= len(self.text):
            if not self.more():
                return ""
        return self.text[self.pos]

    def where(self) -> str:
        return f"line {self._line + self.text.count(chr(10), 0, self.pos)}"


def _json_lines(head: bytes, stream: BinaryIO, tally: _Tally) -> Iterator[Mapping[str, str]]:
    pending = b""
    number = 0
    overlong = False  # inside a line longer than a message may be: skipped to its end
    for chunk in _chunks(head, stream):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            number += 1
            if overlong:
                overlong = False
                continue
            event = _json_line(raw, number, tally)
            if event is not None:
                yield event
        if len(pending) > DEFAULT_MAX_MESSAGE:
            if not overlong:
                tally.damage(f"line {number + 1}", f"longer than {DEFAULT_MAX_MESSAGE} bytes")
            overlong, pending = True, b""
    if pending.strip() and not overlong:
        event = _json_line(pending, number + 1, tally)
        if event is not None:
            yield event
    tally.finish()


def _json_line(raw: bytes, number: int, tally: _Tally) -> Mapping[str, str] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        item = json.loads(raw)
    except UnicodeDecodeError as exc:
        why = f"invalid UTF-8 ({exc.reason})"
    except json.JSONDecodeError as exc:
        why = f"invalid JSON ({exc.msg})"
    except RecursionError:
        why = "JSON nested too deeply to be an AMI message"
    else:
        event, damage = _check_item(item)
        if damage is None:
            tally.good += 1
            return event
        why = damage
    tally.damage(f"line {number}", why)
    return None


_TERMINATOR = re.compile(rb"\n\r?\n")
_FOLLOWS = re.compile(rb"Response: Follows\r?\n")
_END_COMMAND = re.compile(rb"--END COMMAND--\r?\n\r?\n")
_NOT_AMI = (
    "byte 0: not a JSON array, JSON Lines or raw AMI capture "
    "(expected '[', '{', an 'Asterisk Call Manager/' banner or 'Header: value' lines)"
)


def _raw_ami(head: bytes, stream: BinaryIO, tally: _Tally) -> Iterator[Mapping[str, str]]:
    """Frame a raw capture at its blank lines (as the AMI codec does), knowing every
    message's byte offset, so that a damaged one is skipped and named exactly."""
    first_line = head.split(b"\n", 1)[0]
    if b":" not in first_line and not first_line.startswith(b"Asterisk Call Manager/"):
        raise ReplayInputError(_NOT_AMI)
    chunks = _chunks(head, stream)
    buf = next(chunks)
    base = 0  # stream offset of buf[0]
    pos = 0 if b":" in first_line else len(first_line) + 1  # past the banner
    searched = pos  # buf[:searched] holds no end of the message starting at pos
    skipping = False  # inside an oversized block: dropped up to its end
    eof = False
    while True:
        while not skipping and pos < len(buf) and (buf[pos] == 10 or buf[pos : pos + 2] == b"\r\n"):
            pos += 1  # blank lines between messages
        follows = not skipping and _FOLLOWS.match(buf, pos) is not None
        pattern = _END_COMMAND if follows else _TERMINATOR
        end = pattern.search(buf, max(pos, searched - 18))
        if end is not None:
            if skipping:
                skipping = False
            elif follows:  # a command reply is no event: nothing to read in it
                tally.good += 1
            else:
                raw = buf[pos : end.start()]
                message = Message(raw[:-1] if raw.endswith(b"\r") else raw)
                if message.is_event:
                    tally.good += 1
                    yield message
                elif message.is_response or "" not in message:
                    tally.good += 1
                else:
                    tally.damage(f"byte {base + pos}", "lines that are not 'Header: value' AMI")
            pos = searched = end.end()
            continue
        if not skipping and len(buf) - pos > DEFAULT_MAX_MESSAGE:
            tally.damage(f"byte {base + pos}", f"a message larger than {DEFAULT_MAX_MESSAGE} "
                         "bytes without an end (blank line)")  # fmt: skip
            skipping = True
        if skipping:  # keep only what a terminator split across chunks needs
            keep = max(pos, len(buf) - 2)
            base, buf, pos = base + keep, buf[keep:], 0
        searched = len(buf)
        if eof:
            break
        chunk = next(chunks, None)
        if chunk is None:
            eof = True
            continue
        base, buf, searched = base + pos, buf[pos:] + chunk, searched - pos
        pos = 0
    if not skipping and buf[pos:].strip():
        tally.damage(f"byte {base + pos}", "the capture ends inside an AMI message")
    tally.finish()
