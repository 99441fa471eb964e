"""Diagnoses that named the wrong cause, and a paging that skipped rows (issue 11, item 16).

Unreachable host vs refused port; a group-writable config is not "readable by others"; `cti calls`
pages over calldate ties without losing rows; the AMI MD5 login works where MD5 is barred for
security (FIPS); `configure` with a wrong password while enabled says what happened and how to
save anyway.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import pytest
from test_ami_client import SECRET, FakeAMI, aio, read_action, serve_login
from test_deadlines import ami_in_thread, enabled_config

from cti_cli import config as cfg
from cti_cli.ami import login as login_module
from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import ConnectionRefused, HostUnreachable
from cti_cli.cdr.database import CdrTable
from cti_cli.cdr.queries import recent_call_ids

pytestmark = pytest.mark.timeout(60)

CTI = Path(sys.executable).with_name("cti")


# -- unreachable is not refused --------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENETUNREACH])
@aio
async def test_no_route_is_host_unreachable_not_connection_refused(code: int) -> None:
    loop = asyncio.get_running_loop()

    async def no_route(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    loop.create_connection = no_route  # type: ignore[assignment,method-assign]
    with pytest.raises(HostUnreachable) as err:
        await AMIClient().connect("192.0.2.7", 5038, timeout=2)
    assert not isinstance(err.value, ConnectionRefused)
    assert "192.0.2.7:5038" in str(err.value) and "route" in err.value.describe()
    assert "connection refused" not in err.value.describe()


# -- permissions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "said", "not_said"),
    [(0o620, "writable by others", "readable"), (0o640, "readable by others", "writable"),
     (0o666, "readable and writable by others", None)],
)  # fmt: skip
def test_permission_warning_names_what_others_may_do(
    tmp_path: Path, mode: int, said: str, not_said: str | None
) -> None:
    path = tmp_path / "cti.toml"
    cfg.save(path, cfg.Config())
    path.chmod(mode)
    warning = cfg.permission_warning(path)
    assert warning is not None and said in warning and f"{mode:04o}" in warning
    if not_said:
        assert not_said not in warning


# -- paging over calldate ties ---------------------------------------------------------------
class TieShufflingCursor:
    """Like MariaDB: ORDER BY is honoured, rows that tie on it come in any order, and that
    order may differ on every query (another plan, another page of the index)."""

    def __init__(self, rows: list[dict[str, Any]], seed: int) -> None:
        self.rows, self.rng = rows, random.Random(seed)
        self.result: list[tuple[object, ...]] = []
        self.description: list[tuple[str]] | None = None

    def __enter__(self) -> TieShufflingCursor:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None

    def execute(self, sql: str, params: Sequence[object]) -> None:
        columns = re.findall(r"`(\w+)`", sql.split(" FROM ")[0])
        order = re.findall(r"`(\w+)` DESC", sql.split(" ORDER BY ")[1])
        limit, offset = int(params[-2]), int(params[-1])  # type: ignore[call-overload]
        rows = list(self.rows)
        self.rng.shuffle(rows)  # ties: any order
        rows.sort(key=lambda r: tuple(r[c] for c in order), reverse=True)  # stable
        self.result = [tuple(r[c] for c in columns) for r in rows[offset : offset + limit]]

    def fetchall(self) -> list[tuple[object, ...]]:
        return self.result


def test_calls_paging_skips_no_call_when_many_legs_share_a_calldate() -> None:
    from datetime import datetime

    second = datetime(2026, 11, 25, 10, 0, 0)  # a busy second: 1000 legs, 100 of them ours
    rows = [
        {"calldate": second, "uniqueid": f"1795641007.{i}", "sequence": i,
         "channel": f"PJSIP/trunk-{i:08x}", "dstchannel": "", "src": "+79161234567"
         if i % 10 == 0 else f"+7495{i:07d}", "cnum": "", "dst": "200", "did": ""}
        for i in range(1000)
    ]  # fmt: skip
    columns = frozenset(rows[0])
    table = CdrTable("asteriskcdrdb", "cdr", columns, frozenset({"calldate", "uniqueid"}))
    wanted = {r["uniqueid"] for r in rows if r["src"] == "+79161234567"}
    for seed in range(5):
        conn = SimpleNamespace(cursor=lambda seed=seed: TieShufflingCursor(rows, seed))
        found = recent_call_ids(conn, table, since=None, number="+79161234567",  # type: ignore[arg-type]
                                limit=100)  # fmt: skip
        assert set(found) == wanted, f"seed {seed}: {len(wanted - set(found))} calls skipped"


# -- MD5 where it is barred for security (FIPS) ---------------------------------------------
@aio
async def test_md5_login_works_where_md5_is_barred_for_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fips_md5(data: bytes = b"", *, usedforsecurity: bool = True) -> Any:
        if usedforsecurity:  # what OpenSSL in FIPS mode makes hashlib do
            raise ValueError("[digital envelope routines] unsupported")
        return hashlib.md5(data, usedforsecurity=False)

    monkeypatch.setattr(login_module, "hashlib", SimpleNamespace(md5=fips_md5))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        await read_action(reader)

    async with FakeAMI(handler) as server:
        client = AMIClient()
        await client.connect("127.0.0.1", server.port, timeout=5)
        reply = await client.login("cti", SECRET, auth="md5")
        assert reply["Message"] == "Authentication accepted"
        await client.close()


# -- configure with a wrong password while enabled -------------------------------------------
def run_cti(conf: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run([str(CTI), "--config", str(conf), *args], input=stdin,
                          capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                          timeout=50, check=False)  # fmt: skip


def test_configure_wrong_password_while_enabled_keeps_the_old_settings_and_says_so(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "cti.toml"
    with ami_in_thread(serve_login) as port:
        enabled_config(conf, port, enabled=True)
        before = conf.read_bytes()
        proc = run_cti(conf, "configure", "--password-stdin", stdin="wrong-password\n")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        err = " ".join(proc.stderr.split())
        assert "authentication failed" in err, err
        assert "old settings" in err and "--disable" in err, err
        assert "cannot enable" not in err and "stays disabled" not in err, err
        assert conf.read_bytes() == before

        proc = run_cti(conf, "configure", "--password-stdin", "--disable",
                       stdin="wrong-password\n")  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "cannot enable" not in proc.stderr
        saved = cfg.load_file(conf)
        assert saved.enabled is False and saved.server.password.get_secret_value() == (
            "wrong-password"
        )
