"""Regenerate docs/reliability.md: one table — fault or input, what must happen, what was measured.

    .venv/bin/python scripts/reliability.py              # run the tests, reuse the fuzz result
    .venv/bin/python scripts/reliability.py --fuzz 1000000   # also rerun bench/fuzz.py (≈10 min)

Each row names the tests that prove it; they are run here (pytest, one process) and the row
shows their outcome and time. The fuzz row comes from bench/results/fuzz.json, written by
`bench/fuzz.py --json` (rerun with --fuzz N). Tests that need the lab (MariaDB, Asterisk) are
reported "skipped" where it is unavailable, never as passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
FUZZ = ROOT / "bench" / "results" / "fuzz.json"
PY = ROOT / ".venv" / "bin" / "python"

# (fault or input, what must happen, tests: file::name prefixes)
ROWS: list[tuple[str, str, list[str]]] = [
    ("A folder on a recording's path swapped for a symlink while `--copy-to` runs",
     "never a byte from outside the recordings folder (openat, component by component)",
     ["test_cdr_files.py::test_racing_folder_swaps_never_copy_a_file_from_outside",
      "test_cdr_files.py::test_folder_swapped_for_a_symlink_after_locating_is_not_copied_from"]),
    ("ESC/BEL sequences and rich markup in caller names, CDR strings, file names",
     "shown as text on stdout, stderr and logs; JSON keeps them escaped",
     ["test_textsafe_cli.py::"]),
    ("Two `cti teams member` loops of 100 in parallel",
     "all 200 members kept (a lock around read-modify-write)",
     ["test_config_edits.py::test_parallel_member_loops_keep_every_member"]),
    ("Symlinked config; FIFO or /dev/zero as config/dbaccess; a CR/LF password; a 100 KB argument",
     "written through to the target; refused, not read; refused when given; echoed shortened",
     ["test_config_edits.py::"]),
    ("1M Newchannel without Hangup; calls silent for hours",
     "at most `[calls] max_active` calls (oldest evicted, counted, warned); idle ones expire",
     ["test_tracker_bounds.py::"]),
    ("Slow consumer of `watch --json`: reading paused, the Ping reply waits behind the backlog",
     "no \"did not answer Ping\", no reconnect, every event arrives; a peer silent after "
     "reading resumes is still found dead",
     ["test_ami_client.py::test_keepalive_does_not_blame_the_peer_for_our_slow_consumer",
      "test_ami_client.py::test_a_silent_peer_is_still_dead_after_a_pause_of_ours",
      "test_ami_client.py::test_slow_consumer_gets_every_event_through_back_pressure"]),
    ("`cti enable --timeout 2`, the peer logs in and then goes silent",
     "≈2 s in all, exit 1, not enabled, no permission warning; `watch` waits `server.timeout`",
     ["test_deadlines.py::test_check_against",
      "test_deadlines.py::test_enable_with_timeout_2",
      "test_deadlines.py::test_watch_connection_honours_server_timeout"]),
    ("A peer that logs in and then sends garbage",
     "retried with growing backoff; the backoff starts over only after a healthy connection",
     ["test_ami_client.py::test_a_peer_that_logs_in_then_sends_garbage_is_backed_off",
      "test_ami_client.py::test_backoff_starts_over_after_a_healthy_connection"]),
    ("A database port that accepts and never answers (connectTimeout=1500)",
     "`cti recordings` fails within connectTimeout saying \"timed out\" (was 60 s)",
     ["test_deadlines.py::test_recordings_against_a_silent_database"]),
    ("Damaged messages in a replay; JSON 5,000 deep or with non-string values; piping into `head`",
     "skipped and counted with their byte offset; one-line errors; a closed pipe ends quietly",
     ["test_tracker_sources.py::"]),
    ("An oversize message among complete ones in one read",
     "the neighbours are delivered, then the protocol error",
     ["test_ami_codec.py::test_oversize"]),
    ("Unreachable host; group-writable config; calldate ties across pages; FIPS MD5; wrong "
     "password in `configure` while enabled",
     "\"host unreachable\"; \"writable by others\"; no call skipped; login works; old settings "
     "stay, `--disable` named",
     ["test_diagnoses.py::"]),
    ("Delivered outbox rows and operator history older than `[agent] retention`",
     "purged (default 7 days), also from disk and after a restart",
     ["test_retention.py::"]),
    ("Every command run with the AMI password and a webhook secret in the config",
     "neither secret in any stdout, stderr, log or `--json`",
     ["test_no_secret_leaks.py::"]),
    ("Mutated real captures (hypothesis, a few hundred per run)",
     "nothing but ProtocolError/ReplayInputError escapes; buffers bounded",
     ["test_fuzz.py::"]),
]


def run_tests(selectors: list[str]) -> dict[str, tuple[str, float]]:
    files = sorted({s.split("::")[0] for s in selectors})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run([str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *(f"tests/{f}" for f in files)],
                       cwd=ROOT, check=False)  # fmt: skip
        results: dict[str, tuple[str, float]] = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('file') or case.get('classname', '').split('.')[-1] + '.py'}"
            key = f"{Path(name).name}::{case.get('name')}"
            outcome = "passed"
            if case.find("skipped") is not None:
                outcome = "skipped"
            elif case.find("failure") is not None or case.find("error") is not None:
                outcome = "FAILED"
            results[key] = (outcome, float(case.get("time", 0)))
        return results


def measured(selectors: list[str], results: dict[str, tuple[str, float]]) -> str:
    hits = [(k, v) for k, v in results.items() if any(k.startswith(s) for s in selectors)]
    if not hits:
        return "not run"
    counts: dict[str, int] = {}
    for _, (outcome, _seconds) in hits:
        counts[outcome] = counts.get(outcome, 0) + 1
    slowest = max(seconds for _, (_o, seconds) in hits)
    parts = [f"{n} {o}" for o, n in sorted(counts.items())]
    return f"{', '.join(parts)} (slowest {slowest:.1f} s)"


def fuzz_row() -> tuple[str, str, str]:
    what = ("nothing but ProtocolError/ReplayInputError escapes; decoder ≤ 1 MiB held, tracker "
            "≤ max_active calls; memory bounded")  # fmt: skip
    if not FUZZ.exists():
        return ("≥1M mutated real captures (`bench/fuzz.py`)", what, "not run yet")
    r = json.loads(FUZZ.read_text("utf-8"))
    got = (f"{r['inputs']:,} inputs ({r['seeds']} seeds, {r['heavy']:,} with 1–2 MB values), "
           f"{r['findings']} findings; {r['messages']:,} messages, {r['protocol_errors']:,} "
           f"protocol errors, {r['damaged']:,} damaged skipped, {r['replay_refused']:,} replays "
           f"refused; RSS {r['rss_warm_mib']} → {r['rss_peak_mib']} MiB per worker; "
           f"{r['wall_seconds']:.0f} s on {r['workers']} processes ({r['when']})")  # fmt: skip
    return ("≥1M mutated real captures (`bench/fuzz.py`)", what, got)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, metavar="N", help="rerun bench/fuzz.py with N inputs")
    args = parser.parse_args()
    if args.fuzz:
        subprocess.run([str(PY), "bench/fuzz.py", "--inputs", str(args.fuzz), "--json",
                        str(FUZZ)], cwd=ROOT, check=False)  # fmt: skip
    selectors = [s for _, _, tests in ROWS for s in tests]
    results = run_tests(selectors)
    lines = [
        "# Reliability",
        "",
        "Faults and hostile input, what cti must do, and what was measured. Generated by",
        "`.venv/bin/python scripts/reliability.py` (add `--fuzz 1000000` to rerun the fuzzer);",
        "do not edit by hand. \"skipped\" means the lab (MariaDB/Asterisk) was not available.",
        "",
        "| Fault or input | What must happen | Measured | Tests |",
        "|---|---|---|---|",
    ]
    for fault, must, tests in ROWS:
        names = ", ".join(f"`{t.rstrip(':')}`" for t in tests)
        lines.append(f"| {fault} | {must} | {measured(tests, results)} | {names} |")
    fault, must, got = fuzz_row()
    lines.append(f"| {fault} | {must} | {got} | `bench/fuzz.py` |")
    lines += ["", f"Generated {time.strftime('%Y-%m-%d %H:%M %z')}, Python "
              f"{sys.version.split()[0]}.", ""]  # fmt: skip
    DOC.write_text("\n".join(lines), "utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    failed = [k for k, (o, _) in results.items() if o == "FAILED"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
