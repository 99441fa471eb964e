"""Java `.properties` files, read the way `java.util.Properties.load` reads them (but UTF-8).

The service desk keeps its database settings in `dbaccess.properties`; administrators edit it
with Java tools in mind, so comments, `=`/`:`/space separators, backslash escapes, `\\uXXXX`
and line continuations must all mean what they mean to Java.
"""

from __future__ import annotations

from pathlib import Path

from cti_cli.files import read_small

PROPERTIES_SIZE_LIMIT = 4 << 20
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_WHITESPACE = " \t\f"


class PropertiesError(Exception):
    """The file cannot be read or is not valid properties text; the message names the file."""


def read_properties(path: Path) -> dict[str, str]:
    """Key → value for every entry in the file; a later duplicate key wins, as in Java."""
    try:
        raw = read_small(path, PROPERTIES_SIZE_LIMIT)  # a FIFO or /dev/zero is refused
    except FileNotFoundError:
        raise PropertiesError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise PropertiesError(f"{path} is a folder, not a properties file") from None
    except OSError as exc:
        raise PropertiesError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PropertiesError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    try:
        return parse_properties(text)
    except ValueError as exc:
        raise PropertiesError(f"{path}: {exc}") from None


def parse_properties(text: str) -> dict[str, str]:
    """Parse properties text; raises ValueError (with the line number) on a bad `\\u` escape."""
    result: dict[str, str] = {}
    for number, logical in _logical_lines(text):
        key, value = _split_entry(logical)
        try:
            result[_unescape(key)] = _unescape(value)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return result


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continued lines (odd number of trailing backslashes), dropping comments and blanks."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        start = i
        line = lines[i].lstrip(_WHITESPACE)
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(_WHITESPACE)
            i += 1
        if _continues(line):  # a backslash on the very last line is dropped, as Java does
            line = line[:-1]
        out.append((start + 1, line))
    return out


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_entry(line: str) -> tuple[str, str]:
    """Key ends at the first unescaped `=`, `:` or whitespace; one `=`/`:` may follow spaces."""
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char in "=:" or char in _WHITESPACE:
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    return key, rest


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"malformed \\uXXXX escape {text[i : i + 6]!r}")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return _join_surrogates("".join(out))


def _join_surrogates(text: str) -> str:
    """`\\ud83d\\ude00` (how Java writes non-BMP characters) → one real character."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
