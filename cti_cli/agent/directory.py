"""The employee directory: the caller's employee card, found by the caller's phone number.

The incoming-call rule runs in a worker thread and calls ``cti.find_employee(number)``, which
asks a :class:`Directory`. So lookups are synchronous and thread-safe, and never touch the
asyncio loop. Two sources, chosen by ``directory.source`` (:func:`open_directory`):

``csv:/path/employees.csv`` — :class:`CsvDirectory`
    UTF-8 (a BOM is fine), ``;``, ``,`` or tab separated (whichever makes the header row name
    the required columns), header row with ``id``, ``name`` and ``phone`` in any letter case.
    A card is the whole row: ``id``, ``name``, ``phone`` under those lower-case keys, every
    other column under its header name as written (surrounding spaces removed; columns with an
    empty header are dropped), cell values exactly as in the file. A ``phone`` cell may list
    several numbers separated by commas, semicolons, slashes or line breaks
    (``8 (916) 123-45-67; +7 495 123-45-67``); each is indexed. A row none of whose numbers
    normalizes (internal extension only, empty, text) is skipped; a number that two rows share
    belongs to the first row. Both are counted, and described in :attr:`CsvDirectory.warnings`.
    The file is checked at most once a second on lookup (device, inode, size, mtime, ctime) and
    reloaded when it changed; a reload that fails keeps the previous index and sets
    :attr:`CsvDirectory.last_error`. Only regular files up to 64 MiB are read.

``http(s)://…`` URL template — :class:`HttpDirectory`
    ``{e164}`` (``+79161234567``), ``{digits}`` (``79161234567``) and ``{number}`` (as the PBX
    sent it) are replaced, URL-encoded. One GET, TLS verified, no redirects followed (the
    ``Authorization`` header stays with the configured host), ``User-Agent: cti/<version>``
    plus ``directory.headers``, where ``{file:/path}`` is replaced by that file's content,
    stripped — read again for every request, so a rotated token is picked up. 200 with a JSON
    object is the card, with a list its first element (none when empty); 404 or ``null`` is no
    employee; anything else is a :class:`DirectoryError`. Answers, "no employee" included, are
    cached per E.164 number for ``cache_ttl`` seconds; simultaneous lookups of one number share
    one request (several operators' phones ring for one call).

Numbers are compared as E.164 (:func:`normalize_number`); a number that does not normalize
(an internal extension, ``anonymous``) finds nobody, without reading the file or the network.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import stat
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from cti_cli import __version__
from cti_cli.agent.numbers import normalize_number, supported_region
from cti_cli.config import DirectoryConfig
from cti_cli.textsafe import whole_json

__all__ = [
    "CsvDirectory",
    "Directory",
    "DirectoryError",
    "HttpDirectory",
    "normalize_number",
    "open_directory",
]

USER_AGENT = f"cti/{__version__}"
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_TOKEN_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024
RELOAD_CHECK_INTERVAL = 1.0
MAX_CACHED_NUMBERS = 10_000
MAX_WARNINGS = 50
REQUIRED_COLUMNS = ("id", "name", "phone")
DELIMITERS = (";", ",", "\t")  # in order of preference when they tie
PLACEHOLDERS = ("e164", "number", "digits")

_PHONE_SEPARATORS = re.compile(r"[,;/\r\n]")
_FILE_REFERENCE = re.compile(r"\{file:([^{}]+)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

Card = dict[str, Any]


class DirectoryError(Exception):
    """A directory problem, one line for the user: names the file or URL and the fix.

    It never carries a header value: tokens are named by the file they come from.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Directory(Protocol):
    def find(self, number: str) -> dict[str, Any] | None:
        """The employee card for ``number`` as the PBX sent it, or ``None``."""
        ...

    def describe(self) -> str:
        """What this directory is, for logs and ``cti show``, e.g. ``csv:/path (412 employees)``."""
        ...


def open_directory(config: DirectoryConfig) -> Directory | None:
    """The directory ``config.source`` names; ``None`` when it is not set.

    Raises :class:`DirectoryError` when the source cannot be used (file missing or broken,
    bad URL template, unreadable token file, unknown region).
    """
    source = (config.source or "").strip()
    if not source:
        return None
    if source.startswith("csv:"):
        raw = source.removeprefix("csv:").strip()
        if not raw:
            raise DirectoryError(
                'directory.source "csv:" names no file; write "csv:/path/employees.csv"'
            )
        return CsvDirectory(Path(raw).expanduser(), config.region)
    if source.startswith(("http://", "https://")):
        return HttpDirectory(
            source,
            config.region,
            dict(config.headers),
            config.cache_ttl,
            config.timeout,
        )
    raise DirectoryError(
        'directory.source must be "csv:/path/employees.csv" or an http(s):// URL template'
    )


def _check_region(region: str) -> None:
    if not supported_region(region):
        raise DirectoryError(
            f'directory.region "{region}" is not a country code the phone number library '
            'knows; use a two-letter code like "RU"'
        )


# ---------------------------------------------------------------- reading files safely

Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _read_regular_file(path: Path, limit: int, fix: str) -> tuple[bytes, Signature]:
    """The bytes of a regular file of at most ``limit`` bytes, and its signature.

    FIFOs, devices and directories are refused before they are read (a FIFO is opened
    non-blocking, so a missing writer cannot hang the caller); ``fix`` ends every message.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DirectoryError(f"{path}: no such file; {fix}") from None
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror}; {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DirectoryError(f"{path}: is {_file_kind(st.st_mode)}, not a regular file; {fix}")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror}; {fix}") from None
    try:
        st = os.fstat(fd)  # the file actually opened: it may have been replaced since
        if not stat.S_ISREG(st.st_mode):
            raise DirectoryError(f"{path}: is {_file_kind(st.st_mode)}, not a regular file; {fix}")
        too_big = DirectoryError(f"{path}: larger than {_size(limit)}; {fix}")
        if st.st_size > limit:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            except OSError as exc:
                raise DirectoryError(f"{path}: cannot read: {exc.strerror}; {fix}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise too_big
        return b"".join(chunks), _signature(st)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- CSV


@dataclass
class _Index:
    by_number: dict[str, Card] = field(default_factory=dict)
    employees: int = 0
    skipped: int = 0
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, line: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(line)

    def summary(self) -> str:
        parts = [f"{self.employees} employee{'' if self.employees == 1 else 's'}"]
        if self.skipped:
            parts.append(f"{self.skipped} without a phone number skipped")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate numbers ignored, the first kept")
        return ", ".join(parts)


_CSV_FIX = "directory.source must name a UTF-8 CSV file with columns id, name, phone"


def _short(value: str, limit: int = 40) -> str:
    text = " ".join(value.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _pick_delimiter(text: str) -> str:
    """The delimiter that makes the first row name most required columns (then most columns)."""

    def score(delimiter: str) -> tuple[int, int]:
        try:
            header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        except csv.Error:
            return (-1, 0)
        names = {cell.strip().lower() for cell in header}
        return (sum(col in names for col in REQUIRED_COLUMNS), len(header))

    return max(DELIMITERS, key=score)  # max keeps the first of equals: DELIMITERS order


def _parse_csv(path: Path, data: bytes, region: str) -> _Index:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DirectoryError(
            f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8 (Excel: Save As → CSV UTF-8)"
        ) from None
    if not text.strip():
        raise DirectoryError(f"{path}: empty; the first line must name the columns id, name, phone")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_pick_delimiter(text))
    try:
        header = next(reader)
        columns: list[tuple[int, str]] = []  # (cell index, card key)
        seen: set[str] = set()
        for position, cell in enumerate(header):
            name = cell.strip()
            if not name:
                continue
            lowered = name.lower()
            if lowered in seen:
                raise DirectoryError(
                    f"{path}: column {name!r} appears twice in the header; rename one"
                )
            seen.add(lowered)
            columns.append((position, lowered if lowered in REQUIRED_COLUMNS else name))
        for required in REQUIRED_COLUMNS:
            if required not in seen:
                shown = ", ".join(cell.strip() for cell in header if cell.strip())[:200]
                raise DirectoryError(
                    f"{path}: no {required!r} column (the header has: {shown or 'nothing'}); "
                    "the first line must name the columns id, name, phone"
                )
        index = _Index()
        first_line: dict[str, tuple[int, str]] = {}  # number → (line, id) of its owner
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            card: Card = {key: row[i] if i < len(row) else "" for i, key in columns}
            numbers: list[str] = []
            for part in _PHONE_SEPARATORS.split(card["phone"]):
                number = normalize_number(part, region)
                if number is not None and number not in numbers:
                    numbers.append(number)
            if not numbers:
                index.skipped += 1
                index.warn(f"line {start}: phone {_short(card['phone'])} is not a phone number")
                continue
            owns = False
            for number in numbers:
                owner = first_line.get(number)
                if owner is not None:
                    index.duplicates += 1
                    index.warn(
                        f"line {start}: {number} is already employee id {_short(owner[1])} "
                        f"(line {owner[0]}); the first is kept"
                    )
                    continue
                first_line[number] = (start, card["id"])
                index.by_number[number] = card
                owns = True
            index.employees += owns  # a row whose numbers all belong to others finds nobody
    except csv.Error as exc:
        raise DirectoryError(f"{path}: line {reader.line_num}: bad CSV: {exc}") from None
    except StopIteration:  # pragma: no cover - text.strip() is non-empty, so a header exists
        raise DirectoryError(f"{path}: no header row") from None
    hidden = index.skipped + index.duplicates - len(index.warnings)
    if hidden > 0:
        index.warnings.append(f"… and {hidden} more")
    return index


class CsvDirectory:
    """Employees from a CSV file, indexed by E.164 number, reloaded when the file changes."""

    def __init__(
        self,
        path: Path,
        region: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = RELOAD_CHECK_INTERVAL,
        max_bytes: int = MAX_CSV_BYTES,
    ) -> None:
        _check_region(region)
        self.path = Path(path)
        self.region = region
        self._clock = clock
        self._check_interval = check_interval
        self._max_bytes = max_bytes
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None
        """Why the last reload failed (the previous index is still used); None when it worked."""
        self._index, self._seen = self._load()
        self._checked = clock()

    def _load(self) -> tuple[_Index, Signature | None]:
        data, signature = _read_regular_file(self.path, self._max_bytes, _CSV_FIX)
        return _parse_csv(self.path, data, self.region), signature

    @property
    def employees(self) -> int:
        return self._index.employees

    @property
    def warnings(self) -> list[str]:
        """Rows skipped and numbers shared, one line each (the first few), from the last load."""
        return list(self._index.warnings)

    def find(self, number: str) -> dict[str, Any] | None:
        key = normalize_number(number, self.region)
        if key is None:
            return None
        self._maybe_reload()
        card = self._index.by_number.get(key)
        return dict(card) if card is not None else None

    def describe(self) -> str:
        text = f"csv:{self.path} ({self._index.summary()})"
        if self.last_error:
            text += f"; reload failed, the previous version is in use: {self.last_error}"
        return text

    def _maybe_reload(self) -> None:
        if self._clock() - self._checked < self._check_interval:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is checking: use the index we have
        try:
            now = self._clock()
            if now - self._checked < self._check_interval:
                return
            self._checked = now
            try:
                current: Signature | None = _signature(os.stat(self.path))
            except OSError:
                current = None
            if current == self._seen:
                return  # unchanged, or the same broken version that already failed
            self._seen = current
            try:
                index, loaded = self._load()
            except DirectoryError as exc:
                self.last_error = str(exc)
                return
            self._index, self._seen, self.last_error = index, loaded, None
        finally:
            self._reload_lock.release()


# ---------------------------------------------------------------- HTTP


def _display_url(template: str) -> str:
    """The template without credentials or query: safe for messages and logs."""
    parts = urlsplit(template)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


def _template_fields(template: str) -> set[str]:
    shown = _display_url(template)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        raise DirectoryError(
            f"directory.source {shown}: unbalanced {{ or }}; write {{{{ and }}}} for literal braces"
        ) from None
    fields: set[str] = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise DirectoryError(
                f"directory.source {shown}: unknown placeholder {{{name}}}; "
                "use {e164}, {digits} or {number}"
            )
        fields.add(name)
    if not fields:
        raise DirectoryError(
            f"directory.source {shown}: no {{e164}}, {{digits}} or {{number}} placeholder, "
            "so every caller would get the same answer"
        )
    if not urlsplit(template).hostname:
        raise DirectoryError(f"directory.source {shown}: no host in the URL")
    return fields


def _read_token(header: str, path_text: str) -> str:
    path = Path(path_text.strip()).expanduser()
    fix = f"directory.headers.{header} reads it with {{file:{path}}}"
    data, _ = _read_regular_file(path, MAX_TOKEN_BYTES, fix)
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DirectoryError(f"{path}: not UTF-8 text; {fix}") from None
    if not token:
        raise DirectoryError(f"{path}: empty; put the token in it ({fix})")
    if any(c in token for c in "\r\n\0"):
        raise DirectoryError(f"{path}: more than one line; keep only the token in it ({fix})")
    return token


def _resolve_headers(headers: Mapping[str, str]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise DirectoryError(f"directory.headers: {name!r} is not a valid HTTP header name")

        def token(match: re.Match[str], header: str = name) -> str:
            return _read_token(header, match.group(1))

        text = _FILE_REFERENCE.sub(token, value)
        if any(c in text for c in "\r\n\0"):
            raise DirectoryError(f"directory.headers.{name}: the value must be one line")
        try:
            text.encode("ascii")
        except UnicodeEncodeError:
            raise DirectoryError(
                f"directory.headers.{name}: the value must be ASCII (HTTP headers cannot hold "
                "Cyrillic); check it and the files it reads"
            ) from None
        resolved[name] = text
    return resolved


@dataclass
class _Flight:
    """One request in progress; lookups of the same number wait for it instead of repeating it."""

    done: threading.Event = field(default_factory=threading.Event)
    card: Card | None = None
    error: str | None = None


class HttpDirectory:
    """Employees from the service desk's HTTP API, one GET per number, answers cached."""

    def __init__(
        self,
        template: str,
        region: str,
        headers: dict[str, str],
        cache_ttl: float,
        timeout: float,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_region(region)
        if not template.startswith(("http://", "https://")):
            raise DirectoryError("directory.source must be an http:// or https:// URL template")
        _template_fields(template)
        self.region = region
        self._template = template
        self._display = _display_url(template)
        self._headers = dict(headers)
        _resolve_headers(self._headers)  # a missing token file is a start-up error
        self._cache_ttl = cache_ttl
        self._timeout = timeout
        self._clock = clock
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout), verify=True, follow_redirects=False
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Card | None]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def describe(self) -> str:
        with self._lock:
            cached = len(self._cache)
        return f"{self._display} (cache {self._cache_ttl:g} s, {cached} numbers cached)"

    def close(self) -> None:
        """Close the HTTP client, unless it was given to us."""
        if self._owns_client:
            self._client.close()

    def find(self, number: str) -> dict[str, Any] | None:
        e164 = normalize_number(number, self.region)
        if e164 is None:
            return None
        with self._lock:
            hit = self._cache.get(e164)
            if hit is not None:
                if hit[0] > self._clock():
                    self._cache.move_to_end(e164)
                    return copy.deepcopy(hit[1])
                del self._cache[e164]
            flight = self._flights.get(e164)
            leader = flight is None
            if flight is None:
                flight = self._flights[e164] = _Flight()
        if not leader:
            if not flight.done.wait(self._timeout * 2 + 1):
                raise DirectoryError(
                    f"{self._display}: no answer within {self._timeout:g} s (directory.timeout); "
                    "check the service desk is reachable"
                )
            if flight.error is not None:
                raise DirectoryError(flight.error)
            return copy.deepcopy(flight.card)
        try:
            flight.card = self._fetch(number, e164)
        except DirectoryError as exc:
            flight.error = str(exc)
            raise
        except BaseException:
            flight.error = f"{self._display}: the lookup failed"
            raise
        finally:
            with self._lock:
                if flight.error is None and self._cache_ttl > 0:
                    self._cache[e164] = (self._clock() + self._cache_ttl, flight.card)
                    while len(self._cache) > MAX_CACHED_NUMBERS:
                        self._cache.popitem(last=False)
                del self._flights[e164]
            flight.done.set()
        return copy.deepcopy(flight.card)

    def _url(self, raw: str, e164: str) -> str:
        return self._template.format(
            e164=quote(e164, safe=""),
            digits=quote(e164.removeprefix("+"), safe=""),
            number=quote(raw, safe=""),
        )

    def _fetch(self, raw: str, e164: str) -> Card | None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        headers.update(_resolve_headers(self._headers))
        shown = self._display
        deadline = time.monotonic() + self._timeout
        too_slow = DirectoryError(
            f"{shown}: no answer within {self._timeout:g} s (directory.timeout); "
            "check the service desk is up, or raise directory.timeout"
        )
        try:
            with self._client.stream(
                "GET", self._url(raw, e164), headers=headers, timeout=self._timeout
            ) as response:
                status = response.status_code
                if status == 404:
                    return None
                if status != 200:
                    raise DirectoryError(f"{shown}: {_status_problem(response)}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise DirectoryError(
                            f"{shown}: the answer is larger than "
                            f"{_size(MAX_RESPONSE_BYTES)}; the URL must return one employee"
                        )
                    if time.monotonic() > deadline:
                        raise too_slow
        except httpx.TimeoutException:
            raise too_slow from None
        except httpx.ConnectError as exc:
            raise DirectoryError(f"{shown}: cannot connect: {exc}") from None
        except httpx.HTTPError as exc:
            raise DirectoryError(f"{shown}: {type(exc).__name__}: {exc}") from None
        except httpx.InvalidURL:
            raise DirectoryError(
                f"directory.source {shown}: the URL is invalid for number {raw!r}"
            ) from None
        return _card_from_json(shown, bytes(body))


def _status_problem(response: httpx.Response) -> str:
    status = response.status_code
    what = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status in (401, 403):
        return f"{what}; check the token in directory.headers"
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        target = f" to {_display_url(location)}" if "://" in location else ""
        return f"{what}, a redirect{target}; put the final URL in directory.source"
    if status >= 500:
        return f"{what}; the service desk failed, see its log"
    return f"{what}; expected 200 with the employee as JSON, or 404"


def _card_from_json(shown: str, body: bytes) -> Card | None:
    try:
        value = whole_json(json.loads(body))  # a half character is no reason to fail a pop
    except (ValueError, RecursionError):
        raise DirectoryError(
            f"{shown}: HTTP 200 but the answer is not JSON; "
            "the URL must return the employee as a JSON object"
        ) from None
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DirectoryError(
            f"{shown}: HTTP 200 but the answer is JSON {type(value).__name__}, not an object; "
            "the URL must return the employee as a JSON object (or a list of them)"
        )
    return value
