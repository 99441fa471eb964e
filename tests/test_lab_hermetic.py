"""The lab is hermetic: each instance runs its own mariadbd and leaves the machine's MariaDB
server (if one runs on 127.0.0.1:3306) exactly as it was; it works with nothing on 3306."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pymysql
import pytest
from needs import unavailable

from lab import Lab, LabUnavailable, PrivateMariaDB
from lab.ports import tcp_port_free

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
MACHINE_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")


def _machine_server() -> pymysql.Connection[Any] | None:
    """An admin connection to the machine's own server, if one answers (root over its socket
    or passwordless root over TCP 3306); None when there is none or it lets us not in."""
    attempts: list[dict[str, Any]] = [{"unix_socket": s} for s in MACHINE_SOCKETS]
    attempts.append({"host": "127.0.0.1", "port": 3306})
    for where in attempts:
        try:
            return pymysql.connect(user="root", password="", connect_timeout=3, **where)
        except pymysql.MySQLError:
            continue
    return None


def machine_snapshot() -> dict[str, Any] | None:
    """Databases, users and database grants of the machine's server (None: none answers)."""
    conn = _machine_server()
    if conn is None:
        return None
    with conn, conn.cursor() as cur:
        snapshot: dict[str, Any] = {}
        for key, sql in (
            ("databases", "SHOW DATABASES"),
            ("users", "SELECT user, host FROM mysql.user"),
            ("db_grants", "SELECT host, db, user FROM mysql.db"),
        ):
            cur.execute(sql)
            snapshot[key] = sorted(tuple(str(v) for v in row) for row in cur.fetchall())
        return snapshot


def test_lab_leaves_the_machine_mariadb_exactly_as_it_was() -> None:
    before = machine_snapshot()
    listening = not tcp_port_free(3306)
    try:
        lab = Lab.start()
    except LabUnavailable as exc:
        unavailable(f"lab unavailable: {exc}")
    folder = lab.database.folder
    try:
        assert lab.info.mysql_port != 3306
        assert folder.is_relative_to(lab.layout.host_dir)  # in the instance's folder
        assert lab.database.running()
        dsn = lab.layout.host("etc/odbc.ini").read_text()
        assert f"Port = {lab.info.mysql_port}" in dsn and "3306" not in dsn
        props = lab.info.dbaccess_file.read_text()
        assert f"127.0.0.1:{lab.info.mysql_port}/" in props
        assert machine_snapshot() == before  # provisioned: on its own server only
    finally:
        lab.stop()
    assert not folder.exists()
    assert not lab.layout.host_dir.exists()
    assert not lab.database.running()
    after = machine_snapshot()
    assert after == before, "the lab changed the machine's MariaDB server"
    assert listening == (not tcp_port_free(3306))  # started or stopped nothing there


def test_private_servers_are_apart_and_root_only_via_socket(tmp_path: Path) -> None:
    try:
        first = PrivateMariaDB.start(tmp_path / "a", tied=True)
    except LabUnavailable as exc:
        unavailable(f"MariaDB unavailable: {exc}")
    try:
        second = PrivateMariaDB.start(tmp_path / "b", tied=True)
        try:
            assert first.server.port != second.server.port
            assert first.server.unix_socket != second.server.unix_socket
            for server in (first.server, second.server):
                with pytest.raises(pymysql.MySQLError):  # root only through the socket
                    pymysql.connect(host="127.0.0.1", port=server.port, user="root",
                                    password="", connect_timeout=3)  # fmt: skip
            assert oct((tmp_path / "a").stat().st_mode & 0o777) == "0o700"
        finally:
            second.stop()
    finally:
        first.stop()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


NO_3306_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from lab import Lab
    from lab.ports import tcp_port_free

    assert tcp_port_free(3306)  # nothing listens on 3306 in this network namespace
    with Lab.start() as lab:
        caller = "+79160003306"
        lab.call("101", caller=caller, caller_name="Hermetic", talk=1.0)
        lab.wait_idle(60)
        rows = []
        deadline = time.monotonic() + 20
        while not rows and time.monotonic() < deadline:
            conn = lab.database.server.connect(lab.info.mysql_db)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT uniqueid FROM cdr WHERE src = %s", (caller,))
                rows = cur.fetchall()
            time.sleep(0.2)
        uniqueid = rows[0][0] if rows else None
        by_reader = lab.cdr_rows(uniqueid) if uniqueid else []
        print(json.dumps({"port": lab.info.mysql_port, "rows": len(by_reader),
                          "dispositions": [r["disposition"] for r in by_reader]}))
    """
)


def test_lab_works_with_nothing_listening_on_3306() -> None:
    """The lab in a network namespace of its own, where nothing is on 127.0.0.1:3306."""
    if os.geteuid() != 0:
        unavailable("the lab needs root (and so does unshare --net)")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        unavailable(f"no network namespaces here: {probe.stderr.decode(errors='replace')}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
         sys.executable, NO_3306_SCRIPT],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["port"] != 3306
    assert result["rows"] >= 1 and "ANSWERED" in result["dispositions"]


def test_lab_call_names_the_uniqueid_and_no_default_caller_name(lab: Lab) -> None:
    """`python -m lab call` prints the caller channel's uniqueid (the CDR key) and, without
    --name, sends no caller name."""
    from lab.__main__ import build_parser, caller_uniqueid
    from lab.amiraw import RawAmi

    caller = "+79160001212"
    ami = RawAmi(lab.info.ami_host, lab.info.ami_port)
    try:
        ami.login(lab.info.ami_user, lab.info.ami_secret)
        lab.call("101", caller=caller, caller_name="", talk=1.0)
        uniqueid = caller_uniqueid(ami, caller)
    finally:
        ami.close()
    lab.wait_idle(60)
    assert uniqueid
    rows: list[dict[str, object]] = []
    deadline = time.monotonic() + 20
    while not rows and time.monotonic() < deadline:
        rows = lab.cdr_rows(uniqueid)
        time.sleep(0.2)
    assert rows and all(r["src"] == caller and r["cnam"] == "" for r in rows)
    assert build_parser().parse_args(["call", "200"]).name == ""  # no default caller name
