"""MariaDB for the lab: the host server on 127.0.0.1:3306 if it answers, else a private mariadbd.

Provisioning (database, FreePBX `cdr` table, an INSERT-only user for Asterisk and the SELECT-only
`cti_reader`) is idempotent, so any number of lab instances can share one server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
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
from lab.procs import spawn, stop_pid
from lab.rootfs import cache_dir

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
    """An admin login to a MariaDB server (for provisioning and scratch databases in tests)."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            **kwargs,
        )


@dataclass(frozen=True)
class LabDbUsers:
    asterisk_password: str
    reader_password: str


def _answers(server: MariaDB) -> bool:
    try:
        server.connect().close()
    except pymysql.MySQLError:
        return False
    return True


def host_server() -> MariaDB | None:
    """The machine's MariaDB on 127.0.0.1:3306 with passwordless root, if it is there."""
    if os.environ.get("CTI_LAB_PRIVATE_MARIADB") == "1":
        return None
    server = MariaDB("127.0.0.1", 3306, "root", "")
    return server if _answers(server) else None


class PrivateMariaDB:
    """A throwaway mariadbd on a temp datadir and a free port; stop() removes it."""

    def __init__(self, datadir: Path, pid: int, server: MariaDB) -> None:
        self.datadir = datadir
        self.pid = pid
        self.server = server

    @classmethod
    def start(cls, *, tied: bool, base: Path | None = None) -> PrivateMariaDB:
        tools = ensure_tools(MARIADB_TOOLS)
        datadir = Path(tempfile.mkdtemp(prefix="cti-lab-mariadb-", dir=base))
        as_user = ["--user=root"] if is_root() else []
        init = subprocess.run(
            [
                tools["mariadb-install-db"],
                "--no-defaults",
                f"--datadir={datadir}/data",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *as_user,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            tail = "\n".join((init.stdout + init.stderr).splitlines()[-8:])
            shutil.rmtree(datadir, ignore_errors=True)
            raise LabUnavailable(f"mariadb-install-db failed:\n{tail}")
        port = free_tcp_port()
        proc = spawn(
            [
                tools["mariadbd"],
                "--no-defaults",
                f"--datadir={datadir}/data",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={datadir}/mysqld.sock",
                f"--pid-file={datadir}/mariadbd.pid",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                *as_user,
            ],
            datadir / "mariadbd.log",
            tied=tied,
        )
        server = MariaDB("127.0.0.1", port, "root", "")
        deadline = time.monotonic() + 60
        while not _answers(server):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                text = (datadir / "mariadbd.log").read_text(errors="replace")
                shutil.rmtree(datadir, ignore_errors=True)
                tail = "\n".join(text.splitlines()[-8:])
                raise LabUnavailable(f"private mariadbd did not start:\n{tail}")
            time.sleep(0.2)
        return cls(datadir, proc.pid, server)

    def stop(self) -> None:
        stop_pid(self.pid)
        shutil.rmtree(self.datadir, ignore_errors=True)


def lab_db_users() -> LabDbUsers:
    """Passwords for the lab DB users: random once per machine, kept in the lab cache.

    Shared by all instances because MariaDB users are server-wide (a per-instance password
    would break the other running instances).
    """
    path = cache_dir() / "db-users.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return LabDbUsers(data["asterisk_password"], data["reader_password"])
    users = LabDbUsers(secrets.token_urlsafe(12), secrets.token_urlsafe(12))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(users.__dict__))
    tmp.chmod(0o600)
    tmp.rename(path)
    return lab_db_users()  # re-read: a concurrent writer may have won the rename


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


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
