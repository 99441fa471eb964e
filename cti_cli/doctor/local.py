"""`cti doctor` checks of this host: the config, on/off, the rule, the employee directory, the
recordings folder and the agent's health endpoint (plus, from their modules, webhooks and the
CDR database)."""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cti_cli import config as cfg
from cti_cli.doctor import Check, fail, ok, warn
from cti_cli.doctor.mounts import mount_of

RECORDING_SUFFIXES = (".wav", ".wav49", ".gsm", ".mp3", ".ogg", ".opus", ".sln", ".g722")
SCAN_LIMIT = 50_000  # directory entries looked at for the newest recording
SCAN_SECONDS = 3.0
STALE_RECORDING = 7 * 86400
MAX_LISTED = 5
_PHONE_SEPARATORS = re.compile(r"[,;/\r\n]")


# ---------------------------------------------------------------- config, on/off


def config_checks(path: Path) -> tuple[list[Check], cfg.Config | None]:
    """The config parses (and the secrets its *_file keys name are readable) and is private."""
    name = "config"
    if not path.exists():
        return [fail("config", name, f"{path} does not exist",
                     "Create it with cti configure, or give the right one with --config PATH.")], None  # fmt: skip  # noqa: E501
    try:
        config = cfg.load(path)
    except cfg.ConfigError as exc:
        problems = exc.problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return [fail("config", name, f"{problems[0]}{more}; nothing else checked",
                     f"Correct the named key in {path}; cti show lists every problem.")], None  # fmt: skip  # noqa: E501
    mode = stat.S_IMODE(path.stat().st_mode)
    shown = f"{path} parses; mode {mode:04o}"
    if mode & 0o007:
        return [fail("config", name, f"{path} parses but is readable by others (mode "
                     f"{mode:04o}) and holds the AMI password", f"Run chmod 600 {path}.")], config  # fmt: skip  # noqa: E501
    if mode & 0o070:
        return [warn("config", name, f"{shown}: the group may read the AMI password",
                     f"Run chmod 600 {path}, unless its group holds only the agent's user "
                     "(root:cti 0640 as in deploy/).")], config  # fmt: skip
    return [ok("config", name, shown)], config


def enabled_check(config: cfg.Config) -> Check:
    # not the rule file (cti enable checks it too): it has a line of its own, so a broken rule
    # does not turn this one red as well
    problems = config.incomplete()
    if config.enabled and problems:
        return fail("enabled", "integration", f"enabled, but {problems[0]}",
                    "Complete the config as that line says; the agent needs it.")
    if config.enabled:
        return ok("enabled", "integration", "enabled: the agent follows calls and sends pops")
    if problems:
        return warn("enabled", "integration", f"disabled; cti enable would refuse: {problems[0]}",
                    "Complete that part of the config, then run cti enable.")
    return warn("enabled", "integration", "disabled: the agent follows no calls, sends no pops",
                "Run cti enable once the lines below are OK.")


# ---------------------------------------------------------------- rule


async def rule_check(config: cfg.Config) -> Check:
    """The rule in effect compiles and handles the sample call well within its timeout."""
    from cti_cli.rules import effective_rule
    from cti_cli.rules.catalog import trial, trial_summary

    path = effective_rule(config.rule.script)
    name = "rule"
    result = await trial(path, config)
    if result.outcome is None:
        return fail("rule", name, result.error or f"{path} does not load",
                    "Fix the rule at that line (cti rule test CAPTURE --rule FILE tries it "
                    "offline), or switch with cti rule use NAME.")  # fmt: skip
    if result.error:
        if "did not finish within" in result.error:
            fix = ("Make on_call faster (lookups with short timeouts) or raise [rule] timeout; "
                   "until then every pop is a plain request form.")  # fmt: skip
        else:
            fix = ("Fix the rule at that line; until then it sends a plain request form "
                   "(cti rule test CAPTURE tries it).")  # fmt: skip
        return fail("rule", name, f"{path}: {result.error}", fix)
    summary = f"{path}: {trial_summary(result)}"
    if result.seconds > result.timeout / 2:
        return warn("rule", name, f"{summary}, more than half of [rule] timeout "
                    f"({result.timeout:g} s)", "Speed up its lookups or raise [rule] timeout, "
                    "or busy moments will send plain request forms.")  # fmt: skip
    return ok("rule", name, summary)


# ---------------------------------------------------------------- directory


def _unnormalisable(data: bytes, region: str) -> tuple[int, list[str]]:
    """Phone numbers of the CSV that do not read as phone numbers: (count, first few)."""
    from cti_cli.agent.numbers import normalize_number

    text = data.decode("utf-8-sig", "replace")

    def header(delimiter: str) -> list[str]:
        try:
            first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        except csv.Error:
            return []
        return [c.strip().lower() for c in first]

    delimiter = max((";", ",", "\t"), key=lambda d: ("phone" in header(d), len(header(d))))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = [c.strip().lower() for c in next(reader)]
    except (StopIteration, csv.Error):
        return 0, []
    if "phone" not in columns:
        return 0, []
    at = columns.index("phone")
    count, listed = 0, list[str]()
    line = reader.line_num
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            cell = row[at] if at < len(row) else ""
            for part in _PHONE_SEPARATORS.split(cell):
                part = part.strip()
                if part and normalize_number(part, region) is None:
                    count += 1
                    if len(listed) < MAX_LISTED:
                        listed.append(f"line {start} {part[:30]!r}")
    except csv.Error:
        pass
    return count, listed


def directory_check(config: cfg.Config) -> Check:
    from cti_cli.agent.directory import (
        CsvDirectory,
        DirectoryError,
        HttpDirectory,
        open_directory,
    )
    from cti_cli.rules.catalog import SAMPLE_CALL

    name = "directory"
    source = config.directory.source
    if not source:
        return warn("directory", name, "[directory] source is not set: no caller gets an "
                    "employee card", 'Set [directory] source = "csv:/etc/cti/employees.csv" '
                    "(or the service desk's http(s) URL template) in the config.")  # fmt: skip
    try:
        directory = open_directory(config.directory)
    except DirectoryError as exc:
        return fail("directory", name, str(exc), "Fix [directory] source or the file it names.")
    if isinstance(directory, HttpDirectory):
        number = SAMPLE_CALL["caller"]
        started = time.perf_counter()
        try:
            card = directory.find(number)
        except DirectoryError as exc:
            return fail("directory", name, str(exc), "Fix the URL template, the token in "
                        "[directory] headers, or the service desk API it calls.")  # fmt: skip
        finally:
            directory.close()
        took = (time.perf_counter() - started) * 1000
        found = "an employee" if card else "nobody (404 or null)"
        return ok("directory", name, f"{directory.describe()}: answered in {took:.0f} ms, "
                  f"sample number {number} → {found}")  # fmt: skip
    assert isinstance(directory, CsvDirectory)
    detail = directory.describe()
    try:
        data = directory.path.read_bytes()
    except OSError:
        data = b""
    bad, listed = _unnormalisable(data, config.directory.region)
    duplicates = [w for w in directory.warnings if "already employee" in w]
    if bad or duplicates:
        parts = []
        if bad:
            parts.append(f"{bad} phone number(s) do not normalise: {', '.join(listed)}"
                         + (" …" if bad > len(listed) else ""))
        if duplicates:
            parts.append(f"{len(duplicates)} number(s) listed twice: {duplicates[0]}")
        return warn("directory", name, f"{detail}; {'; '.join(parts)}",
                    "Write those cells as full numbers (+7 916 123-45-67, or national with "
                    f"[directory] region {config.directory.region}); internal extensions find "
                    "nobody.")  # fmt: skip
    return ok("directory", name, detail)


# ---------------------------------------------------------------- recordings


def _newest_recording(folder: Path) -> tuple[Path | None, float, int, bool]:
    """(newest file, its mtime, files seen, whether the scan was cut short). Folders are
    visited newest first, so on a large archive the newest file is found early."""
    deadline = time.monotonic() + SCAN_SECONDS
    newest: Path | None = None
    newest_at = 0.0
    seen = entries = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        subdirs: list[tuple[float, Path]] = []
        try:
            with os.scandir(current) as it:
                for entry in it:
                    entries += 1
                    if entries > SCAN_LIMIT or time.monotonic() > deadline:
                        return newest, newest_at, seen, True
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        subdirs.append((st.st_mtime, Path(entry.path)))
                    elif stat.S_ISREG(st.st_mode) and entry.name.lower().endswith(
                        RECORDING_SUFFIXES
                    ):
                        seen += 1
                        if st.st_mtime > newest_at:
                            newest, newest_at = Path(entry.path), st.st_mtime
        except OSError:
            continue
        stack.extend(path for _, path in sorted(subdirs))  # newest popped first
    return newest, newest_at, seen, False


def _age(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = int(seconds // size)
            return f"{value} {unit}{'s' if unit == 'day' and value != 1 else ''}"
    return f"{max(0, int(seconds))} s"


def recordings_checks(config: cfg.Config) -> list[Check]:
    folder = Path(config.cdr.recordings_dir).expanduser()
    name = "recordings folder"
    fix_missing = ("Mount the recordings share there, or set [cdr] recordings_dir to where "
                   "Asterisk's MixMonitor writes (cti configure --recordings-dir).")  # fmt: skip
    try:
        st = folder.stat()
    except FileNotFoundError:
        return [fail("recordings.folder", name, f"{folder} does not exist", fix_missing)]
    except OSError as exc:
        return [fail("recordings.folder", name, f"{folder}: {exc.strerror}", fix_missing)]
    if not stat.S_ISDIR(st.st_mode):
        return [fail("recordings.folder", name, f"{folder} is not a folder", fix_missing)]
    try:
        with os.scandir(folder) as it:
            empty = next(it, None) is None
    except OSError as exc:
        return [fail("recordings.folder", name, f"{folder} cannot be read: {exc.strerror}",
                     "Give this user read access (e.g. add it to the asterisk group).")]
    mount = mount_of(folder)
    where = mount.describe() if mount else "file system unknown (no /proc/self/mountinfo)"
    out = [ok("recordings.folder", name, f"{folder}: readable, on a {where}")]
    newest, at, seen, cut = _newest_recording(folder)
    rec = "newest recording"
    if newest is None:
        local = mount is not None and not mount.network
        hint = " — is the share mounted?" if local and empty else ""
        out.append(warn("recordings.newest", rec,
                        f"no recording in {folder}" + (" (scan cut short)" if cut else "") + hint,
                        "Check that Asterisk records calls into this folder (MixMonitor) and, "
                        "for a share, that it is mounted here."))  # fmt: skip
        return out
    age = time.time() - at
    shown = f"{_age(age)} old: {newest.relative_to(folder)} ({seen} recording(s) looked at)"
    if age > STALE_RECORDING:
        out.append(warn("recordings.newest", rec, shown,
                        "Check that calls are still recorded here (MixMonitor target, the share "
                        "mounted, the PBX writing to this copy)."))  # fmt: skip
    else:
        out.append(ok("recordings.newest", rec, shown))
    return out


# ---------------------------------------------------------------- agent


def _health_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/healthz"


def agent_check(config: cfg.Config) -> Check:
    listen = config.agent.admin_listen or config.agent.listen
    url = _health_url(listen)
    name = "agent"
    try:
        reply = httpx.get(url, timeout=3.0)
        data = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        detail = f"nothing answers on {url} ({type(exc).__name__})"
        start = "Start the agent (systemctl start cti-agent, or cti agent)"
        if not config.enabled:
            return warn("agent", name, detail, f"{start} once the integration is enabled.")
        return fail("agent", name, detail, f"{start}; check journalctl -u cti-agent for why it "
                    "stopped.")  # fmt: skip
    if not isinstance(data, dict):
        return fail("agent", name, f"{url} answered HTTP {reply.status_code} without the "
                    "agent's JSON", f"Check that [agent] listen ({listen}) is this agent's.")
    calls = data.get("active_calls")
    pending = (data.get("outbox") or {}).get("pending")
    if reply.status_code == 200 and data.get("status") == "ok":
        return ok("agent", name, f"{url}: ok, logged in to AMI, {calls} call(s) now, "
                  f"{pending} delivery(ies) waiting")  # fmt: skip
    reason = str(data.get("reason") or data.get("status") or f"HTTP {reply.status_code}")
    if reason == "integration disabled":
        return warn("agent", name, f"{url}: running, idle: integration disabled",
                    "Run cti enable.")
    return fail("agent", name, f"{url}: degraded: {reason}",
                "Fix what the reason names (the lines above show it); the agent recovers by "
                "itself.")  # fmt: skip


# ---------------------------------------------------------------- the blocking part


def blocking_checks(config: cfg.Config) -> list[Check]:
    from cti_cli.doctor import unexpected
    from cti_cli.doctor.cdr import cdr_checks
    from cti_cli.doctor.webhooks import webhook_checks

    Checker = Callable[[cfg.Config], Check | list[Check]]

    def guarded(id: str, name: str, check: Checker) -> list[Check]:
        try:
            result = check(config)
        except Exception as exc:  # one broken check must not hide the others
            return [unexpected(id, name, exc)]
        return result if isinstance(result, list) else [result]

    out = guarded("directory", "directory", directory_check)
    out += guarded("webhooks", "webhooks", webhook_checks)
    out += guarded("cdr", "CDR", cdr_checks)
    if config.cdr.dbaccess:
        out += guarded("recordings", "recordings", recordings_checks)
    out += guarded("agent", "agent", agent_check)
    return out
