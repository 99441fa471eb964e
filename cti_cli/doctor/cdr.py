"""The CDR part of `cti doctor`: dbaccess.properties, the database, the cdr table and indexes.

It reads what `cti recordings` / `cti calls` read, as the same (SELECT-only) user: the file,
a connection, `SHOW COLUMNS` / `SHOW INDEX` of the table, and one `SELECT` that proves the
grant. (MariaDB already refuses SHOW COLUMNS without SELECT; MySQL shows a table's columns to a
user with any privilege on it, e.g. INSERT only, and only the SELECT finds the missing grant.)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql

from cti_cli.cdr.database import CdrDbError, CdrTable, connect, explain, introspect
from cti_cli.cdr.dbaccess import DbAccess, DbAccessError, read_dbaccess
from cti_cli.cdr.queries import LOOKUP_INDEXES, NOTABLE_COLUMNS, REQUIRED_COLUMNS, schema_notes
from cti_cli.config import Config
from cti_cli.doctor import Check, fail, ok, warn

INDEXED = (*LOOKUP_INDEXES, "calldate")  # uniqueid, linkedid: cti recordings; calldate: cti calls


def _db_fix(message: str, access: DbAccess) -> str:
    if "GRANT" in message:
        return (f"As a database admin: GRANT SELECT ON `{access.database}`.* TO "
                f"'{access.user}'@'<this host>'; (see dbaccess.properties.example).")  # fmt: skip
    if "access denied" in message:
        return f"Correct cti.cdr.user / cti.cdr.password in {access.source}."
    if "cannot connect" in message or "closed the connection" in message:
        return f"Start MariaDB/MySQL there, or correct cti.cdr.url in {access.source}."
    if "TLS" in message:
        return f"Correct the TLS parameters of cti.cdr.url in {access.source}."
    return f"Correct the cti.cdr.* keys in {access.source}."


def _database(access: DbAccess) -> tuple[Check, CdrTable | None]:
    name = "CDR database"
    try:
        conn = connect(access)
    except CdrDbError as exc:
        return fail("cdr.database", name, f"{exc}; table not checked", _db_fix(str(exc), access)), None  # noqa: E501
    try:
        try:
            table = introspect(conn, access)
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                version = str((cur.fetchone() or ("?",))[0])
                cur.execute(f"SELECT 1 FROM {table.sql_name} LIMIT 1")
                cur.fetchall()
                newest: Any = None
                if "calldate" in table.indexed:
                    cur.execute(f"SELECT MAX(`calldate`) FROM {table.sql_name}")
                    newest = (cur.fetchone() or (None,))[0]
        except pymysql.MySQLError as exc:
            message = explain(exc, access)
            return fail("cdr.database", name, f"{message}; table not checked",
                        _db_fix(message, access)), None  # fmt: skip
    finally:
        conn.close()
    detail = (f"{access.user}@{access.where}/{access.database} (server {version}): "
              f"{table.label} readable")  # fmt: skip
    if isinstance(newest, datetime):
        detail += f", newest call {newest:%Y-%m-%d %H:%M}"
    elif "calldate" in table.indexed:
        detail += ", no calls yet"
    return ok("cdr.database", name, detail), table


def _columns(table: CdrTable, access: DbAccess) -> Check:
    name = "CDR columns"
    missing = table.missing(REQUIRED_COLUMNS)
    if missing:
        return fail("cdr.columns", name, f"{table.label} has no {', '.join(missing)} column: it "
                    "is not Asterisk's CDR table", f"Set cti.cdr.table in {access.source} to the "
                    "table Asterisk's cdr_adaptive_odbc / cdr_mysql writes.")  # fmt: skip
    notes = schema_notes(table)
    if notes:
        return warn("cdr.columns", name, "; ".join(n.removeprefix("note: ") for n in notes),
                    "Add the column(s) to the table (Asterisk 12+ fills them) if you need that.")
    present = ", ".join(table.present(NOTABLE_COLUMNS))
    return ok("cdr.columns", name, f"{len(table.columns)} columns, with {present}")


def _indexes(table: CdrTable) -> Check:
    name = "CDR indexes"
    lacking = [c for c in INDEXED if c in table.columns and c not in table.indexed]
    if lacking:
        fixes = " ".join(
            f"ALTER TABLE {table.sql_name} ADD INDEX `{c}` (`{c}`);" for c in lacking
        )
        return warn("cdr.indexes", name, f"{table.label}: no index on {', '.join(lacking)}, so "
                    "every lookup reads the whole table", f"As a database admin run: {fixes}")  # fmt: skip  # noqa: E501
    have = ", ".join(c for c in INDEXED if c in table.indexed)
    return ok("cdr.indexes", name, f"indexed: {have}")


def cdr_checks(config: Config) -> list[Check]:
    raw = config.cdr.dbaccess
    if not raw:
        return [warn("cdr.dbaccess", "CDR access", "[cdr] dbaccess is not set: cti calls and "
                     "cti recordings cannot read call records (recordings not checked)",
                     "Point it at the dbaccess.properties file: cti configure --dbaccess PATH "
                     "(see dbaccess.properties.example).")]  # fmt: skip
    path = Path(raw).expanduser()
    try:
        access = read_dbaccess(path)
    except DbAccessError as exc:
        return [fail("cdr.dbaccess", "CDR access", f"{exc}; database not checked",
                     "Fix that key in the file (see dbaccess.properties.example).")]
    out = [ok("cdr.dbaccess", "CDR access", f"{path}: {access.user}@{access.where}/"
              f"{access.database}, table {access.table}")]  # fmt: skip
    check, table = _database(access)
    out.append(check)
    if table is not None:
        out += [_columns(table, access), _indexes(table)]
    return out
