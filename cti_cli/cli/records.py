"""`cti recordings UNIQUEID` and `cti calls`: the CDRs in asteriskcdrdb and their recordings.

The commands' options are declared in records_cmd.py, which imports this module (pymysql, the
CDR code, rich) only when one of them runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from pymysql.connections import Connection
from rich.cells import cell_len
from rich.text import Text

from cti_cli.calls.naming import ExtensionMatcher
from cti_cli.cdr.copying import Copied, CopyError, copy_recording
from cti_cli.cdr.database import CdrDbError, CdrTable, cdr_session
from cti_cli.cdr.dbaccess import DbAccess, DbAccessError, read_dbaccess
from cti_cli.cdr.journal import CallSummary, caller_name, parse_since, summarise
from cti_cli.cdr.numbers import digits
from cti_cli.cdr.queries import (
    JOURNAL_INDEXES,
    LOOKUP_INDEXES,
    ROW_COLUMNS,
    UNIQUEID_HELP,
    CdrRow,
    Since,
    call_rows,
    recent_call_ids,
    rows_for_calls,
    schema_notes,
    valid_uniqueid,
)
from cti_cli.cdr.recordings import Recording, RecordingFinder, RecordingsFolder, RecStatus
from cti_cli.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    console,
    fail,
    format_duration,
    load_config,
    plain,
    warn,
)
from cti_cli.config import Config
from cti_cli.textsafe import printable

NUMBER_WINDOW_DAYS = 30  # `calls --number` without --since searches this far back

_STATUS_STYLE = {
    RecStatus.PRESENT: "green",
    RecStatus.MISSING: "yellow",
    RecStatus.REFUSED: "bold red",
    RecStatus.UNREADABLE: "red",
    RecStatus.NONE: "dim",
}


# ---------------------------------------------------------------- shared


def _access(config: Config) -> DbAccess:
    if not config.cdr.dbaccess:
        fail(
            "[cdr] dbaccess is not set; run cti configure --dbaccess /path/to/dbaccess.properties",
            EXIT_USAGE,
        )
    try:
        return read_dbaccess(Path(config.cdr.dbaccess).expanduser())
    except DbAccessError as exc:
        fail(str(exc), EXIT_USAGE)


@contextmanager
def _database(
    access: DbAccess, indexes: tuple[str, ...]
) -> Iterator[tuple[Connection[Any], CdrTable]]:
    """Open the CDR table; say once per run what the schema lacks and which index is missing."""
    try:
        with cdr_session(access) as (conn, table):
            for line in [*table.index_advice(indexes), *schema_notes(table)]:
                warn(line)
            yield conn, table
    except CdrDbError as exc:
        fail(str(exc))


def _recordings_dir(config: Config, *, needed: bool = True) -> Path:
    folder = Path(config.cdr.recordings_dir).expanduser()
    if needed and not folder.is_dir():
        warn(
            f"warning: recordings folder {folder} is not there (is the NFS share mounted? "
            "set it with cti configure --recordings-dir)"
        )
    return folder


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "?"


def _size(size: int | None) -> str:
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _length(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


Cell = str | Text


def _cell(value: Cell) -> Text:
    """A table cell with the database's strings made printable (cnam, clid, channels…)."""
    if isinstance(value, str):
        return plain(value)
    safe = printable(value.plain)
    return value if safe == value.plain else Text(safe, style=value.style)


def _columns(head: list[str], rows: list[list[Cell]]) -> Text:
    """Aligned columns, wide-character aware. rich's Table costs ~2 ms per row (a 50-call
    journal took 100 ms, 10 000 calls would take 20 s); this costs ~0.1 ms per row."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [
        max([cell_len(h), *(cell_len(r[i].plain) for r in cells)]) for i, h in enumerate(head)
    ]
    out = Text()
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip() + "\n",
               style="bold")  # fmt: skip
    for row in cells:
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            out.append_text(cell)
            if i < len(row) - 1:
                out.append(" " * (width - cell_len(cell.plain) + 2))
        out.append("\n")
    return out


def _print_columns(head: list[str], rows: list[list[Cell]]) -> None:
    console.print(_columns(head, rows), end="", soft_wrap=True)


# ---------------------------------------------------------------- cti recordings


def _recording_data(
    rec: Recording, copied: Copied | None, copy_error: str | None
) -> dict[str, Any]:
    return {
        "file": rec.name,
        "status": rec.status.value,
        "path": str(rec.path) if rec.path else None,
        "size": rec.size,
        "seconds": round(rec.seconds, 3) if rec.seconds is not None else None,
        "audio": rec.audio.describe if rec.audio else None,
        "problem": rec.problem,
        "copied_to": str(copied.target) if copied else None,
        "copy_error": copy_error,
    }


def _row_data(row: CdrRow, table: CdrTable, rec_index: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column in ROW_COLUMNS:
        value = getattr(row, column) if table.has(column) else None
        data[column] = value.isoformat(sep=" ") if isinstance(value, datetime) else value
    data["recording"] = rec_index
    return data


def _copy_all(
    recordings: list[Recording], dest: Path, folder: RecordingsFolder
) -> tuple[dict[int, Copied], dict[int, str]]:
    copied: dict[int, Copied] = {}
    errors: dict[int, str] = {}
    done: set[Path] = set()
    for i, rec in enumerate(recordings):
        if rec.status is not RecStatus.PRESENT or rec.path is None or rec.path in done:
            continue
        done.add(rec.path)
        try:
            copied[i] = copy_recording(rec.path, dest, folder, rec.rel)
        except CopyError as exc:
            errors[i] = str(exc)
    return copied, errors


def _print_rows(rows: list[CdrRow], rec_numbers: list[int | None], table: CdrTable) -> None:
    out: list[list[Cell]] = []
    for row, number in zip(rows, rec_numbers, strict=True):
        name = caller_name(row)
        caller = f"{name} <{row.src}>" if name else row.src
        dialled = row.dst + (f" (DID {row.did})" if row.did and row.did != row.dst else "")
        out.append([
            _when(row.calldate),
            f"{caller} → {dialled}",
            f"{row.channel} → {row.dstchannel or '-'}",
            Text(row.disposition, style="green" if row.disposition == "ANSWERED" else "yellow"),
            f"{row.duration}/{row.billsec} s",
            "" if number is None else f"#{number + 1}",
        ])  # fmt: skip
    rec = "rec" if table.has("recordingfile") else "rec (n/a)"
    head = ["calldate", "src → dst", "channel → dstchannel", "disposition", "dur/bill", rec]
    _print_columns(head, out)


def _print_recording(i: int, data: dict[str, Any]) -> None:
    status = RecStatus(data["status"])
    line = Text(f"#{i + 1} ")
    line.append(status.value, style=_STATUS_STYLE[status])
    line.append(f"  {printable(data['path'] or data['file'])}")
    details = [_size(data["size"]), _length(data["seconds"]), data["audio"] or ""]
    if any(details):
        line.append("  " + "  ".join(d for d in details if d))
    console.print(line, soft_wrap=True)
    if data["problem"]:
        console.print(plain(f"   {data['problem']}", style="yellow"), soft_wrap=True)
    if data["copied_to"]:
        console.print(
            plain(f"   copied to {data['copied_to']} ({data['size']} bytes, size checked)"),
            soft_wrap=True,
        )
    if data["copy_error"]:
        console.print(plain(f"   copy failed: {data['copy_error']}", style="red"), soft_wrap=True)


def recordings(ctx: typer.Context, uniqueid: str, json_out: bool, copy_to: Path | None) -> None:
    """`cti recordings`: a call's CDR rows and its recording file; optionally copy it out."""
    if not valid_uniqueid(uniqueid):
        fail(f"{uniqueid!r} is not an Asterisk uniqueid; {UNIQUEID_HELP}", EXIT_USAGE)
    config = load_config(ctx)
    access = _access(config)
    with _database(access, LOOKUP_INDEXES) as (conn, table):
        rows = call_rows(conn, table, uniqueid)
    if not rows:
        fail(f"no call with uniqueid {uniqueid} in {table.label}")
    found: list[Recording] = []
    numbers: list[int | None] = []
    with RecordingFinder(_recordings_dir(config)) as finder:
        for row in rows:
            rec = finder(row.recordingfile, row.calldate)
            if rec.status is RecStatus.NONE:
                numbers.append(None)
                continue
            if rec not in found:
                found.append(rec)
            numbers.append(found.index(rec))
        copied, errors = (
            _copy_all(found, copy_to.expanduser(), finder.folder) if copy_to else ({}, {})
        )
    recs = [_recording_data(r, copied.get(i), errors.get(i)) for i, r in enumerate(found)]
    if json_out:
        data = {
            "uniqueid": uniqueid,
            "table": table.label,
            "missing_columns": list(table.missing(ROW_COLUMNS)),
            "rows": [_row_data(r, table, n) for r, n in zip(rows, numbers, strict=True)],
            "recordings": recs,
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        console.print(Text(f"call {uniqueid}: {len(rows)} CDR rows in {table.label}", style="bold"))
        _print_rows(rows, numbers, table)
        if not recs and table.has("recordingfile"):
            console.print(Text("no recording in the CDR rows", style="dim"))
        for i, rec_data in enumerate(recs):
            _print_recording(i, rec_data)
    if errors:
        raise typer.Exit(EXIT_FAILURE)
    if copy_to and not copied:
        fail("nothing copied: no recording of this call is present in the recordings folder")


# ---------------------------------------------------------------- cti calls


def _call_data(call: CallSummary) -> dict[str, Any]:
    return {
        "uniqueid": call.uniqueid,
        "start": call.start.isoformat(sep=" ") if call.start else None,
        "caller": call.caller,
        "caller_name": call.caller_name,
        "dialed": call.dialled,  # the spelling of the call event contract (`cti watch --json`)
        "answered": call.answered,
        "answered_by": list(call.answered_by),
        "talk_seconds": call.talk_seconds,
        "recording": call.recording,
        "legs": call.legs,
    }


def _print_calls(summaries: list[CallSummary]) -> None:
    rec_style = {"present": "green", "missing": "yellow", "refused": "red", "unreadable": "red"}
    rows: list[list[Cell]] = []
    for call in summaries:
        caller = f"{call.caller_name} <{call.caller}>" if call.caller_name else call.caller
        rows.append([
            _when(call.start),
            caller,
            call.dialled,
            Text("answered", style="green") if call.answered else Text("missed", style="red"),
            ", ".join(call.answered_by),
            format_duration(call.talk_seconds) if call.answered else "",
            Text(call.recording, style=rec_style.get(call.recording, "dim")),
            call.uniqueid,
        ])  # fmt: skip
    head = ["time", "caller", "dialled", "result", "answered by", "talk", "rec", "uniqueid"]
    _print_columns(head, rows)


def calls(
    ctx: typer.Context, since: str | None, number: str | None, limit: int, json_out: bool
) -> None:
    """`cti calls`: the call journal, answered or missed, who answered, recording present."""
    window = None
    if since is not None:
        try:
            window = parse_since(since)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    if number is not None and not digits(number):
        fail(f"--number {number!r} has no digits; give a phone number or extension", EXIT_USAGE)
    default_window = number is not None and window is None
    if default_window:
        # The number columns are not indexed: bound the scan (see docs/performance.md).
        window = Since(seconds=NUMBER_WINDOW_DAYS * 86400)
    config = load_config(ctx)
    try:
        operators = ExtensionMatcher(config.calls.extension_pattern)
    except ValueError as exc:
        fail(f"[calls] extension_pattern: {exc}", EXIT_USAGE)
    access = _access(config)
    with _database(access, JOURNAL_INDEXES) as (conn, table):
        ids = recent_call_ids(
            conn, table, since=window, number=number, limit=limit, operators=operators
        )
        grouped = rows_for_calls(conn, table, ids)
    with RecordingFinder(_recordings_dir(config, needed=bool(ids))) as finder:
        summaries = [
            summarise(uid, rows, lambda r: finder(r.recordingfile, r.calldate), operators)
            for uid, rows in grouped.items()
            if rows
        ]
    summaries.sort(key=lambda c: c.start or datetime.min, reverse=True)
    if default_window and len(summaries) < limit:
        warn(
            f"note: searched the last {NUMBER_WINDOW_DAYS} days; "
            "give --since (e.g. --since 2026-01-01) to look further back"
        )
    if json_out:
        print(json.dumps([_call_data(c) for c in summaries], ensure_ascii=False, indent=2))
        return
    if not summaries:
        where = (
            f" since {since}"
            if since
            else (f" in the last {NUMBER_WINDOW_DAYS} days" if default_window else "")
        )
        who = f" for number {number}" if number else ""
        console.print(plain(f"no calls{who}{where} in {table.label}"))
        return
    _print_calls(summaries)
