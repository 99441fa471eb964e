"""Replay a recording through the tracker, and sum up what each call amounted to.

Nothing is printed here: a recording in, call events and per-call summaries out; `cti replay`
(cli/replay.py) shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cti_cli.calls.events import Answered, CallEvent, Ended, Ringing, Transferred
from cti_cli.calls.sources import Damaged, read_events
from cti_cli.calls.tracker import CallTracker


def replay(
    stream: BinaryIO,
    extension_pattern: str | None = None,
    damaged: Damaged | None = None,
    tracker: CallTracker | None = None,
) -> Iterator[CallEvent]:
    """Call events of a recorded AMI stream, in order. Damaged messages are skipped and told
    to `damaged(where, why)`; input that is no recording raises `ReplayInputError`."""
    if tracker is None:
        tracker = CallTracker(extension_pattern)
    feed = tracker.feed
    for event in read_events(stream, damaged):
        yield from feed(event)


@dataclass
class CallSummary:
    """What one call amounted to, gathered from its call events."""

    call_id: str
    caller: str
    caller_name: str
    dialed: str
    queue: str | None
    rang: list[str] = field(default_factory=list)
    answered_by: list[str] = field(default_factory=list)
    transfers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None  # None while the call has not ended
    duration: int | None = None


def summarize(events: Iterable[CallEvent]) -> list[CallSummary]:
    """One summary per call, in order of each call's first event."""
    calls: dict[str, CallSummary] = {}
    for event in events:
        summary = calls.get(event.call_id)
        if summary is None:
            summary = calls[event.call_id] = CallSummary(
                event.call_id, event.caller, event.caller_name, event.dialed, event.queue
            )
        summary.caller, summary.caller_name = event.caller, event.caller_name
        summary.queue = event.queue or summary.queue
        if isinstance(event, Ringing) and event.extension not in summary.rang:
            summary.rang.append(event.extension)
        elif isinstance(event, Answered):
            summary.answered_by.append(event.extension)
        elif isinstance(event, Transferred):
            summary.transfers.append((event.from_extension, event.to))
        elif isinstance(event, Ended):
            summary.rang = list(event.rang)
            summary.answered_by = list(event.answered_by)
            summary.reason = event.reason
            summary.duration = event.duration
    return list(calls.values())
