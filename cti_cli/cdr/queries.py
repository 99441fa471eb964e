"""The SELECTs `cti recordings` and `cti calls` run against the CDR table.

The user's input only ever reaches SQL as a bound parameter; identifiers come from the
validated config and are backquoted (`CdrTable.sql_name`). Only columns the table has are
selected, so older schemas work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymysql.connections import Connection

from cti_cli.calls.naming import ExtensionMatcher
from cti_cli.cdr.database import CdrDbError, CdrTable
from cti_cli.cdr.numbers import like_pattern, same_number

# Asterisk's uniqueid: `<epoch>.<sequence>`, optionally prefixed by `systemname-`.
_UNIQUEID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._]*(?:-[A-Za-z0-9._]+)*-)?\d{9,11}\.\d{1,10}")
UNIQUEID_MAX = 150  # AST_MAX_UNIQUEID
UNIQUEID_HELP = (
    "a uniqueid looks like 1795641007.0 (epoch seconds, a dot, a counter), "
    "or host-1529936170.42 with the PBX's system name in front"
)

ROW_COLUMNS = (
    "calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
    "lastdata", "disposition", "duration", "billsec", "uniqueid", "linkedid", "did",
    "recordingfile", "cnum", "cnam", "sequence",
)  # fmt: skip
REQUIRED_COLUMNS = ("calldate", "uniqueid")
# Columns whose absence changes what the user gets; said out loud when missing.
NOTABLE_COLUMNS = ("recordingfile", "linkedid", "did")
LOOKUP_INDEXES = ("uniqueid", "linkedid")
JOURNAL_INDEXES = ("calldate", "uniqueid")
_MATCH_COLUMNS = ("src", "cnum", "dst", "did", "dstchannel")
# calldate first (its index serves the window), then enough to make the order total
_PAGE_ORDER = ("calldate", "uniqueid", "sequence", "channel", "dstchannel")


def valid_uniqueid(text: str) -> bool:
    return len(text) <= UNIQUEID_MAX and _UNIQUEID.fullmatch(text) is not None


@dataclass(frozen=True)
class CdrRow:
    """One CDR row; `None` in linkedid/did/recordingfile/sequence means the column is absent."""

    calldate: datetime | None
    uniqueid: str
    clid: str = ""
    src: str = ""
    dst: str = ""
    dcontext: str = ""
    channel: str = ""
    dstchannel: str = ""
    lastapp: str = ""
    lastdata: str = ""
    disposition: str = ""
    duration: int = 0
    billsec: int = 0
    cnum: str = ""
    cnam: str = ""
    linkedid: str | None = None
    did: str | None = None
    recordingfile: str | None = None
    sequence: int | None = None

    @classmethod
    def from_db(cls, values: dict[str, Any]) -> CdrRow:
        ints = {"duration", "billsec", "sequence"}
        fields: dict[str, Any] = {}
        for name, value in values.items():
            if name == "calldate":
                fields[name] = value if isinstance(value, datetime) else None
            elif name in ints:
                fields[name] = int(value) if value is not None else 0
            else:
                fields[name] = _text(value)
        return cls(**fields)

    def sort_key(self) -> tuple[datetime, int]:
        return (self.calldate or datetime.min, self.sequence or 0)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class Since:
    """Start of the journal window: a number of seconds back from the database's NOW(), or
    a moment in the database's local time (Asterisk writes `calldate` in local time)."""

    seconds: int | None = None
    moment: datetime | None = None


def _select(table: CdrTable, columns: Sequence[str]) -> str:
    cols = ", ".join(f"`{c}`" for c in table.present(tuple(columns)))
    return f"SELECT {cols} FROM {table.sql_name}"


def _require(table: CdrTable, columns: tuple[str, ...]) -> None:
    if missing := table.missing(columns):
        raise CdrDbError(
            f"table {table.label} has no {', '.join(missing)} column; "
            "is cti.cdr.table an Asterisk CDR table?"
        )


def _fetch_rows(conn: Connection[Any], sql: str, params: Sequence[object]) -> list[CdrRow]:
    with conn.cursor() as cur:
        cur.execute(sql, tuple(params))
        names = [d[0].lower() for d in cur.description or ()]
        return [CdrRow.from_db(dict(zip(names, row, strict=True))) for row in cur.fetchall()]


def call_rows(conn: Connection[Any], table: CdrTable, uniqueid: str) -> list[CdrRow]:
    """Every row whose uniqueid or linkedid is `uniqueid`, in call order."""
    _require(table, REQUIRED_COLUMNS)
    select = _select(table, ROW_COLUMNS)
    sql = f"{select} WHERE `uniqueid` = %s"
    params: list[object] = [uniqueid]
    if table.has("linkedid"):
        # UNION ALL of two indexed lookups instead of `OR` (which may scan).
        sql += f" UNION ALL {select} WHERE `linkedid` = %s AND `uniqueid` <> %s"
        params += [uniqueid, uniqueid]
    return sorted(_fetch_rows(conn, sql, params), key=CdrRow.sort_key)


def recent_call_ids(
    conn: Connection[Any],
    table: CdrTable,
    *,
    since: Since | None,
    number: str | None,
    limit: int,
    operators: ExtensionMatcher | None = None,
) -> list[str]:
    """Uniqueids of the `limit` most recent calls in the window (touching `number`, if given).

    Reads (uniqueid + number columns) newest first in growing pages, so a common case costs
    one small indexed query and a rare number costs one pass over the window. `number` also
    matches the extension of an operator who was dialled (`dstchannel`, read by `operators`).
    """
    operators = operators or ExtensionMatcher()
    _require(table, REQUIRED_COLUMNS)
    match_cols = table.present(_MATCH_COLUMNS)
    where: list[str] = []
    params: list[object] = []
    if since is not None and since.seconds is not None:
        where.append("`calldate` >= NOW() - INTERVAL %s SECOND")
        params.append(since.seconds)
    elif since is not None and since.moment is not None:
        where.append("`calldate` >= %s")
        params.append(since.moment)
    if number is not None:
        if not match_cols:
            return []
        where.append("(" + " OR ".join(f"`{c}` LIKE %s" for c in match_cols) + ")")
        params += [like_pattern(number)] * len(match_cols)
    sql = _select(table, ("uniqueid", *match_cols))
    if where:
        sql += " WHERE " + " AND ".join(where)
    # OFFSET pages are only consistent over a total order: many legs share one calldate
    # (to the second), and MariaDB may return ties in another order on every query, so a
    # page boundary inside a tie would skip some rows and repeat others.
    order = ", ".join(f"`{c}` DESC" for c in table.present(_PAGE_ORDER))
    sql += f" ORDER BY {order} LIMIT %s OFFSET %s"
    found: dict[str, None] = {}
    page, offset = max(limit * 8, 200), 0
    with conn.cursor() as cur:
        while len(found) < limit:
            cur.execute(sql, (*params, page, offset))
            rows = cur.fetchall()
            for row in rows:
                uniqueid = _text(row[0])
                if number is None or _touches(number, match_cols, row[1:], operators):
                    found.setdefault(uniqueid)
                    if len(found) >= limit:
                        break
            if len(rows) < page:
                break
            offset += page
            page *= 4
    return list(found)


def _touches(
    number: str, columns: Sequence[str], values: Sequence[object], operators: ExtensionMatcher
) -> bool:
    for column, value in zip(columns, values, strict=True):
        text = _text(value)
        if column == "dstchannel":
            text = operators.extension(text) or ""
        if same_number(number, text):
            return True
    return False


def rows_for_calls(
    conn: Connection[Any], table: CdrTable, uniqueids: Sequence[str]
) -> dict[str, list[CdrRow]]:
    """All rows of the given calls, grouped by uniqueid, each group in call order."""
    if not uniqueids:
        return {}
    marks = ", ".join(["%s"] * len(uniqueids))
    sql = f"{_select(table, ROW_COLUMNS)} WHERE `uniqueid` IN ({marks})"
    grouped: dict[str, list[CdrRow]] = {u: [] for u in uniqueids}
    for row in sorted(_fetch_rows(conn, sql, uniqueids), key=CdrRow.sort_key):
        grouped.setdefault(row.uniqueid, []).append(row)
    return grouped


def schema_notes(table: CdrTable) -> list[str]:
    """What an older schema costs the user, one line per missing notable column."""
    effects = {
        "recordingfile": "recordings cannot be found from the CDR",
        "linkedid": "rows are matched on uniqueid only (legs of transfers may be left out)",
        "did": "the dialled number shown is dst, not the DID",
    }
    return [
        f"note: {table.label} has no {col} column: {effects[col]}"
        for col in table.missing(NOTABLE_COLUMNS)
    ]
