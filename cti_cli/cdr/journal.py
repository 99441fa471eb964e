"""The call journal: CDR legs folded into one line per call.

A call is *answered* when a leg reached a person — disposition ANSWERED with a destination
channel. A leg answered by the PBX itself (IVR, queue hold music: no `dstchannel`) does not
count, so a caller who gave up in the queue shows as missed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cti_cli.calls.naming import ExtensionMatcher
from cti_cli.cdr.queries import CdrRow, Since
from cti_cli.cdr.recordings import Recording, RecStatus

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d{1,7})\s*([smhdw])", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
                 "%Y-%m-%dT%H:%M:%S")  # fmt: skip
SINCE_HELP = "give a span like 30m, 1h, 2d, 1w, or a date like 2026-11-25 (optionally 10:00)"
_CLID_NAME = re.compile(r'^\s*"?(.*?)"?\s*<[^<>]*>\s*$')
# Which status a call shows when its legs' recordings differ: the most useful first.
_REC_ORDER = (RecStatus.PRESENT, RecStatus.MISSING, RecStatus.UNREADABLE, RecStatus.REFUSED)


def parse_since(text: str) -> Since:
    """`1h` → seconds back from now; `2026-11-25[ 10:00]` → that local moment."""
    value = text.strip()
    if match := _RELATIVE.fullmatch(value):
        return Since(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])
    for fmt in _DATE_FORMATS:
        try:
            return Since(moment=datetime.strptime(value, fmt))
        except ValueError:
            continue
    raise ValueError(f"--since {text!r} is not understood; {SINCE_HELP}")


@dataclass(frozen=True)
class CallSummary:
    uniqueid: str
    start: datetime | None
    caller: str
    caller_name: str
    dialled: str
    answered: bool
    answered_by: tuple[str, ...]
    talk_seconds: int
    recording: str  # a RecStatus value, or "unknown" when the table has no recordingfile
    legs: int


def caller_name(row: CdrRow) -> str:
    """`cnam`, else the name part of `clid` (`"Иван Петров" <79161234567>`)."""
    if row.cnam:
        return row.cnam
    match = _CLID_NAME.match(row.clid)
    name = match.group(1).strip() if match else ""
    return "" if name in ("", "<unknown>", row.src) else name


def summarise(
    uniqueid: str,
    rows: list[CdrRow],
    recording_of: Callable[[CdrRow], Recording],
    operators: ExtensionMatcher | None = None,
) -> CallSummary:
    """One journal line from a call's legs (given in call order); who answered is the
    operator extension of each answered leg's `dstchannel` (the channel name if none)."""
    operators = operators or ExtensionMatcher()
    first = rows[0]
    answered_rows = [r for r in rows if r.disposition.upper() == "ANSWERED" and r.dstchannel]
    people = tuple(
        dict.fromkeys(operators.extension(r.dstchannel) or r.dstchannel for r in answered_rows)
    )
    return CallSummary(
        uniqueid=uniqueid,
        start=first.calldate,
        caller=first.src or first.cnum,
        caller_name=caller_name(first),
        dialled=first.did or first.dst,
        answered=bool(answered_rows),
        answered_by=people,
        talk_seconds=sum(r.billsec for r in answered_rows),
        recording=_call_recording(rows, recording_of),
        legs=len(rows),
    )


def _call_recording(rows: list[CdrRow], recording_of: Callable[[CdrRow], Recording]) -> str:
    if all(r.recordingfile is None for r in rows):
        return "unknown"
    statuses = {recording_of(r).status for r in rows if r.recordingfile}
    return next((s.value for s in _REC_ORDER if s in statuses), RecStatus.NONE.value)
