"""Sans-I/O AMI codec: bytes in -> ``Message`` objects out; actions -> bytes.

Framing is done on bytes (never on decoded text), so a UTF-8 character split
across two TCP reads is reassembled before anything is decoded. The hot path is a
single ``bytes.split(b"\\n\\r\\n")`` over each chunk when every blank line in it is
CRLF (what Asterisk sends; header lines may end in CRLF or LF); anything else (bare-LF
blank lines, old-style ``Response: Follows`` command replies) goes through a careful,
regex-based framer. Bytes already searched are never searched again on the next ``feed``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress
from operator import methodcaller, not_

from cti_cli.ami.errors import ActionError, ProtocolError
from cti_cli.ami.message import Message

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "AMIDecoder",
    "ActionError",
    "EventFilter",
    "ProtocolError",
    "encode_action",
    "merge_headers",
]

DEFAULT_MAX_MESSAGE = 1 << 20

_CRLF2 = b"\r\n\r\n"
_TERMINATOR = re.compile(rb"\n\r?\n")
# A bare-LF blank line. Searched with re, not `in`: for this 2-byte needle of a frequent byte
# the regex engine is ~40% faster than bytes.__contains__ (timeit on a 64 KiB read).
_BARE_LF_END = re.compile(rb"\n\n")
_BANNER_PREFIX = b"Asterisk Call Manager/"
_FOLLOWS = re.compile(rb"Response: Follows\r?\n")
_END_COMMAND = re.compile(rb"--END COMMAND--\r?\n\r?\n")
_END_COMMAND_LEN = len(b"--END COMMAND--\r\n\r\n")
# Headers Asterisk puts before the raw body of a "Response: Follows" reply.
_FOLLOWS_HEADERS = (b"Response:", b"ActionID:", b"Privilege:", b"Message:")


# The name of an event whose first line is exactly "Event: <name>" and its line end; None for
# anything else (a response, another spelling), which a filter always keeps.
_EVENT_NAME = re.compile(rb"(?:Event: ([^\r\n]*)\r?(?:\n|\Z))?")
_NAME_OF = methodcaller("group", 1)


class EventFilter:
    """The events a consumer acts on, by name; the decoder drops every other event as it
    frames it, before it becomes a ``Message`` (counted by name in ``skipped``).

    Why: on a busy PBX two thirds of the stream is events no call logic reads (``VarSet``,
    ``Newexten``, ``DeviceStateChange``…), and turning each into a message and looking at it
    costs more than everything the agent does with the rest. Nothing per message runs in
    Python: one regex match, a set lookup and the counting are C loops over the batch. Only
    a message that starts exactly ``Event: <name>`` followed by its line end, with a name not
    listed, is dropped: anything spelled otherwise, and every response, still comes through.
    """

    def __init__(self, names: Iterable[str], skipped: Counter[bytes] | None = None) -> None:
        self.names = frozenset(names)
        self._wanted = frozenset([None, *(name.encode() for name in self.names)]).__contains__
        self.skipped: Counter[bytes] = Counter() if skipped is None else skipped

    def apply(self, parts: list[bytes]) -> list[bytes]:
        """The raw messages to keep, in order; the others counted."""
        names = list(map(_NAME_OF, map(_EVENT_NAME.match, parts)))
        keep = list(map(self._wanted, names))
        kept = list(compress(parts, keep))
        if len(kept) != len(parts):
            self.skipped.update(compress(names, map(not_, keep)))
        return kept


class AMIDecoder:
    """Turns a stream of AMI bytes into messages: ``msgs = decoder.feed(data)``.

    ``max_message`` bounds one message (and the banner line); a longer one raises
    ``ProtocolError`` instead of buffering without limit — after the complete messages
    before it (its neighbours in the same read) have been returned. After a
    ``ProtocolError`` the stream is out of sync: close the connection.
    """

    _searched: int  # bytes of _pending known to hold no message end (set whenever it fills)

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE, *, expect_banner: bool = True):
        self.max_message = max_message
        self.banner: str | None = None
        self.ami_version: str | None = None
        self._in_banner = expect_banner
        self._pending = bytearray()
        #: False when the messages of the last ``feed`` are certainly all events (no
        #: "Response:" line anywhere): lets the client skip per-message routing.
        self.responses_seen = True
        self._error: ProtocolError | None = None
        #: When set, events it does not list are dropped as they are framed (the protocol
        #: sets it only while no action waits for a reply: list events are never dropped).
        self.event_filter: EventFilter | None = None

    # -- public ---------------------------------------------------------------
    @property
    def greeting_done(self) -> bool:
        """True once the first line (banner or not) has been handled."""
        return not self._in_banner

    @property
    def error(self) -> ProtocolError | None:
        """The protocol error that ended this stream, if any (the next feed raises it)."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message they complete (possibly none).

        Messages completed before a protocol error are returned first; the error is
        raised by this call if nothing was completed, else by the next one.
        """
        if self._error is not None:
            raise self._error
        msgs = self._feed(data) if data else []
        if self._error is not None and not msgs:
            raise self._error
        return msgs

    def _feed(self, data: bytes) -> list[Message]:
        if self._pending:
            pending = self._pending
            pending += data
            if not self._has_end(pending):
                self._searched = len(pending)
                if self._too_big(len(pending), ended=False):
                    pending.clear()
                return []
            buf = bytes(pending)
            pending.clear()
        else:
            buf = bytes(data)
        if self._in_banner:
            buf = self._take_banner(buf)
            if not buf:
                return []
        # Fast path needs: every message end is "<LF><CR><LF>" (CRLF or LF lines, CRLF
        # blank line) and no Follows reply. Else: the careful framer.
        if _BARE_LF_END.search(buf) is not None:
            self.responses_seen = True
            return self._split_careful(buf)
        if buf.startswith(b"Response:") or b"\nResponse:" in buf:
            self.responses_seen = True
            if b"Response: Follows" in buf:
                return self._split_careful(buf)
        else:
            self.responses_seen = False
        return self._split_fast(buf)

    # -- internals ------------------------------------------------------------
    def _oversize(self, size: int, *, ended: bool) -> ProtocolError:
        limit = self.max_message
        what = (
            f"an AMI message of {size} bytes (ended), larger than {limit} bytes"
            if ended
            else f"an AMI message larger than {limit} bytes without its end (blank line)"
        )
        return ProtocolError(f"{what}; the peer is not speaking AMI or the stream is corrupt")

    def _too_big(self, size: int, *, ended: bool) -> bool:
        """Past the limit: remember the error (raised once the neighbours are delivered)."""
        if size <= self.max_message:
            return False
        if self._error is None:
            self._error = self._oversize(size, ended=ended)
        return True

    def _has_end(self, pending: bytearray) -> bool:
        if self._in_banner:
            return b"\n" in pending[self._searched :]
        if _FOLLOWS.match(pending):
            start = max(0, self._searched - _END_COMMAND_LEN)
            return _END_COMMAND.search(pending, start) is not None
        return _TERMINATOR.search(pending, max(0, self._searched - 2)) is not None

    def _keep(self, tail: bytes) -> None:
        if self._too_big(len(tail), ended=False):
            return
        self._pending += tail
        self._searched = len(tail)

    def _take_banner(self, buf: bytes) -> bytes:
        """Consume the greeting line; return what follows it."""
        end = buf.find(b"\n")
        if end < 0:
            self._keep(buf)
            return b""
        line = buf[:end]
        self._in_banner = False
        if b":" in line:  # no banner: the first line already belongs to a message
            return buf
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._too_big(len(line), ended=True):
            return b""
        self.banner = line.decode("utf-8", "replace")
        if line.startswith(_BANNER_PREFIX):
            version = line[len(_BANNER_PREFIX) :].split()
            self.ami_version = version[0].decode("ascii", "replace") if version else None
        return buf[end + 1 :]

    def _split_fast(self, buf: bytes) -> list[Message]:
        parts = buf.split(b"\n\r\n")
        tail = parts.pop()
        if len(buf) > self.max_message:  # pragma: no mutate (a shortcut: no part is longer)
            for i, part in enumerate(parts):
                # its size as the careful framer counts it: without the CR of its last line
                if self._too_big(len(part) - part.endswith(b"\r"), ended=True):
                    parts, tail = parts[:i], b""  # the neighbours before it still count
                    break
        if tail:
            self._keep(tail)
        if b"" in parts or b"\r" in parts:  # stray blank lines between messages
            parts = [p for p in parts if p.strip(b"\r\n")]
        if self.event_filter is not None:
            parts = self.event_filter.apply(parts)
        return list(map(Message, parts))

    def _split_careful(self, buf: bytes) -> list[Message]:
        """General framer: bare LF, mixed line ends, ``Response: Follows`` bodies."""
        msgs: list[Message] = []
        pos = 0
        size = len(buf)
        while True:  # until no message ends (at the end of `buf` nothing matches)
            # skip empty lines between messages
            while pos < size and buf[pos] in (10, 13):
                if buf[pos] == 13 and (pos + 1 >= size or buf[pos + 1] != 10):
                    break
                pos += 1
            if _FOLLOWS.match(buf, pos):
                end = _END_COMMAND.search(buf, pos)
                if end is None:
                    break
                if self._too_big(end.start() - pos, ended=True):
                    return msgs
                msgs.append(_follows_message(buf[pos : end.start()]))
                pos = end.end()
                continue
            term = _TERMINATOR.search(buf, pos)
            if term is None:
                break
            raw = buf[pos : term.start()]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if self._too_big(len(raw), ended=True):
                return msgs
            msgs.append(Message(raw))
            pos = term.end()
        tail = buf[pos:]
        if tail:
            self._keep(tail)
        return msgs


def _follows_message(block: bytes) -> Message:
    """Split an old-style command reply into its header lines and raw body lines."""
    lines = block.split(b"\n")
    n_head = 0
    for line in lines:
        if not line.startswith(_FOLLOWS_HEADERS):
            break
        n_head += 1
    head = b"\n".join(lines[:n_head]).rstrip(b"\r")
    body_lines = [line[:-1] if line.endswith(b"\r") else line for line in lines[n_head:]]
    if body_lines and body_lines[-1] == b"":
        body_lines.pop()  # the newline that ended the last output line
    body = tuple(line.decode("utf-8", "replace") for line in body_lines)
    return Message.with_body(head, body)


HeaderValue = str | int | Sequence[str | int]
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, str | int]]


def merge_headers(
    headers: Headers | None, extra: Mapping[str, HeaderValue] | None = None
) -> list[tuple[str, str | int]]:
    """Flatten headers (mapping with str or sequence values, or pairs) plus ``extra``."""
    pairs: list[tuple[str, str | int]] = []
    for group in (headers, extra):
        if group is None:
            continue
        if isinstance(group, Mapping):
            for key, value in group.items():
                if isinstance(value, (str, int)):
                    pairs.append((key, value))
                else:
                    pairs.extend((key, item) for item in value)
        else:
            pairs.extend(group)
    return pairs


def _check(name: str, text: str, what: str) -> None:
    if "\r" in text or "\n" in text:
        raise ActionError(
            f"AMI header {name!r}: {what} contains a line break (CR/LF), "
            "which would inject extra AMI headers; remove it"
        )


def encode_action(name: str, headers: Headers | None = None, action_id: str | None = None) -> bytes:
    """Serialize one action. A sequence value repeats the header (e.g. ``Variable``).

    Raises ``ActionError`` (a ``ValueError``) naming the header if any name or value
    contains CR or LF, or a header name is empty or contains a colon.
    """
    _check("Action", name, "the action name")
    lines = [f"Action: {name}"]
    if action_id is not None:
        _check("ActionID", action_id, "the value")
        lines.append(f"ActionID: {action_id}")
    for key, value in merge_headers(headers):
        if not key or ":" in key:
            raise ActionError(f"AMI header name {key!r} is empty or contains ':'; use a plain name")
        _check(key, key, "the name")
        text = str(value)
        _check(key, text, "the value")
        lines.append(f"{key}: {text}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")
