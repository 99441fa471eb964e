"""Regenerate docs/reliability.md: one table — fault or input, what must happen, what was measured.

    .venv/bin/python scripts/reliability.py              # run the tests, reuse the fuzz result
    .venv/bin/python scripts/reliability.py --fuzz 1000000   # also rerun bench/fuzz.py (≈10 min)

Each row names the tests that prove it; they are run here (pytest, one process) and the row
shows their outcome and time, plus what the tests measured: a test calls
`tests/fault_support.record(recovery_s=…, pops_lost=…)`, which writes JSON into the folder this
script names in $CTI_MEASURE_DIR. The fuzz row comes from bench/results/fuzz.json, written by
`bench/fuzz.py --json` (rerun with --fuzz N). Tests that need the lab (MariaDB, Asterisk) are
reported "skipped" where it is unavailable, never as passed.
"""

from __future__ import annotations

import argparse
import json
import os
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
MEASURE_ENV = "CTI_MEASURE_DIR"  # tests/fault_support.record writes there

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
    # real-lab faults: Asterisk 22, real `cti watch` / `cti agent` processes, a real receiver
    ("Lab: the AMI password changed in manager.conf under a running `watch --json` and `agent` "
     "(`manager reload`, sessions kicked)",
     "one line each, naming the user: \"…logged in before: was the AMI password changed in "
     "Asterisk's manager.conf? fix server.password …\"; no traceback, no secret; retries "
     "doubling from 0.5 s (agent) / 1 s (watch); /healthz 503 with that reason; watch logs in "
     "once the old secret is back, the agent once its config has the new one (re-read live); "
     "the next call shown and popped",
     ["test_faults_lab.py::test_ami_password_changed_under_watch_and_agent"]),
    ("Lab: Asterisk SIGKILLed mid-call, restarted a second later",
     "watch and agent reconnect, end the call once as `lost` (reconcile), show / pop the next "
     "call; the agent healthy within 5 s of AMI's return",
     ["test_faults_lab.py::test_asterisk_killed_mid_call_watch",
      "test_agent_lab.py::test_asterisk_restart_agent_reconnects"]),
    ("Lab: Asterisk stalled (SIGSTOP: sockets open, nothing answers), then resumed",
     "found dead by the keepalive Ping within two ping intervals (20 s each, `server.timeout` "
     "3 s) by watch and agent; both log in again after SIGCONT; the next call popped",
     ["test_faults_lab.py::test_stalled_asterisk"]),
    ("Lab: slow service desk — 2 s per request, 3 s (past the 2.5 s webhook timeout) for the "
     "first 8 s; 4 calls 1.5 s apart",
     "every pop and call event delivered, in order per call, none dead; a timed-out request "
     "comes again with the same key and body; AMI never dropped",
     ["test_faults_lab.py::test_slow_service_desk"]),
    ("Lab: the agent's config replaced (new inode) by invalid TOML while it runs",
     "one line with the file, line and column; the last good config keeps running, healthy, "
     "the next call popped; the fixed file is picked up (`watch` reads its config once)",
     ["test_faults_lab.py::test_config_replaced_by_invalid_toml"]),
    ("`[agent] state_dir` unusable at start: a path through a regular file, a read-only disk, a "
     "full disk, a full disk holding a killed agent's outbox (tmpfs; the tests run as root, "
     "where chmod stops nothing)",
     "exit 1, one line: the folder, `[agent] state_dir`, the OS's or SQLite's reason, what to "
     "do (a write is tried at start: SQLite opens and reads on a full disk)",
     ["test_outbox_disk_lab.py::test_state_dir_not_writable_at_start"]),
    ("Lab: the outbox's disk fills up while the agent runs (tmpfs), then frees",
     "logged once, /healthz 503 \"outbox not writable\", AMI stays up, no crash loop; call "
     "events and pops held in memory in order (deliveries paused), written and delivered when "
     "the disk takes them again; operator pages go on from memory",
     ["test_outbox_disk_lab.py::test_disk_full_while_running"]),
    ("Lab: the state folder removed (`rm -rf`) while deliveries wait (desk answers 503)",
     "told once; the outbox (every row) and its lock written again, a second agent refused; "
     "after SIGKILL and a restart the waiting pop is delivered, once",
     ["test_outbox_disk_lab.py::test_state_dir_removed_while_running"]),
    ("A service desk's JSON with half a character (`\\ud83d`: an emoji cut in two) in an "
     "employee's name",
     "the pop goes out (webhook and page) with U+FFFD there, the call's later events and the "
     "next call too; the pages file is written; SIGTERM exits 0",
     ["test_operator_page.py::test_half_a_character_from_the_service_desk_breaks_no_pop"]),
    ("A PBX (or a proxy in front of it) that never answers `Filter`, or drops the connection "
     "on it; Filter taken half-way by `cti watch`",
     "said once, not asked again: the next session reads every event and pops",
     ["test_ami_filters.py::test_an_agent_whose_filters_go_unanswered",
      "test_ami_filters.py::test_watch_drops_a_session_whose_filters_went_in_half_way"]),
    ("Asterisk 18.24, 20.9, 21.4, certified and GIT releases (no advanced filters: the empty "
     "Filter would be a match-all regex)",
     "not asked for filters (the release read from `CoreSettings`); 18.25, 20.10, 21.5 and 22 "
     "are; `cti doctor` does not blame `write = system` then",
     ["test_ami_filters.py::test_an_older_asterisk_is_asked_only_from_the_release",
      "test_doctor.py::test_noise_an_asterisk_cannot_filter_is_not_blamed"]),
    ("Pages file, operators.json nested 100,000 deep, not JSON, of the wrong shape; a Zammad "
     "answer nested 1,500 deep",
     "one warning, the hub starts empty and the damaged file is kept as `.damaged` (never "
     "overwritten); no access and what to do; no action, no crash",
     ["test_operator_page.py::test_a_damaged_pages_file_is_kept_aside",
      "test_operator_page.py::test_missing_or_damaged_store_gives_no_access",
      "test_webhook_delivery.py::test_a_zammad_answer_nested_thousands_deep"]),
    ("A caller name of 5,000 characters (an emoji at the cut); a pasted Zammad URL with a "
     "trailing space; ports past 65535",
     "the page shows 100 characters (the whole name in the tooltip), the number and card in "
     "sight, the log line 120; the URL shown as scheme://host/•••••• (its token never); a "
     "config error naming the key",
     ["test_operator_browser.py::test_a_caller_name_thousands_long",
      "test_config.py::test_a_bad_webhook_url_is_named_without_its_token",
      "test_config.py::test_a_port_past_65535_is_a_config_error"]),
]

# how a measurement a test recorded reads in the table (unknown keys: `key=value`)
LABELS: dict[str, str] = {
    "recovery_s": "back {v} s after the fault ended",
    "agent_recovery_s": "agent back {v} s after the fault ended",
    "watch_recovery_s": "watch back {v} s after",
    "agent_retry_delays_s": "agent retried after {v} s",
    "watch_retry_delays_s": "watch retried after {v} s",
    "ping_interval_s": "ping every {v} s",
    "agent_detected_s": "agent found it dead in {v} s",
    "watch_detected_s": "watch in {v} s",
    "outage_s": "Asterisk down {v} s",
    "lost_calls_ended": "{v} lost call ended",
    "calls": "{v} calls",
    "calls_while_full": "{v} calls while full",
    "full_for_s": "disk full {v} s",
    "healthy_again_s": "healthy {v} s after",
    "rewritten_after_s": "outbox written again {v} s after the removal",
    "webhook_timeouts": "{v} webhook timeouts",
    "same_key_redeliveries": "{v} same-key redeliveries",
    "ami_events": "{v} AMI events processed",
    "pops_delivered": "pops: {v} delivered",
    "pops_lost": "{v} lost",
    "pops_duplicated": "{v} duplicated",
    "peak_rss_mib": "peak RSS {v} MiB",
}


Measures = dict[str, dict[str, object]]


def run_tests(selectors: list[str]) -> tuple[dict[str, tuple[str, float]], Measures]:
    files = sorted({s.split("::")[0] for s in selectors})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        folder = Path(tmp) / "measured"
        folder.mkdir()
        env = {**os.environ, MEASURE_ENV: str(folder)}
        subprocess.run([str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *(f"tests/{f}" for f in files)],
                       cwd=ROOT, check=False, env=env)  # fmt: skip
        measures: Measures = {}
        for path in sorted(folder.glob("*.json")):
            data = json.loads(path.read_text("utf-8"))
            measures[data["test"]] = data["values"]
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
        return results, measures


def _value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def measurements(values: dict[str, object]) -> str:
    """One test's recorded measurements as a phrase, in the order the test gave them."""
    parts = [LABELS.get(key, f"{key}={{v}}").format(v=_value(value))
             for key, value in values.items() if value is not None]  # fmt: skip
    return ", ".join(parts)


def measured(
    selectors: list[str], results: dict[str, tuple[str, float]], measures: Measures | None = None
) -> str:
    hits = [(k, v) for k, v in results.items() if any(k.startswith(s) for s in selectors)]
    if not hits:
        return "not run"
    counts: dict[str, int] = {}
    for _, (outcome, _seconds) in hits:
        counts[outcome] = counts.get(outcome, 0) + 1
    slowest = max(seconds for _, (_o, seconds) in hits)
    parts = [f"{n} {o}" for o, n in sorted(counts.items())]
    summary = f"{', '.join(parts)} (slowest {slowest:.1f} s)"
    measures = measures or {}
    found = [measurements(measures[k]) for k, (outcome, _s) in hits
             if outcome == "passed" and measures.get(k)]  # fmt: skip
    return "; ".join([summary, *found])


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
    results, measures = run_tests(selectors)
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
        lines.append(f"| {fault} | {must} | {measured(tests, results, measures)} | {names} |")
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
