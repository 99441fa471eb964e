"""`dbaccess.properties`: where the CDR database is and how to log in to it.

The file may be the service desk's own settings file, so only the `cti.cdr.*` keys are read and
everything else is ignored. The URL may be JDBC (`jdbc:mysql://…`, `jdbc:mariadb://…`) or a plain
`mysql://user:pass@host:port/db`, with JDBC's TLS parameters understood.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from cti_cli.cdr.properties import PropertiesError, read_properties

KEY_URL = "cti.cdr.url"
KEY_USER = "cti.cdr.user"
KEY_PASSWORD = "cti.cdr.password"
KEY_TABLE = "cti.cdr.table"

DEFAULT_PORT = 3306
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0  # a query's reply; JDBC socketTimeout (ms) overrides it

TlsMode = Literal["disabled", "preferred", "required", "verify-ca", "verify-identity"]

# JDBC (MySQL Connector/J and MariaDB Connector/J) spellings → our mode.
_SSL_MODES: dict[str, TlsMode] = {
    "disabled": "disabled",
    "disable": "disabled",
    "preferred": "preferred",
    "prefer": "preferred",
    "required": "required",
    "require": "required",
    "trust": "required",
    "verifyca": "verify-ca",
    "verifyidentity": "verify-identity",
    "verifyfull": "verify-identity",
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_TABLE_NAME = re.compile(r"[A-Za-z0-9_$]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9._:-]+")


class DbAccessError(Exception):
    """`dbaccess.properties` is missing, unreadable or lacks/misstates a `cti.cdr.*` key."""


@dataclass(frozen=True)
class DbAccess:
    """Everything needed to open the CDR database; `repr` never shows the password."""

    source: Path
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    table: str = "cdr"
    tls: TlsMode = "preferred"
    tls_ca: Path | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def read_dbaccess(path: Path) -> DbAccess:
    """Read and check the `cti.cdr.*` keys of a properties file."""
    try:
        props = read_properties(path)
    except PropertiesError as exc:
        raise DbAccessError(str(exc)) from None
    return dbaccess_from_properties(props, path)


def dbaccess_from_properties(props: dict[str, str], source: Path) -> DbAccess:
    if KEY_URL not in props:
        raise DbAccessError(_missing(KEY_URL, source))
    url = _parse_url(props[KEY_URL].strip(), source)
    user = props.get(KEY_USER, url.user)
    if user is None:
        raise DbAccessError(_missing(KEY_USER, source))
    password = props.get(KEY_PASSWORD, url.password)
    if password is None:
        raise DbAccessError(_missing(KEY_PASSWORD, source))
    if KEY_TABLE not in props:
        raise DbAccessError(_missing(KEY_TABLE, source))
    table = props[KEY_TABLE].strip()
    if not _TABLE_NAME.fullmatch(table):
        raise DbAccessError(
            f"{source}: {KEY_TABLE} must be a table name (letters, digits, _ or $; at most 64), "
            f"got {table!r}"
        )
    if not user:
        raise DbAccessError(f"{source}: {KEY_USER} is empty; give the database user name")
    return DbAccess(
        source=source,
        host=url.host,
        port=url.port,
        database=url.database,
        user=user,
        password=password,
        table=table,
        tls=url.tls,
        tls_ca=url.tls_ca,
        connect_timeout=url.connect_timeout,
        read_timeout=url.read_timeout,
    )


def _missing(key: str, source: Path) -> str:
    return f"{source}: key {key} is missing; see dbaccess.properties.example"


@dataclass(frozen=True)
class _Url:
    host: str
    port: int
    database: str
    user: str | None
    password: str | None
    tls: TlsMode
    tls_ca: Path | None
    connect_timeout: float
    read_timeout: float


def _bad_url(source: Path, why: str) -> DbAccessError:
    return DbAccessError(
        f"{source}: {KEY_URL} {why}; expected like "
        "jdbc:mysql://127.0.0.1:3306/asteriskcdrdb or mysql://user:pass@host:3306/asteriskcdrdb"
    )


def _parse_url(text: str, source: Path) -> _Url:
    def bad(why: str) -> DbAccessError:
        return _bad_url(source, why)

    rest = text[len("jdbc:") :] if text.lower().startswith("jdbc:") else text
    scheme, sep, _ = rest.partition("://")
    if not sep or scheme.lower() not in ("mysql", "mariadb"):
        raise bad(f"is not a MySQL/MariaDB URL (got scheme {scheme!r})")
    parts = urlsplit("mysql://" + rest[len(scheme) + 3 :])
    netloc_host = parts.netloc.rpartition("@")[2]
    if "," in netloc_host:
        raise bad("lists several hosts; give one")
    host = parts.hostname or ""
    if not host or not _HOST.fullmatch(host):
        raise bad("has no valid host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise bad("has an invalid port") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise bad("names no database (the path after the host)")
    params = {k.lower().replace("-", "").replace("_", ""): v for k, v in parse_qsl(parts.query)}
    user = unquote(parts.username) if parts.username is not None else params.get("user")
    password = unquote(parts.password) if parts.password is not None else params.get("password")
    tls, ca = _tls_from_params(params, source)
    timeout = _millis(params, "connectTimeout", DEFAULT_CONNECT_TIMEOUT, bad)
    read_timeout = _millis(params, "socketTimeout", DEFAULT_READ_TIMEOUT, bad)
    return _Url(host, port, database, user, password, tls, ca, timeout, read_timeout)


def _millis(
    params: dict[str, str], name: str, default: float, bad: Callable[[str], DbAccessError]
) -> float:
    """A JDBC timeout in milliseconds as seconds (0, JDBC's "forever", becomes the default)."""
    text = params.get(name.lower())
    if text is None:
        return default
    try:
        millis = int(text)
    except ValueError:
        raise bad(f"has a {name} that is not a number of milliseconds") from None
    return max(millis / 1000, 0.1) if millis > 0 else default


def _tls_from_params(params: dict[str, str], source: Path) -> tuple[TlsMode, Path | None]:
    """JDBC TLS parameters: `sslMode` wins; else `useSSL`/`requireSSL`/`verifyServerCertificate`."""
    ca_text = params.get("serversslcert") or params.get("sslca") or params.get("ca")
    ca = Path(ca_text.removeprefix("file://")) if ca_text else None
    if "sslmode" in params:
        mode = _SSL_MODES.get(params["sslmode"].lower().replace("-", "").replace("_", ""))
        if mode is None:
            allowed = "DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"
            why = f"has an unknown sslMode {params['sslmode']!r} (use one of {allowed})"
            raise _bad_url(source, why)
        return mode, ca
    use_ssl = _flag(params, "usessl", source)
    if use_ssl is False:
        return "disabled", ca
    verify = _flag(params, "verifyservercertificate", source)
    if use_ssl or _flag(params, "requiressl", source):
        return ("verify-ca" if verify else "required"), ca
    return ("verify-ca" if ca else "preferred"), ca


def _flag(params: dict[str, str], name: str, source: Path) -> bool | None:
    if name not in params:
        return None
    value = params[name].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad_url(source, f"has {name}={params[name]!r}; use true or false")
