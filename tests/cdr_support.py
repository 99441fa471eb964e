"""Scratch CDR databases for `cti recordings` / `cti calls` tests: a real MariaDB, a FreePBX
`cdr` table (lab.mariadb's schema), a SELECT-only user, a dbaccess.properties and a cti.toml.

Each scratch database is `cti_test_<random>` and is dropped (with its user) afterwards.
"""

from __future__ import annotations

import os
import secrets
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cti_cli.cli.app import _register, app
from lab.mariadb import CDR_COLUMNS, CDR_KEYS, MariaDB

_register()

CTI = Path(sys.executable).with_name("cti")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class ScratchCdr:
    server: MariaDB
    database: str
    table: str
    user: str
    password: str
    home: Path
    columns: tuple[str, ...]
    extra_properties: dict[str, str] = field(default_factory=dict)

    @property
    def recordings(self) -> Path:
        return self.home / "monitor"

    @property
    def dbaccess(self) -> Path:
        return self.home / "dbaccess.properties"

    @property
    def config(self) -> Path:
        return self.home / "cti.toml"

    def write_files(self, url: str | None = None, password: str | None = None) -> None:
        url = url or f"jdbc:mysql://{self.server.host}:{self.server.port}/{self.database}"
        lines = [
            "# service desk settings live here too",
            "desk.mail.host = mail.example.org",
            f"cti.cdr.url={url}",
            f"cti.cdr.user={self.user}",
            f"cti.cdr.password={self.password if password is None else password}",
            f"cti.cdr.table={self.table}",
            *(f"{k}={v}" for k, v in self.extra_properties.items()),
        ]
        self.dbaccess.write_text("\n".join(lines) + "\n", "utf-8")
        self.config.write_text(
            f'[cdr]\ndbaccess = "{self.dbaccess}"\nrecordings_dir = "{self.recordings}"\n',
            "utf-8",
        )
        self.config.chmod(0o600)

    def insert(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert rows as Asterisk's cdr_adaptive_odbc would (only the columns given)."""
        with self.server.connect(self.database) as conn, conn.cursor() as cur:
            for row in rows:
                cols = ", ".join(f"`{c}`" for c in row)
                marks = ", ".join(["%s"] * len(row))
                cur.execute(
                    f"INSERT INTO `{self.table}` ({cols}) VALUES ({marks})", tuple(row.values())
                )

    def admin(self, sql: str) -> None:
        with self.server.connect(self.database) as conn, conn.cursor() as cur:
            cur.execute(sql)

    def cti(self, *args: str) -> Result:
        """In-process `cti --config … ARGS` (for --json and exit codes)."""
        result = CliRunner().invoke(app, ["--config", str(self.config), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def cti_process(self, *args: str) -> Result:
        """`cti` as a user runs it, in a wide terminal (for the human-readable tables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        env["COLUMNS"] = "250"
        proc = subprocess.run(
            [str(CTI), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@contextmanager
def scratch_cdr(
    server: MariaDB,
    home: Path,
    *,
    drop_columns: tuple[str, ...] = (),
    indexes: tuple[str, ...] = (*CDR_KEYS,),
    table: str = "cdr",
) -> Iterator[ScratchCdr]:
    """A FreePBX cdr table (minus `drop_columns`, with only `indexes`) and a SELECT-only user."""
    tag = secrets.token_hex(4)
    database, user, password = f"cti_test_{tag}", f"cti_t_{tag}", "пароль-" + tag
    columns = tuple(name for name, _ in CDR_COLUMNS if name not in drop_columns)
    ddl = [f"`{name}` {sql}" for name, sql in CDR_COLUMNS if name in columns]
    ddl += [f"KEY `{k}` (`{k}`)" for k in indexes if k in columns]
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{database}`.`{table}` ({', '.join(ddl)}) ENGINE=InnoDB "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        )
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'127.0.0.1'")
    scratch = ScratchCdr(server, database, table, user, password, home, columns)
    scratch.recordings.mkdir(parents=True, exist_ok=True)
    scratch.write_files()
    try:
        yield scratch
    finally:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def wav_bytes(seconds: float, rate: int = 8000, *, declared: int | None = None) -> bytes:
    """A 16-bit mono PCM WAV like MixMonitor writes; `declared` overrides the data size."""
    data = b"\x00\x01" * int(seconds * rate)
    size = len(data) if declared is None else declared
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
        + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", size) + data
    )  # fmt: skip


def leg(uniqueid: str, **values: Any) -> dict[str, Any]:
    """One CDR row with FreePBX-ish defaults; `values` override."""
    row: dict[str, Any] = {
        "calldate": "2026-11-25 10:00:00",
        "clid": '"Иван Петров" <+79161234567>',
        "src": "+79161234567",
        "dst": "200",
        "dcontext": "from-trunk",
        "channel": "PJSIP/trunk-00000001",
        "dstchannel": "PJSIP/101-00000002",
        "lastapp": "Queue",
        "lastdata": "support",
        "duration": 20,
        "billsec": 15,
        "disposition": "ANSWERED",
        "uniqueid": uniqueid,
        "linkedid": uniqueid,
        "did": "",
        "recordingfile": "",
        "cnum": "+79161234567",
        "cnam": "Иван Петров",
        "sequence": 1,
    }
    row.update(values)
    return row
