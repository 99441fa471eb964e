"""The live call board of `cti watch`: active calls, just-ended calls fading, a recent list.

Time is passed in (`now`, monotonic seconds) rather than read here, so the board can be
tested frame by frame and the tracker stays free of clocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cti_cli.ami.reconnect import ConnectionState
from cti_cli.calls import Answered, CallEvent, CallTracker, CallView, Ended
from cti_cli.cli.common import format_duration
from cti_cli.textsafe import printable

FADE_SECONDS = 5.0
RECENT_MAX = 8
LOST = "lost"  # ended while cti was disconnected from AMI: how it ended is unknown


@dataclass
class _Finished:
    event: Ended
    ended_at: float
    started_at: float
    answered_at: float | None


def who(number: str, name: str) -> str:
    return f"{number} {name}".strip() if name else number or "?"


def _cells(values: Iterable[str]) -> list[Text]:
    """Table cells from PBX strings: as `Text` (a caller name `[red]` is not markup) with
    control characters escaped (an `ESC[2J` in a caller-ID name must not reach the terminal)."""
    return [Text(printable(value)) for value in values]


COLUMNS = ("caller", "dialled", "queue", "state", "operators", "time", "uniqueid")
RECENT_COLUMNS = ("recent", "dialled", "outcome", "operators", "talk", "uniqueid")


class CallBoard:
    """What the operator's terminal shows; fed call events, drawn on a timer."""

    def __init__(self, tracker: CallTracker, server: str) -> None:
        self.tracker = tracker
        self.server = server
        self.connection = "connecting"
        self.connection_style = "yellow"
        self._first_seen: dict[str, float] = {}
        self._answered_at: dict[str, float] = {}
        self._fading: dict[str, _Finished] = {}
        self.recent: deque[_Finished] = deque(maxlen=RECENT_MAX)

    def set_connection(self, state: ConnectionState, now: float) -> None:
        self.connection = printable(str(state))  # an error may quote the peer's bytes
        self.connection_style = {"connected": "green", "error": "red"}.get(state.state, "yellow")

    def record(self, events: Iterable[CallEvent], now: float) -> None:
        for event in events:
            started = self._first_seen.setdefault(event.call_id, now)
            if isinstance(event, Answered):
                self._answered_at.setdefault(event.call_id, now)
            elif isinstance(event, Ended):
                self._first_seen.pop(event.call_id, None)
                answered = self._answered_at.pop(event.call_id, None)
                self._fading[event.call_id] = _Finished(event, now, started, answered)

    def _age_out(self, now: float) -> None:
        for call_id, done in list(self._fading.items()):
            if now - done.ended_at >= FADE_SECONDS:
                del self._fading[call_id]
                self.recent.appendleft(done)

    def render(self, now: float) -> RenderableType:
        status, rows = self.rows(now)
        table = Table(*COLUMNS, expand=True)
        for cells, style in rows:
            table.add_row(*_cells(cells), style=style)
        parts: list[RenderableType] = [status, table]
        if self.recent:
            recent = Table(*RECENT_COLUMNS, box=None, show_header=True, header_style="dim")
            for done in self.recent:
                recent.add_row(*_cells(board_recent(done)))
            parts.append(recent)
        return Group(*parts)

    def rows(self, now: float, name: str = "") -> tuple[Text, list[tuple[tuple[str, ...], str]]]:
        """The status line and the table rows (cells, style) of this PBX, as of `now`."""
        self._age_out(now)
        active = self.tracker.active_calls()
        status = Text.assemble(
            ("AMI ", "bold"), (f"{printable(name)} " if name else ""), printable(self.server),
            "  ", (self.connection, self.connection_style),
            f"   {len(active)} active call{'s' if len(active) != 1 else ''}",
        )  # fmt: skip
        live_ids = {view.call_id for view in active}
        for stale in self._first_seen.keys() - live_ids:  # calls the tracker dropped silently
            del self._first_seen[stale]
            self._answered_at.pop(stale, None)
        rows: list[tuple[tuple[str, ...], str]] = []
        for view in active:
            started = self._first_seen.setdefault(view.call_id, now)
            rows.append((self._active_row(view, now - started), ""))
        for done in self._fading.values():
            rows.append((self._ended_row(done), "dim"))
        return status, rows

    @staticmethod
    def _active_row(view: CallView, age: float) -> tuple[str, ...]:
        if view.state == "talking":
            state, operators = "talking", ", ".join(view.talking)
        else:
            state, operators = "ringing", ", ".join(view.ringing)
        return (
            who(view.caller, view.caller_name), view.dialed, view.queue or "", state, operators,
            format_duration(age), view.uniqueid,
        )  # fmt: skip

    @staticmethod
    def _ended_row(done: _Finished) -> tuple[str, ...]:
        e = done.event
        operators = ", ".join(e.answered_by) or ", ".join(e.rang)
        state = "ended: lost (while disconnected)" if e.reason == LOST else f"ended: {e.reason}"
        return (
            who(e.caller, e.caller_name), e.dialed, e.queue or "", state, operators,
            format_duration(done.ended_at - done.started_at), e.uniqueid,
        )  # fmt: skip

    @staticmethod
    def _recent_cells(done: _Finished) -> tuple[str, ...]:
        e = done.event
        operators = ", ".join(e.answered_by) or ", ".join(e.rang)
        if e.reason == LOST:  # its end was not seen: it lasted at most until we were back
            outcome = "answered, then lost" if e.answered else "lost"
            talk = f"≤{format_duration(e.duration)}" if e.duration is not None else ""
            return e.dialed, outcome, operators, talk, e.uniqueid
        outcome = "answered" if e.answered else f"missed ({e.reason})"
        if e.duration is not None:
            talk = format_duration(e.duration)
        elif done.answered_at is not None:  # no Timestamp headers: our own clock
            talk = format_duration(done.ended_at - done.answered_at)
        else:
            talk = ""
        return e.dialed, outcome, operators, talk, e.uniqueid


class MultiBoard:
    """Several PBXs (`[[servers]]`) on one board: a status line each, then one table of their
    calls and one recent list, with a PBX column."""

    def __init__(self, boards: dict[str, CallBoard]) -> None:
        self.boards = boards

    def render(self, now: float) -> RenderableType:
        lines: list[RenderableType] = []
        table = Table("pbx", *COLUMNS, expand=True)
        recent: list[tuple[float, str, _Finished]] = []
        for name, board in self.boards.items():
            status, rows = board.rows(now, name)
            lines.append(status)
            for cells, style in rows:
                table.add_row(*_cells((name, *cells)), style=style)
            recent.extend((done.ended_at, name, done) for done in board.recent)
        parts: list[RenderableType] = [*lines, table]
        if recent:
            listed = Table("pbx", *RECENT_COLUMNS, box=None, show_header=True, header_style="dim")
            for _, name, done in sorted(recent, key=lambda r: -r[0])[:RECENT_MAX]:
                listed.add_row(*_cells((name, *board_recent(done))))
            parts.append(listed)
        return Group(*parts)


def board_recent(done: _Finished) -> tuple[str, ...]:
    return (*CallBoard._ended_row(done)[:1], *CallBoard._recent_cells(done))
