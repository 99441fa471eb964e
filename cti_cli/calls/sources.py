"""Recorded AMI traffic -> AMI events, whatever the recording format.

`read_events(stream)` sniffs the first bytes: `[` is a JSON array of event objects (the
cacofonisk corpus format; streamed, so large files are fine), `{` is JSON Lines, anything else
must be a raw AMI capture (banner and responses included, CRLF or LF), decoded with the project's
AMI codec and filtered to events. Garbage raises `ReplayInputError` naming a line or byte offset.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from cti_cli.ami.codec import AMIDecoder
from cti_cli.ami.errors import ProtocolError

_CHUNK = 1 << 16
_BOM = codecs.BOM_UTF8
_SPACE = re.compile(r"[ \t\r\n]*")


class ReplayInputError(ValueError):
    """The input is not a recording we can read; `str()` is one line naming where."""


def read_events(stream: BinaryIO) -> Iterator[Mapping[str, str]]:
    """Yield the AMI events recorded in `stream` (JSON array, JSON Lines or raw AMI bytes)."""
    head = stream.read(_CHUNK)
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    first = head.lstrip()[:1]
    if first == b"[":
        return _json_array(head, stream)
    if first == b"{":
        return _json_lines(head, stream)
    if not first:
        return iter(())
    return _raw_ami(head, stream)


def _chunks(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    if head:
        yield head
    while chunk := stream.read(_CHUNK):
        yield chunk


def _event_or_none(item: object, where: str) -> Mapping[str, str] | None:
    if not isinstance(item, dict):
        got = repr(item)[:40]
        raise ReplayInputError(f"{where}: expected a JSON object (one AMI message), got {got}")
    return item if "Event" in item else None


def _json_array(head: bytes, stream: BinaryIO) -> Iterator[Mapping[str, str]]:
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
            where = buf.where()
            buf.pos = end
            event = _event_or_none(item, where)
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


def _json_lines(head: bytes, stream: BinaryIO) -> Iterator[Mapping[str, str]]:
    pending = b""
    number = 0
    for chunk in _chunks(head, stream):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            number += 1
            event = _json_line(raw, number)
            if event is not None:
                yield event
    if pending.strip():
        event = _json_line(pending, number + 1)
        if event is not None:
            yield event


def _json_line(raw: bytes, number: int) -> Mapping[str, str] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        item = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ReplayInputError(f"line {number}: invalid UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ReplayInputError(f"line {number}: invalid JSON ({exc.msg})") from None
    return _event_or_none(item, f"line {number}")


def _raw_ami(head: bytes, stream: BinaryIO) -> Iterator[Mapping[str, str]]:
    first_line = head.split(b"\n", 1)[0]
    if b":" not in first_line and not first_line.startswith(b"Asterisk Call Manager/"):
        raise ReplayInputError(
            "byte 0: not a JSON array, JSON Lines or raw AMI capture "
            "(expected '[', '{', an 'Asterisk Call Manager/' banner or 'Header: value' lines)"
        )
    decoder = AMIDecoder()
    offset = 0
    for chunk in _chunks(head, stream):
        try:
            messages = decoder.feed(chunk)
        except ProtocolError as exc:
            raise ReplayInputError(f"near byte {offset}: {exc}") from None
        for message in messages:
            if message.is_event:
                yield message
            elif not message.is_response and "" in message:
                raise ReplayInputError(
                    f"near byte {offset}: a block of lines that are not 'Header: value' AMI"
                )
        offset += len(chunk)
    if decoder.buffered:
        raise ReplayInputError(
            f"byte {offset - decoder.buffered}: the capture ends inside an AMI message"
        )
