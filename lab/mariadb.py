"""MariaDB for the lab: a private mariadbd per lab instance, never the machine's own server.

`PrivateMariaDB.start(folder)` runs `mariadb-install-db` into `folder` and starts a mariadbd on
its own free port (127.0.0.1 only) and unix socket there; `stop()` removes the folder. The admin
login goes through the socket (root on TCP is dropped), so only the folder's owner can use it.
Provisioning (database, FreePBX `cdr` table, an INSERT-only user for Asterisk and the SELECT-only
`cti_reader`) uses passwords made per lab instance (`new_users()`), so labs never share state.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from lab.errors import LabUnavailable
from lab.hostdeps import MARIADB_TOOLS, ensure_tools, is_root
from lab.ports import free_tcp_port
from lab.procs import alive, cmdline_has, spawn, stop_pid

ASTERISK_USER = "cti_lab_asterisk"
READER_USER = "cti_reader"

# FreePBX framework installlib/SQL/cdr.sql, plus the CDR fields Asterisk 12+ has and FreePBX
# adds later (linkedid, peeraccount, sequence); utf8mb4 so Cyrillic caller names survive.
CDR_COLUMNS = (
    ("calldate", "datetime NOT NULL DEFAULT '1000-01-01 00:00:00'"),
    ("clid", "varchar(80) NOT NULL DEFAULT ''"),
    ("src", "varchar(80) NOT NULL DEFAULT ''"),
    ("dst", "varchar(80) NOT NULL DEFAULT ''"),
    ("dcontext", "varchar(80) NOT NULL DEFAULT ''"),
    ("channel", "varchar(80) NOT NULL DEFAULT ''"),
    ("dstchannel", "varchar(80) NOT NULL DEFAULT ''"),
    ("lastapp", "varchar(80) NOT NULL DEFAULT ''"),
    ("lastdata", "varchar(80) NOT NULL DEFAULT ''"),
    ("duration", "int(11) NOT NULL DEFAULT '0'"),
    ("billsec", "int(11) NOT NULL DEFAULT '0'"),
    ("disposition", "varchar(45) NOT NULL DEFAULT ''"),
    ("amaflags", "int(11) NOT NULL DEFAULT '0'"),
    ("accountcode", "varchar(20) NOT NULL DEFAULT ''"),
    ("uniqueid", "varchar(32) NOT NULL DEFAULT ''"),
    ("userfield", "varchar(255) NOT NULL DEFAULT ''"),
    ("did", "varchar(50) NOT NULL DEFAULT ''"),
    ("recordingfile", "varchar(255) NOT NULL DEFAULT ''"),
    ("cnum", "varchar(80) NOT NULL DEFAULT ''"),
    ("cnam", "varchar(80) NOT NULL DEFAULT ''"),
    ("outbound_cnum", "varchar(80) NOT NULL DEFAULT ''"),
    ("outbound_cnam", "varchar(80) NOT NULL DEFAULT ''"),
    ("dst_cnam", "varchar(80) NOT NULL DEFAULT ''"),
    ("linkedid", "varchar(32) NOT NULL DEFAULT ''"),
    ("peeraccount", "varchar(80) NOT NULL DEFAULT ''"),
    ("sequence", "int(11) NOT NULL DEFAULT '0'"),
)
CDR_KEYS = ("calldate", "dst", "accountcode", "uniqueid", "did", "linkedid")


@dataclass(frozen=True)
class MariaDB:
    """A login to a MariaDB server (admin: provisioning and scratch databases in tests).

    With `unix_socket` the connection goes through that socket (host and port then only say
    where the server listens on TCP, for the clients that use TCP: Asterisk, cti).
    """

    host: str
    port: int
    user: str
    password: str
    unix_socket: str | None = None

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            unix_socket=self.unix_socket,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            **kwargs,
        )


@dataclass(frozen=True)
class LabDbUsers:
    asterisk_password: str
    reader_password: str


def new_users() -> LabDbUsers:
    """Fresh passwords for one lab instance's database users (its server is its own)."""
    return LabDbUsers(secrets.token_urlsafe(12), secrets.token_urlsafe(12))


def _answers(server: MariaDB) -> bool:
    try:
        server.connect().close()
    except pymysql.MySQLError:
        return False
    return True


SOCKET_MAX = 100  # sun_path holds 108 bytes
START_TRIES = 4  # a free port can be taken between choosing it and mariadbd binding it


class PrivateMariaDB:
    """A mariadbd of our own: datadir, socket, pid file and log in `folder`; stop() removes it."""

    def __init__(self, folder: Path, pid: int, server: MariaDB) -> None:
        self.folder = folder
        self.pid = pid
        self.server = server

    @classmethod
    def start(cls, folder: Path | None = None, *, tied: bool) -> PrivateMariaDB:
        """Initialise a datadir in `folder` (default: a new temp folder) and start mariadbd.

        `folder` is made afresh (a leftover of an earlier run is stopped and removed first).
        tied=True: mariadbd dies with this Python process (pytest); False: it outlives it.
        """
        tools = ensure_tools(MARIADB_TOOLS)
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="cti-mariadb-"))
        else:
            stop_leftover(folder)
            folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # the socket's root login has no password: only we may reach it
        try:
            _install_db(tools["mariadb-install-db"], folder)
            for attempt in range(START_TRIES):
                started = _start_server(tools["mariadbd"], folder, tied=tied)
                if started is not None:
                    return cls(folder, *started)
                if attempt == START_TRIES - 1 or not _port_was_taken(folder):
                    tail = "\n".join(_log(folder).splitlines()[-8:])
                    raise LabUnavailable(f"private mariadbd did not start:\n{tail}")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        raise AssertionError("unreachable")

    def running(self) -> bool:
        return alive(self.pid) and cmdline_has(self.pid, str(self.folder / "data"))

    def stop(self) -> None:
        """Stop mariadbd (SIGTERM: a clean shutdown) and remove its folder."""
        if self.running():
            stop_pid(self.pid, timeout=30)
        socket_path = self.server.unix_socket
        if socket_path and not Path(socket_path).is_relative_to(self.folder):
            with contextlib.suppress(OSError):
                os.unlink(socket_path)
        shutil.rmtree(self.folder, ignore_errors=True)


def stop_leftover(folder: Path) -> None:
    """A folder of an earlier PrivateMariaDB (a killed run): stop its server, remove it."""
    if not folder.exists():
        return
    with contextlib.suppress(OSError, ValueError):
        pid = int((folder / "mariadbd.pid").read_text().split()[0])
        if alive(pid) and cmdline_has(pid, str(folder / "data")):
            stop_pid(pid, timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


def _install_db(tool: str, folder: Path) -> None:
    init = subprocess.run(
        [
            tool,
            "--no-defaults",  # never read the machine's /etc/mysql: nothing of its server
            f"--datadir={folder}/data",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--innodb-log-file-size=16M",
            *_as_user(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        tail = "\n".join((init.stdout + init.stderr).splitlines()[-8:])
        raise LabUnavailable(f"mariadb-install-db failed:\n{tail}")


def _as_user() -> list[str]:
    # mariadbd refuses to run as root unless told to; the datadir is ours (root's) anyway
    return ["--user=root"] if is_root() else []


def _socket_path(folder: Path) -> str:
    path = str(folder / "mysqld.sock")
    if len(path) <= SOCKET_MAX:
        return path
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"cti-mariadb-{digest}.sock")


def _log(folder: Path) -> str:
    try:
        return (folder / "mariadbd.log").read_text(errors="replace")
    except OSError:
        return "(no log)"


def _port_was_taken(folder: Path) -> bool:
    text = _log(folder)
    return "Address already in use" in text or "Do you already have another" in text


def _start_server(tool: str, folder: Path, *, tied: bool) -> tuple[int, MariaDB] | None:
    """Start mariadbd on a free port; (pid, admin login) once it answers, None if it died."""
    port = free_tcp_port()
    sock = _socket_path(folder)
    proc = spawn(
        [
            tool,
            "--no-defaults",
            f"--datadir={folder}/data",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sock}",
            f"--pid-file={folder}/mariadbd.pid",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            *_as_user(),
        ],
        folder / "mariadbd.log",
        tied=tied,
    )
    server = MariaDB("127.0.0.1", port, "root", "", unix_socket=sock)
    deadline = time.monotonic() + 60
    while not _answers(server):
        if proc.poll() is not None:
            return None
        if time.monotonic() > deadline:
            stop_pid(proc.pid)
            return None
        time.sleep(0.1)
    _socket_only_root(server)
    return proc.pid, server


def _socket_only_root(server: MariaDB) -> None:
    """mariadb-install-db also makes root@127.0.0.1 / ::1 / <hostname> without a password:
    drop them, so root works only through the socket in our 0700 folder."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT user, host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")
        for user, host in cur.fetchall():
            cur.execute("DROP USER %s@%s", (user, host))
        cur.execute("DROP USER IF EXISTS ''@'localhost'")


def provision(server: MariaDB, database: str, users: LabDbUsers, table: str = "cdr") -> None:
    """Create database, cdr table (adding missing columns) and users; safe to repeat."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE IF NOT EXISTS `{database}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        cols = ",\n".join(f"`{name}` {ddl}" for name, ddl in CDR_COLUMNS)
        keys = ",\n".join(f"KEY `{k}` (`{k}`)" for k in CDR_KEYS)
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` (\n{cols},\n{keys}\n) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        )
        for name, ddl in CDR_COLUMNS:
            cur.execute(
                f"ALTER TABLE `{database}`.`{table}` ADD COLUMN IF NOT EXISTS `{name}` {ddl}"
            )
        for user, password, grant in (
            (ASTERISK_USER, users.asterisk_password, "INSERT"),
            (READER_USER, users.reader_password, "SELECT"),
        ):
            for host in ("127.0.0.1", "localhost"):
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY %s", (password,)
                )
                cur.execute(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT {grant} ON `{database}`.* TO '{user}'@'{host}'")


def drop_database(server: MariaDB, database: str) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
