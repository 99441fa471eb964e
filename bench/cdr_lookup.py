"""Benchmark `cti recordings UNIQUEID` and `cti calls --since 1h` on a big FreePBX `cdr` table.

Fills MariaDB (default: root@127.0.0.1:3306, database `cti_bench_cdr`) with N rows of
realistic calls spread over the last year — 1, 2 or 5 legs per call (direct, transfer,
ring-all queue rung twice), 80 % answered, FreePBX recording names — then measures, in-process
(no Python start-up): the full `recordings` command with a fresh connection each time
(p50/p99), `calls --since 1h`, and for context the same commands as subprocesses and a lookup
without the linkedid index.

    .venv/bin/python bench/cdr_lookup.py                 # 10M rows (fill ≈ 10 min on 2 cores)
    .venv/bin/python bench/cdr_lookup.py --rows 200000   # quick
    .venv/bin/python bench/cdr_lookup.py --reuse         # keep a table of the same size

The generation runs inside MariaDB (INSERT … SELECT from the SEQUENCE engine's seq_0_to_N), and
the secondary indexes are built afterwards, which is several times faster than row inserts.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import typer

from cti_cli.cdr.database import cdr_session
from cti_cli.cdr.dbaccess import read_dbaccess
from cti_cli.cdr.queries import call_rows
from cti_cli.cdr.recordings import locate
from cti_cli.cli.app import _register, app
from lab.mariadb import CDR_COLUMNS, CDR_KEYS, MariaDB

SPAN_SECONDS = 365 * 86400
# Each block of 10 rows holds 4 calls of 1, 2, 5 and 2 legs: (call within block, leg, legs).
_BLOCK = [(0, 0, 1), (1, 0, 2), (1, 1, 2), (2, 0, 5), (2, 1, 5), (2, 2, 5), (2, 3, 5), (2, 4, 5),
          (3, 0, 2), (3, 1, 2)]  # fmt: skip


def _case(index: int) -> str:
    whens = " ".join(f"WHEN {i} THEN {b[index]}" for i, b in enumerate(_BLOCK))
    return f"CASE s.seq % 10 {whens} END"


def fill(server: MariaDB, database: str, table: str, rows: int) -> float:
    """Create and fill the table; returns seconds spent."""
    started = time.monotonic()
    calls = (rows + 9) // 10 * 4
    step = SPAN_SECONDS / calls
    cols = ",\n".join(f"`{name}` {ddl}" for name, ddl in CDR_COLUMNS)
    call = f"(s.seq DIV 10 * 4 + {_case(0)})"
    leg, legs = _case(1), _case(2)
    epoch = f"(@base + FLOOR({call} * {step!r}))"
    uid = f"CONCAT({epoch}, '.', {call} % 1000)"
    src = f"CONCAT('+7916', LPAD({call} * 7919 % 10000000, 7, '0'))"
    dst = f"ELT(1 + {call} % 3, '200', '300', '101')"
    answered = f"({call} % 5 <> 0 AND {leg} = {legs} - 1)"
    calldate = f"FROM_UNIXTIME({epoch})"
    dstchannel = f"LPAD(HEX(({call} * 5 + {leg}) % 4294967295), 8, '0')"
    stamp = f"DATE_FORMAT({calldate}, '%Y%m%d-%H%i%s')"
    select = f"""
        SELECT {calldate}, CONCAT('"Клиент ', {call} % 1000, '" <', {src}, '>'), {src}, {dst},
          'from-trunk', CONCAT('PJSIP/trunk-', LPAD(HEX({call} % 16777216), 8, '0')),
          CONCAT('PJSIP/', 101 + ({leg} % 3), '-', {dstchannel}),
          IF({call} % 3 = 2, 'Dial', 'Queue'), 'support,t', 10 + {call} % 300,
          IF({answered}, {call} % 280, 0), IF({answered}, 'ANSWERED', 'NO ANSWER'), 3, '',
          {uid}, '', '74951234567',
          CONCAT('in-', {dst}, '-', {src}, '-', {stamp}, '-', {uid}, '.wav'),
          {src}, CONCAT('Клиент ', {call} % 1000), '', '', '', {uid}, '', {call} * 5 + {leg}
        FROM seq_0_to_{rows - 1} s"""
    names = ", ".join(f"`{n}`" for n, _ in CDR_COLUMNS)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{database}`")  # seq_0_to_N is resolved in the current database
        cur.execute(f"DROP TABLE IF EXISTS `{database}`.`{table}`")
        cur.execute(
            f"CREATE TABLE `{database}`.`{table}` ({cols}) ENGINE=InnoDB "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        )
        cur.execute(f"SET @base = UNIX_TIMESTAMP(NOW()) - {SPAN_SECONDS}")
        print(f"  inserting {rows:,} rows …", flush=True)
        cur.execute(f"INSERT INTO `{database}`.`{table}` ({names}) {select}")
        print(f"  rows in {time.monotonic() - started:.0f} s; building indexes …", flush=True)
        keys = ", ".join(f"ADD KEY `{k}` (`{k}`)" for k in CDR_KEYS)
        cur.execute(f"ALTER TABLE `{database}`.`{table}` {keys}")
    return time.monotonic() - started


def row_count(server: MariaDB, database: str, table: str) -> int | None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (database, table),
        )
        row = cur.fetchone()
        if not row or not row[0]:
            return None
        cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
        found = cur.fetchone()
        return int(found[0]) if found else None


def sample_calls(server: MariaDB, database: str, table: str, n: int) -> list[tuple[str, str]]:
    """(uniqueid, recordingfile) of n random calls, found through the uniqueid index."""
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT MIN(uniqueid), MAX(uniqueid) FROM `{table}`")
        row = cur.fetchone()
        assert row is not None
        low, high = int(float(row[0])), int(float(row[1]))
        picked: dict[str, str] = {}
        rng = random.Random(7)
        while len(picked) < n:
            cur.execute(
                f"SELECT uniqueid, recordingfile FROM `{table}` WHERE uniqueid >= %s "
                "ORDER BY uniqueid LIMIT 1",
                (str(rng.randint(low, high)),),
            )
            found = cur.fetchone()
            if found:
                picked[found[0]] = found[1]
    return list(picked.items())


def wav(seconds: float) -> bytes:
    import struct

    data = b"\x00\x00" * int(8000 * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(data)) + data)  # fmt: skip


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    p50 = statistics.median(ms)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)})"


def timed(run: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--database", default="cti_bench_cdr")
    parser.add_argument("--table", default="cdr")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    parser.add_argument("--samples", type=int, default=300, help="lookups to time")
    parser.add_argument("--reuse", action="store_true", help="keep a table of the same size")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--no-index-demo", action="store_true",
                        help="skip the lookup without the linkedid index")  # fmt: skip
    args = parser.parse_args()
    server = MariaDB(args.host, args.port, args.user, args.password)
    _register()

    print(f"cdr_lookup bench: {args.rows:,} rows in {args.database}.{args.table}")
    have = row_count(server, args.database, args.table)
    if args.reuse and have == args.rows:
        print(f"  reusing the existing table ({have:,} rows)")
    else:
        print(f"  fill: {fill(server, args.database, args.table, args.rows):.0f} s")

    with tempfile.TemporaryDirectory(prefix="cti-bench-") as tmp:
        home = Path(tmp)
        monitor = home / "monitor"
        calls = sample_calls(server, args.database, args.table, args.samples)
        for _uid, name in calls:  # a real file for every sampled call: path, stat, header read
            day = name.split("-")[-3]
            path = monitor / day[:4] / day[4:6] / day[6:8] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wav(0.5))
        (home / "dbaccess.properties").write_text(
            f"cti.cdr.url=jdbc:mysql://{args.host}:{args.port}/{args.database}\n"
            f"cti.cdr.user={args.user}\ncti.cdr.password={args.password}\n"
            f"cti.cdr.table={args.table}\n"
        )
        config = home / "cti.toml"
        config.write_text(
            f'[cdr]\ndbaccess = "{home / "dbaccess.properties"}"\nrecordings_dir = "{monitor}"\n'
        )
        config.chmod(0o600)
        command = typer.main.get_command(app)  # built once, as at process start

        def cti(*argv: str) -> str:
            """The command in-process (parsing, config, database, files, output)."""
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = command.main(["--config", str(config), *argv], standalone_mode=False)
            if code:
                raise SystemExit(f"cti {' '.join(argv)} failed ({code}): {err.getvalue()}")
            return out.getvalue() + err.getvalue()

        first = cti("recordings", calls[0][0], "--json")
        assert '"status": "present"' in first, first
        cti("calls", "--since", "1h")  # warm-up
        uids = [u for u, _ in calls]
        lookups = iter(uids * 2)
        print("  recordings UNIQUEID (in-process, new connection each):",
              percentiles(timed(lambda: cti("recordings", next(lookups)), len(uids))))  # fmt: skip
        access = read_dbaccess(home / "dbaccess.properties")
        finder_root = monitor

        def core(uid: str) -> None:
            with cdr_session(access) as (conn, table):
                rows = call_rows(conn, table, uid)
            for row in rows:
                locate(row.recordingfile or "", row.calldate, finder_root)

        lookups = iter(uids * 2)
        print(
            "  of which connect+introspect+SELECT+locate files    :",
            percentiles(timed(lambda: core(next(lookups)), len(uids))),
        )
        lookups = iter(uids * 2)
        print(
            "  recordings UNIQUEID --json                          :",
            percentiles(timed(lambda: cti("recordings", next(lookups), "--json"), len(uids))),
        )
        shown = cti("calls", "--since", "1h", "--json").count('"uniqueid"')
        print(
            f"  calls --since 1h ({shown} calls shown, limit 50)        :",
            percentiles(timed(lambda: cti("calls", "--since", "1h"), 50)),
        )
        print(
            "  calls (latest 50, no window)                        :",
            percentiles(timed(lambda: cti("calls"), 50)),
        )
        print("  calls --since 1d --number 8916… (a rare number)     :",
              percentiles(timed(lambda: cti("calls", "--since", "1d", "--number",
                                            "8 916 000-00-01"), 10)))  # fmt: skip

        exe = Path(sys.executable).with_name("cti")
        env = {**os.environ, "COLUMNS": "200"}
        sub = timed(lambda: subprocess.run([str(exe), "--config", str(config), "recordings",
                                            uids[0]], capture_output=True, env=env, check=True),
                    10)  # fmt: skip
        print("  for context, `cti recordings` as a process          :", percentiles(sub))

        if not args.no_index_demo:
            with server.connect(args.database) as conn, conn.cursor() as cur:
                cur.execute(f"ALTER TABLE `{args.table}` DROP INDEX `linkedid`")
                try:
                    slow = timed(lambda: cti("recordings", uids[1]), 3)
                    warned = "ADD INDEX `linkedid`" in cti("recordings", uids[1])
                finally:
                    start = time.monotonic()
                    cur.execute(f"ALTER TABLE `{args.table}` ADD KEY `linkedid` (`linkedid`)")
                    rebuilt = time.monotonic() - start
            print(f"  without the linkedid index (warning printed: {warned}):", percentiles(slow))
            print(f"  (re-adding the index took {rebuilt:.0f} s)")

    if args.drop:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{args.database}`")


if __name__ == "__main__":
    main()
