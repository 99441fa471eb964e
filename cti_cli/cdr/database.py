"""Opening `asteriskcdrdb` read-only and learning what the `cdr` table has.

Database failures are translated into one line that tells the user *which* setting is wrong
(host/port, user/password, database, table, grant, TLS) — never the password itself.
Columns and indexes are read once per run (SHOW COLUMNS + SHOW INDEX), so older schemas
(no `linkedid`, `recordingfile`, `did`) work for what they have, and a missing index is
reported with its fix.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pymysql
from pymysql.connections import Connection

from cti_cli.cdr.dbaccess import KEY_PASSWORD, KEY_TABLE, KEY_URL, KEY_USER, DbAccess

CR_SSL_CONNECTION_ERROR = 2026  # also PyMySQL's "server doesn't support SSL"


class CdrDbError(Exception):
    """A database problem, already phrased for the user (one line)."""


@dataclass(frozen=True)
class CdrTable:
    """The CDR table as found: its columns and which of them lead an index (lower-case)."""

    database: str
    name: str
    columns: frozenset[str]
    indexed: frozenset[str]

    @property
    def sql_name(self) -> str:
        """Backquoted `db`.`table` — names were validated/came from the server, never input."""
        return f"{_quote(self.database)}.{_quote(self.name)}"

    @property
    def label(self) -> str:
        return f"{self.database}.{self.name}"

    def has(self, column: str) -> bool:
        return column in self.columns

    def present(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(c for c in wanted if c in self.columns)

    def missing(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(c for c in wanted if c not in self.columns)

    def index_advice(self, wanted: tuple[str, ...]) -> list[str]:
        """One warning per wanted column that exists but leads no index, with the fix."""
        return [
            f"warning: {self.label}.{col} has no index, so lookups scan the whole table; "
            f"fix: ALTER TABLE {self.sql_name} ADD INDEX {_quote(col)} ({_quote(col)});"
            for col in wanted
            if col in self.columns and col not in self.indexed
        ]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _tls_context(access: DbAccess) -> ssl.SSLContext:
    """Our own context: the stock one loads the whole CA bundle (~70 ms) even when it will
    not verify anything, which would dominate a 5 ms lookup."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if access.tls in ("preferred", "required"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.check_hostname = access.tls == "verify-identity"
    try:
        if access.tls_ca:
            context.load_verify_locations(cafile=str(access.tls_ca))
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as exc:
        raise CdrDbError(
            f"cannot read the TLS CA file {access.tls_ca} named in {KEY_URL} of "
            f"{access.source}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return context


def _open(access: DbAccess, tls: dict[str, Any]) -> Connection[Any]:
    # PyMySQL's connect_timeout covers only the TCP connect; the handshake (greeting, TLS,
    # login) reads with read_timeout. So the handshake reads get connectTimeout too — a port
    # that accepts and never answers fails in connectTimeout, as with JDBC — and queries
    # then get socketTimeout (read_timeout).
    conn = pymysql.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password.encode("utf-8"),
        database=access.database,
        charset="utf8mb4",
        connect_timeout=access.connect_timeout,
        read_timeout=access.connect_timeout,
        write_timeout=access.connect_timeout,
        autocommit=None,
        **tls,
    )
    conn._read_timeout = access.read_timeout  # type: ignore[attr-defined]  # next read on
    conn._write_timeout = access.read_timeout  # type: ignore[attr-defined]
    return conn


def connect(access: DbAccess) -> Connection[Any]:
    """A connection as the configured (SELECT-only is enough) user, utf8mb4, no autocommit query.

    PREFERRED (the JDBC default) tries TLS and, if the server offers none, connects again
    in the clear — what the driver's own PREFERRED does, without its CA-loading cost.
    """
    try:
        if access.tls == "disabled":
            return _open(access, {"ssl_disabled": True})
        try:
            return _open(access, {"ssl": _tls_context(access)})
        except pymysql.OperationalError as exc:
            if access.tls != "preferred" or exc.args[0] != CR_SSL_CONNECTION_ERROR:
                raise
            return _open(access, {"ssl_disabled": True})
    except pymysql.MySQLError as exc:
        raise CdrDbError(explain(exc, access, during="connect")) from None


@contextmanager
def cdr_session(access: DbAccess) -> Iterator[tuple[Connection[Any], CdrTable]]:
    """Connect, introspect the table, and always close; errors arrive as `CdrDbError`."""
    conn = connect(access)
    try:
        table = introspect(conn, access)
        yield conn, table
    except pymysql.MySQLError as exc:
        raise CdrDbError(explain(exc, access)) from None
    finally:
        conn.close()


def introspect(conn: Connection[Any], access: DbAccess) -> CdrTable:
    """Columns and index-leading columns: two SHOW statements (≈1 ms; the equivalent
    information_schema join costs ≈10 ms). SHOW COLUMNS raises the precise error when the
    table is absent (1146) or not readable by this user (1142)."""
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM {_quote(access.table)}")
        columns = [str(r[0]).lower() for r in cur.fetchall()]
        cur.execute(f"SHOW INDEX FROM {_quote(access.table)}")
        leading = {str(r[4]).lower() for r in cur.fetchall() if r[3] == 1}
    return CdrTable(
        database=access.database,
        name=access.table,
        columns=frozenset(columns),
        indexed=frozenset(leading & set(columns)),
    )


_REASON = re.compile(r"\((.*)\)\s*$")


def explain(
    exc: pymysql.MySQLError, access: DbAccess, *, during: Literal["connect", "query"] = "query"
) -> str:
    """One line naming the setting to fix; the password never appears."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    where, src, user = access.where, access.source, access.user
    table = f"{access.database}.{access.table}"
    if code in (2003, 2013) and "timed out" in text:
        if during == "connect":
            return (
                f"the CDR database at {where} timed out: no answer within "
                f"{access.connect_timeout:g} s while connecting; check that MariaDB/MySQL "
                f"answers there (not a firewall or another service) and connectTimeout of "
                f"{KEY_URL} in {src}"
            )
        return (
            f"the CDR database at {where} timed out: no answer to a query within "
            f"{access.read_timeout:g} s; the server may be overloaded (socketTimeout of "
            f"{KEY_URL} in {src} sets this limit)"
        )
    if code in (2003, 2005, 2006, 2013) and ("SSL" in text or "certificate" in text):
        return (
            f"TLS to the CDR database at {where} failed ({_reason(text)}); "
            f"check the TLS parameters of {KEY_URL} in {src}"
        )
    if code in (2003, 2005, 2006):
        return (
            f"cannot connect to the CDR database at {where} ({_reason(text)}); "
            f"check that MariaDB/MySQL runs there and {KEY_URL} in {src}"
        )
    if code == 2013:
        return f"the CDR database at {where} closed the connection ({_reason(text)}); try again"
    if code == 2026 or "SSL is required" in text:
        return (
            f"TLS to the CDR database at {where} failed: {text}; "
            f"check the TLS parameters of {KEY_URL} in {src}"
        )
    if code == 1045:
        return (
            f"access denied for user {user!r} at {where} (wrong password, or the user may not "
            f"log in from this host); check {KEY_USER} and {KEY_PASSWORD} in {src}"
        )
    if code == 1044:
        return (
            f"user {user!r} may not use database {access.database!r}; "
            f"GRANT SELECT ON `{access.database}`.* TO the user, or fix {KEY_URL} in {src}"
        )
    if code == 1049:
        return (
            f"unknown database {access.database!r} at {where}; "
            f"check the database name in {KEY_URL} in {src}"
        )
    if code == 1146:
        return f"no table {table} at {where}; check {KEY_TABLE} in {src}"
    if code == 1142:
        return (
            f"user {user!r} may not read {table}; GRANT SELECT ON `{access.database}`.* TO the user"
        )
    return f"CDR database error {code} at {where}: {text}"


def _reason(text: str) -> str:
    match = _REASON.search(text)
    reason = match.group(1) if match else text
    return reason.removeprefix("[Errno 111] ").removeprefix("[Errno -2] ")
