"""The `cti.cdr.*` keys of dbaccess.properties: JDBC and mysql:// URLs, TLS, missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_cli.cdr.dbaccess import DbAccess, DbAccessError, read_dbaccess

EXAMPLE = Path(__file__).resolve().parent.parent / "dbaccess.properties.example"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "dbaccess.properties"
    path.write_text("\n".join(["desk.smtp.host=mail", *lines]) + "\n", "utf-8")
    return path


def full(tmp_path: Path, url: str) -> DbAccess:
    keys = ("cti.cdr.user=u", "cti.cdr.password=p", "cti.cdr.table=cdr")
    return read_dbaccess(write(tmp_path, f"cti.cdr.url={url}", *keys))


def test_the_documented_example_reads(tmp_path: Path) -> None:
    access = read_dbaccess(EXAMPLE)
    assert (access.host, access.port, access.database) == ("127.0.0.1", 3306, "asteriskcdrdb")
    assert (access.user, access.table, access.tls) == ("cti_reader", "cdr", "preferred")


def test_jdbc_url_and_keys(tmp_path: Path) -> None:
    lines = (
        "cti.cdr.url = jdbc:mysql://pbx.example.org:3307/asteriskcdrdb",
        "cti.cdr.user : cti_reader",
        "cti.cdr.password=пароль:с=знаками",
        "cti.cdr.table=cdr_2026",
    )
    access = read_dbaccess(write(tmp_path, *lines))
    assert (access.host, access.port) == ("pbx.example.org", 3307)
    assert (access.database, access.user) == ("asteriskcdrdb", "cti_reader")
    assert (access.password, access.table) == ("пароль:с=знаками", "cdr_2026")
    assert "пароль" not in repr(access)


def test_mysql_url_carries_user_and_password(tmp_path: Path) -> None:
    access = read_dbaccess(
        write(tmp_path, "cti.cdr.url=mysql://reader:p%40ss%2Fw@[::1]/cdrdb", "cti.cdr.table=cdr")
    )
    assert (access.host, access.port, access.database) == ("::1", 3306, "cdrdb")
    assert (access.user, access.password) == ("reader", "p@ss/w")
    assert access.where == "[::1]:3306"


@pytest.mark.parametrize(
    ("query", "mode"),
    [
        ("", "preferred"),
        ("?useSSL=true", "required"),
        ("?useSSL=false", "disabled"),
        ("?requireSSL=true&verifyServerCertificate=true", "verify-ca"),
        ("?sslMode=REQUIRED", "required"),
        ("?sslMode=VERIFY_IDENTITY", "verify-identity"),
        ("?sslMode=verify-full", "verify-identity"),
        ("?useSSL=true&sslMode=DISABLED", "disabled"),
        ("?sslMode=trust", "required"),
    ],
)
def test_tls_parameters(tmp_path: Path, query: str, mode: str) -> None:
    assert full(tmp_path, f"jdbc:mysql://h:3306/db{query}").tls == mode


def test_tls_ca_and_timeout(tmp_path: Path) -> None:
    access = full(
        tmp_path,
        "jdbc:mariadb://h/db?sslMode=VERIFY_CA&serverSslCert=/etc/ca.pem&connectTimeout=2500",
    )
    assert (access.tls, access.tls_ca, access.connect_timeout) == (
        "verify-ca", Path("/etc/ca.pem"), 2.5
    )  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "key cti.cdr.url is missing"),
        (("cti.cdr.url=jdbc:mysql://h/db",), "key cti.cdr.user is missing"),
        (("cti.cdr.url=jdbc:mysql://h/db", "cti.cdr.user=u"), "key cti.cdr.password is missing"),
        (("cti.cdr.url=jdbc:mysql://h/db", "cti.cdr.user=u", "cti.cdr.password="),
         "key cti.cdr.table is missing"),
    ],
)  # fmt: skip
def test_missing_keys_are_named_with_the_file(
    tmp_path: Path, lines: tuple[str, ...], message: str
) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(DbAccessError) as exc:
        read_dbaccess(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("jdbc:postgresql://h/db", "is not a MySQL/MariaDB URL"),
        ("h:3306/db", "is not a MySQL/MariaDB URL"),
        ("jdbc:mysql://h1,h2/db", "lists several hosts"),
        ("jdbc:mysql://h:99999/db", "invalid port"),
        ("jdbc:mysql://h:3306/", "names no database"),
        ("jdbc:mysql:///db", "has no valid host"),
        ("jdbc:mysql://h/db?sslMode=SOMETIMES", "unknown sslMode 'SOMETIMES'"),
        ("jdbc:mysql://h/db?useSSL=maybe", "use true or false"),
    ],
)
def test_bad_urls_are_explained(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(DbAccessError, match=message):
        full(tmp_path, url)


@pytest.mark.parametrize("table", ["cdr;DROP", "a.b", "`cdr`", "x" * 65, ""])
def test_table_must_be_an_identifier(tmp_path: Path, table: str) -> None:
    path = write(tmp_path, "cti.cdr.url=jdbc:mysql://h/db", "cti.cdr.user=u",
                 "cti.cdr.password=p", f"cti.cdr.table={table}")  # fmt: skip
    with pytest.raises(DbAccessError, match="must be a table name"):
        read_dbaccess(path)
