"""One AMI message (event or response) as an immutable ``Mapping[str, str]``.

Why lazy: the event stream is the hot path and most consumers read two or three
headers of each event. A message keeps its raw bytes; a single lookup searches
those bytes for ``<LF>Name:`` and decodes only that value (or reuses the text of the
same bytes decoded for an earlier message: values repeat a lot). The full header
list is built (once, cached) only when something needs all of it.

Line grammar (both CRLF and bare LF accepted):
- ``Name: value`` -> header ``Name`` = ``value``. A colon without a following space
  (``Name:value``) is accepted too: one space after the colon is dropped if present.
- A line without any colon is not a header. It is kept, in order, under the empty
  name ``""`` (``msg.get_all("")``), so nothing the server sent is lost.
- Repeated headers (``ChanVariable``, ``Output``) are all kept; ``msg[name]`` is the
  first, ``msg.get_all(name)`` all of them.

Header names match ignoring ASCII case (``get``, ``in``, ``[]``, ``get_all``): Asterisk spells
them differently across versions and modules (``Uniqueid``/``UniqueID``, ``DestUniqueid``/
``DestUniqueID``, ``Linkedid``/``LinkedID``), and consumers should ask once, in one spelling.
A header spelled exactly as asked is found first (the hot path: one byte search); only when
there is none are the names compared folded. Names are kept as sent: ``headers``, iteration,
``raw`` and ``repr`` show the original spelling. ``HeaderDict`` gives a plain dict of headers
(a JSON recording's events) the same lookups.

Invalid UTF-8 is decoded with ``errors="replace"`` (U+FFFD): consumers print, log and
POST these strings, and lone surrogates would crash them later. ``msg.raw`` keeps
the exact bytes for anyone who needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, overload

_T = TypeVar("_T")
_ENCODING = "utf-8"
_ERRORS = "replace"

# name -> (b"Name:", b"\nName:", len(b"Name:"), b"\nname:" for a lookup ignoring ASCII case);
# bounded so arbitrary lookups cannot grow it forever. Names that cannot be header names are
# never stored.
_NEEDLES: dict[str, tuple[bytes, bytes, int, bytes]] = {}
_NEEDLES_MAX = 4096
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_name(name: str) -> str:
    """``name`` with its ASCII letters lowered: how header names compare (as ``bytes.lower``
    folds the raw bytes, so every lookup path agrees; other letters are left alone)."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def _needles(name: str) -> tuple[bytes, bytes, int, bytes] | None:
    found = _NEEDLES.get(name)  # pragma: no mutate (a cache: computing again gives the same)
    if found is not None:
        return found
    if not name or ":" in name or "\n" in name or "\r" in name:
        return None
    try:
        head = name.encode(_ENCODING, "surrogateescape") + b":"
    except UnicodeEncodeError:
        return None
    needles = (head, b"\n" + head, len(head), b"\n" + head.lower())
    if len(_NEEDLES) >= _NEEDLES_MAX:  # pragma: no mutate (the cache's bound: memory only)
        _NEEDLES.clear()  # pragma: no mutate
    _NEEDLES[name] = needles
    return needles


# Decoded header values, shared by all messages, keyed by the raw rest of the line after
# "Name:" (with its optional space and trailing CR, so a hit costs one slice and one dict
# lookup). Most values repeat (event names, channel states, a call's ids and caller name on
# every event of the call), and a hit costs about a quarter of decoding a Cyrillic value
# (timeit; bench/ami_ingest.py). Bounded: short lines only, cleared when full.
_TEXTS: dict[bytes, str] = {}
_TEXTS_MAX = 8192
_TEXT_CACHED_LEN = 128


def _decode(line_rest: bytes) -> str:
    """The value in the rest of a header line: one space after the colon dropped, the CR of
    a CRLF dropped, decoded; remembered for the next message (see ``_TEXTS``)."""
    value = line_rest[1:] if line_rest[:1] == b" " else line_rest
    text = value.rstrip(b"\r").decode(_ENCODING, _ERRORS)
    # The cache and its bounds: a miss decodes the same text (speed and memory only).
    if len(line_rest) <= _TEXT_CACHED_LEN:  # pragma: no mutate
        if len(_TEXTS) >= _TEXTS_MAX:  # pragma: no mutate
            _TEXTS.clear()  # pragma: no mutate
        _TEXTS[line_rest] = text  # pragma: no mutate (a None stored reads as a miss)
    return text


def _folded_start(raw: bytes, nl_folded: bytes) -> int | None:
    """Where the value of the first header named like ``nl_folded`` (``b"\\nname:"``) starts
    when ASCII case is ignored; None if there is none. Looked for only after an exact miss."""
    at = (b"\n" + raw.lower()).find(nl_folded)  # bytes.lower keeps every offset
    return None if at < 0 else at + len(nl_folded) - 1


def parse_header_lines(raw: bytes) -> list[tuple[str, str]]:
    """Split raw header bytes into (name, value) pairs following the module grammar."""
    pairs: list[tuple[str, str]] = []
    text = raw.decode(_ENCODING, _ERRORS)
    for line in text.split("\n"):
        line = line.rstrip("\r")
        colon = line.find(":")
        if colon < 0:
            if line:
                pairs.append(("", line))
            continue
        value = line[colon + 1 :]
        if value.startswith(" "):
            value = value[1:]
        pairs.append((line[:colon], value))
    return pairs


class Message(Mapping[str, str]):
    """An AMI message: ``msg["Event"]``, ``msg.get("Uniqueid")``, ``"Linkedid" in msg``."""

    # Only ``_raw`` is set at creation (the hot path); the others appear on demand.
    __slots__ = ("_body", "_headers", "_index", "_raw")

    _raw: bytes
    _body: tuple[str, ...]
    _headers: list[tuple[str, str]]
    _index: dict[str, str]

    def __init__(self, raw: bytes) -> None:
        """``raw``: header lines without the terminating blank line."""
        self._raw = raw

    # -- construction helpers -------------------------------------------------
    @classmethod
    def with_body(cls, raw: bytes, body: tuple[str, ...]) -> Message:
        """A ``Response: Follows`` command reply: headers plus raw output lines."""
        msg = cls(raw)
        msg._body = body
        return msg

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Message:
        """Build a message from header pairs (tests, recorded corpora, fake servers)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        lines = [f"{name}: {value}" for name, value in items]
        return cls("\r\n".join(lines).encode(_ENCODING, "surrogateescape"))

    # -- Mapping protocol -----------------------------------------------------
    # The lookups below are the hot path of the whole event pipeline, hence the
    # duplicated inline code in __getitem__ and get (a call costs as much as a search).
    def _find(self, name: str) -> str | None:
        """First value of ``name`` straight from the raw bytes (no full parse)."""
        try:
            head, nl_head, size, nl_folded = _NEEDLES[name]
        except KeyError:
            needles = _needles(name)
            if needles is None:
                return self._parsed_index().get(name) if name == "" else None
            head, nl_head, size, nl_folded = needles
        raw = self._raw
        if raw.startswith(head):
            start = size
        else:
            start = raw.find(nl_head) + 1
            if start:
                start += size
            else:
                folded = _folded_start(raw, nl_folded)
                if folded is None:
                    return None
                start = folded
        end = raw.find(b"\n", start)
        line_rest = raw[start:] if end == -1 else raw[start:end]
        text = _TEXTS.get(line_rest)  # pragma: no mutate (a miss decodes the same text)
        if text is None:
            return _decode(line_rest)
        return text

    def __getitem__(self, name: str) -> str:
        try:
            head, nl_head, size, nl_folded = _NEEDLES[name]
        except KeyError:
            value = self._find(name)
            if value is None:
                raise KeyError(name) from None
            return value
        raw = self._raw
        if raw.startswith(head):
            start = size
        else:
            start = raw.find(nl_head) + 1
            if start:
                start += size
            else:
                folded = _folded_start(raw, nl_folded)
                if folded is None:
                    raise KeyError(name)
                start = folded
        end = raw.find(b"\n", start)
        line_rest = raw[start:] if end == -1 else raw[start:end]
        text = _TEXTS.get(line_rest)  # pragma: no mutate (a miss decodes the same text)
        if text is None:
            return _decode(line_rest)
        return text

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: object = None, /) -> object:
        try:
            head, nl_head, size, nl_folded = _NEEDLES[name]
        except KeyError:
            value = self._find(name)
            return default if value is None else value
        raw = self._raw
        if raw.startswith(head):
            start = size
        else:
            start = raw.find(nl_head) + 1
            if start:
                start += size
            else:
                folded = _folded_start(raw, nl_folded)
                if folded is None:
                    return default
                start = folded
        end = raw.find(b"\n", start)
        line_rest = raw[start:] if end == -1 else raw[start:end]
        text = _TEXTS.get(line_rest)  # pragma: no mutate (a miss decodes the same text)
        if text is None:
            return _decode(line_rest)
        return text

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed_index())

    def __len__(self) -> int:
        return len(self._parsed_index())

    def __repr__(self) -> str:
        return f"Message({self.headers!r})"

    # -- full parse (cached) --------------------------------------------------
    def _parsed(self) -> list[tuple[str, str]]:
        try:
            return self._headers
        except AttributeError:
            self._headers = parse_header_lines(self._raw)
            return self._headers

    def _parsed_index(self) -> dict[str, str]:
        try:
            return self._index
        except AttributeError:
            index: dict[str, str] = {}
            for name, value in self._parsed():
                index.setdefault(name, value)
            self._index = index
            return index

    @property
    def headers(self) -> list[tuple[str, str]]:
        """All (name, value) pairs in the order sent, repeated names included."""
        return list(self._parsed())

    def get_all(self, name: str) -> list[str]:
        """Every value of a (possibly repeated) header, in order, whatever the case of each
        name; [] if absent."""
        folded = fold_name(name)
        return [value for key, value in self._parsed() if fold_name(key) == folded]

    # -- AMI conveniences -----------------------------------------------------
    @property
    def raw(self) -> bytes:
        """The header bytes as received (without the blank terminator line)."""
        raw = self._raw
        return raw[:-1] if raw.endswith(b"\r") else raw

    @property
    def name(self) -> str:
        """The value of ``Event`` (events) or ``Response`` (responses); "" otherwise."""
        value = self._find("Event")
        if value is None:
            value = self._find("Response")
        return value or ""

    @property
    def is_event(self) -> bool:
        return self._find("Event") is not None

    @property
    def is_response(self) -> bool:
        return self._find("Response") is not None

    @property
    def output(self) -> list[str]:
        """Command output lines: the ``Response: Follows`` body (Asterisk <= 13) or
        the ``Output:`` headers (Asterisk >= 14), whichever this reply used."""
        try:
            return list(self._body)
        except AttributeError:
            return self.get_all("Output")


class HeaderDict(dict[str, str]):
    """A plain dict of headers (a JSON recording's event, a snapshot entry with a stamp added)
    whose lookups match names as ``Message``'s do: the exact spelling first, else ignoring
    ASCII case. Still a dict: equal to one, dumped as one, keys as they were given."""

    __slots__ = ()

    def _folded(self, name: object) -> str | None:
        if not isinstance(name, str):
            return None
        folded = fold_name(name)
        for key, value in self.items():
            if fold_name(key) == folded:
                return value
        return None

    def __missing__(self, name: str) -> str:
        value = self._folded(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or self._folded(name) is not None

    @overload  # type: ignore[override]
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: object = None, /) -> object:
        value = dict.get(self, name)
        if value is None:
            value = self._folded(name)
        return default if value is None else value
