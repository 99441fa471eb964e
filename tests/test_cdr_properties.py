"""dbaccess.properties is Java properties syntax: what Java's Properties.load would read."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_cli.cdr.dbaccess import DbAccessError, read_dbaccess
from cti_cli.cdr.properties import PropertiesError, parse_properties, read_properties


def test_separators_comments_and_whitespace() -> None:
    text = (
        "# comment\n"
        "! also a comment\n"
        "   \n"
        "a=1\n"
        "b : 2\n"
        "c 3\n"
        "  d\t=\t4  \n"
        "e=\n"
        "f\n"
        "g==x\n"
        "url=jdbc:mysql://h:3306/db?a=b\n"
    )
    assert parse_properties(text) == {
        "a": "1", "b": "2", "c": "3", "d": "4  ", "e": "", "f": "", "g": "=x",
        "url": "jdbc:mysql://h:3306/db?a=b",
    }  # fmt: skip


def test_escapes_and_continuations() -> None:
    text = (
        "key\\ with\\:colon\\=eq = value\\twith tab\n"
        "uni=\\u041f\\u0430\\u0440\\u043e\\u043b\\u044c\n"
        "emoji=\\ud83d\\ude00\n"
        "long = one, \\\n"
        "       two, \\\n"
        "       three\n"
        "backslash=C:\\\\dir\\\\\n"
        "odd=x\\q\n"
    )
    props = parse_properties(text)
    assert props["key with:colon=eq"] == "value\twith tab"
    assert props["uni"] == "Пароль"
    assert props["emoji"] == "😀"
    assert props["long"] == "one, two, three"
    assert props["backslash"] == "C:\\dir\\"
    assert props["odd"] == "xq"


def test_crlf_utf8_bom_and_later_duplicates_win(tmp_path: Path) -> None:
    path = tmp_path / "dbaccess.properties"
    path.write_bytes("\ufeffa=1\r\nпароль=секрет\r\na=2\r\n".encode())
    assert read_properties(path) == {"a": "2", "пароль": "секрет"}


def test_bad_unicode_escape_names_the_line() -> None:
    with pytest.raises(ValueError, match=r"line 2: malformed \\uXXXX escape"):
        parse_properties("a=1\nb=\\u12G4\n")


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(PropertiesError, match="does not exist"):
        read_properties(tmp_path / "nope.properties")
    (tmp_path / "latin1.properties").write_bytes(b"a=\xe9\n")
    with pytest.raises(PropertiesError, match="not UTF-8"):
        read_properties(tmp_path / "latin1.properties")
    with pytest.raises(DbAccessError, match="is a folder"):
        read_dbaccess(tmp_path)


def java_store(key: str, value: str) -> str:
    """How java.util.Properties.store escapes an entry (UTF-8 variant: no \\u for non-ASCII)."""

    def esc(text: str, is_key: bool) -> str:
        out = []
        for i, c in enumerate(text):
            if c == " " and (is_key or i == 0):
                out.append("\\ ")
            elif c in "\\=:#!":
                out.append("\\" + c)
            elif c in "\t\n\r\f":
                out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
            else:
                out.append(c)
        return "".join(out)

    return f"{esc(key, True)}={esc(value, False)}\n"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(key=_text.filter(bool), value=_text)
def test_anything_java_stores_reads_back(key: str, value: str) -> None:
    assert parse_properties("# stored\n" + java_store(key, value)) == {key: value}
