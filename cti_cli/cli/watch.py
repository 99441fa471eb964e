"""`cti watch`: the PBX's calls live in the terminal (or raw events, or call events as JSON).

Read-only, so it works whether the integration is enabled or not. The screen is redrawn at a
fixed low rate by a timer, never per event, so a busy PBX cannot make the terminal fall behind.
After every (re)connect the tracker is reconciled with `CoreShowChannels` before the first event:
calls already in progress are shown, calls that ended while disconnected end as `lost`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cti_cli.cli.common import EXIT_USAGE, console, err_console, fail, load_config
from cti_cli.textsafe import printable

if TYPE_CHECKING:  # imported when watching starts: `cti --help` stays fast
    from collections import Counter

    from cti_cli.ami.client import AMIClient
    from cti_cli.ami.message import Message
    from cti_cli.ami.reconnect import ConnectionState, ConnectParams, ReconnectingClient
    from cti_cli.calls import CallEvent, CallTracker
    from cti_cli.calls.tracker import DropNotice
    from cti_cli.config import Config, ServerConfig

REFRESH_SECONDS = 0.5

EventFilter = Callable[[Mapping[str, str]], bool]


def parse_filters(specs: list[str]) -> EventFilter:
    """`Name=glob` pairs, all of which must match (`Event=Dial*`, `Channel=PJSIP/10?-*`)."""
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name.strip():
            fail(f"--filter {spec!r}: write it as Header=pattern, e.g. Event=Dial*", EXIT_USAGE)
        pairs.append((name.strip(), pattern))

    def matches(event: Mapping[str, str]) -> bool:
        for name, pattern in pairs:
            value = event.get(name)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True

    return matches


def connect_params(config: Config) -> ConnectParams:
    """The (first) AMI server's login; exit 2 naming what is missing."""
    return sources(config)[0][1]


def sources(config: Config) -> list[tuple[str | None, ConnectParams]]:
    """(PBX name, login) of every AMI server: the name only with `[[servers]]` (one `[server]`
    keeps the single-PBX output unchanged); exit 2 naming what is missing."""
    several = bool(config.servers)
    out: list[tuple[str | None, ConnectParams]] = []
    for index, (name, server) in enumerate(config.pbx_servers()):
        where = f"servers[{index}]" if several else "server"
        out.append((name if several else None, _params(server, where)))
    return out


def _params(server: ServerConfig, where: str) -> ConnectParams:
    from cti_cli.ami.params import missing_setting, server_params

    params = server_params(server)
    if params is None:
        fail(
            f"the connection parameters are incomplete ({where}.{missing_setting(server)} is "
            "not set); run cti configure",
            EXIT_USAGE,
        )
    return params


def event_json(event: Message) -> str:
    """A raw AMI event as one JSON object; repeated headers become lists."""
    data: dict[str, str | list[str]] = {}
    for name, value in event.headers:
        old = data.get(name)
        if old is None:
            data[name] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            data[name] = [old, value]
    return json.dumps(data, ensure_ascii=False)


def event_text(event: Message) -> str:
    """A raw AMI event for the terminal: its values made printable (they are callers' data)."""
    return "\n".join(printable(f"{name}: {value}") for name, value in event.headers) + "\n"


def watch(
    ctx: typer.Context,
    events: Annotated[
        bool, typer.Option("--events", help="Tail the raw AMI events instead of the call table.")
    ] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="HEADER=GLOB",
            help="With --events: only events whose Header matches a glob, "
            "e.g. --filter 'Event=Dial*' (repeat: all must match).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON Lines: call events (or raw events with --events).")
    ] = False,
) -> None:
    """The PBX's calls live: who calls, rings, talks, how it ended.

    On a terminal a live board; piped or redirected, one plain line per call change (time,
    event, uniqueid, caller → dialled, …); --json for the call events as JSON Lines."""
    import asyncio

    config = load_config(ctx)
    servers = sources(config)
    if filters and not events:
        fail("--filter goes with --events", EXIT_USAGE)
    match = parse_filters(filters or [])
    try:
        if events:
            asyncio.run(_all(_tail_events(n, p, match, json_out) for n, p in servers))
        elif json_out:
            asyncio.run(_all(_call_events_json(n, p, _tracker(config)) for n, p in servers))
        elif not sys.stdout.isatty():  # a pipe or a file: one plain line per call change
            asyncio.run(_all(_call_lines(n, p, _tracker(config)) for n, p in servers))
        else:
            asyncio.run(_live_board([(n, p, _tracker(config)) for n, p in servers]))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:  # a bad calls.extension_pattern
        fail(str(exc), EXIT_USAGE)


async def _all(followers: Iterable[Awaitable[None]]) -> None:
    """Follow every PBX at once; the first to fail stops them all."""
    import asyncio

    tasks = [asyncio.ensure_future(f) for f in followers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _tracker(config: Config) -> CallTracker:
    from cti_cli.calls import CallTracker

    return CallTracker(config.calls.extension_pattern, max_active=config.calls.max_active)


def _warn_drops(notice: DropNotice) -> None:
    if line := notice.check():
        err_console.print(f"cti watch: warning: {line}", markup=False, style="yellow",
                          soft_wrap=True)  # fmt: skip


def _state_to_stderr(state: ConnectionState, pbx: str | None = None) -> None:
    where = f"cti watch: {printable(pbx)}: " if pbx else "cti watch: "
    err_console.print(f"{where}{printable(str(state))}", markup=False, style="dim",
                      soft_wrap=True)  # fmt: skip


def _stderr_states(pbx: str | None) -> Callable[[ConnectionState], None]:
    return lambda state: _state_to_stderr(state, pbx)


def reconciler(
    tracker: CallTracker,
    emit: Callable[[list[CallEvent]], None],
    clock: Callable[[], float] = time.time,
    *,
    ask_filters: bool = False,
) -> Callable[[AMIClient], Awaitable[None]]:
    """`on_connect` hook: catch `tracker` up with the channels Asterisk has now, `emit` the
    call events that gives. A user not allowed `CoreShowChannels` is told once and followed
    without it (the connection is not failed for that); a lost connection fails it.

    `ask_filters`: first ask Asterisk to send this session only the events the tracker reads
    (`filter_events`; before the snapshot, which then covers what was dropped while the
    filters went in). Refused (a user without `write = system`, an older Asterisk): every
    event is read, as before, and nothing is said, since `cti doctor` tells an admin why. Taken
    only in part, not answered, or the connection dropped while asking: this session is
    dropped and the next ones are not asked again."""
    from cti_cli.ami.errors import ActionFailed, AMIError, PermissionDenied
    from cti_cli.ami.filters import filter_events
    from cti_cli.ami.reconnect import snapshot_channels

    warned = False
    asking = ask_filters

    async def on_connect(client: AMIClient) -> None:
        nonlocal warned, asking
        if asking:
            try:
                await filter_events(client, tracker.event_names)
            except AMIError:  # taken half-way, no answer, dropped: the next session reads all
                asking = False
                raise
        try:
            channels = await snapshot_channels(client)
        except (PermissionDenied, ActionFailed) as exc:
            if not warned:
                warned = True
                err_console.print(
                    f"cti watch: cannot list the active channels ({printable(str(exc))}); calls "
                    "that ended while disconnected stay shown until they end", markup=False,
                    style="yellow",
                    soft_wrap=True,
                )  # fmt: skip
            return
        if call_events := tracker.reconcile(channels, time=clock()):
            emit(call_events)

    return on_connect


def follow_calls(
    params: ConnectParams,
    tracker: CallTracker,
    emit: Callable[[list[CallEvent]], None],
    on_state: Callable[[ConnectionState], None],
) -> tuple[ReconnectingClient, Counter[bytes]]:
    """The connection every call view of `cti watch` reads: it asks Asterisk for only the
    events `tracker` reads, drops the others as they are framed too (a refused filter, an
    older Asterisk), and reconciles after each (re)connect. Also returns the count, by name,
    of the events Asterisk still sent and this side dropped."""
    from collections import Counter

    from cti_cli.ami.client import AMIClient
    from cti_cli.ami.codec import EventFilter
    from cti_cli.ami.reconnect import ReconnectingClient

    dropped: Counter[bytes] = Counter()
    names = EventFilter(tracker.event_names, dropped)
    client = ReconnectingClient(
        params,
        on_state=on_state,
        on_connect=reconciler(tracker, emit, ask_filters=True),
        client_factory=lambda: AMIClient(event_filter=names),
    )
    return client, dropped


async def _tail_events(
    pbx: str | None, params: ConnectParams, match: EventFilter, as_json: bool
) -> None:
    """Raw events; with several PBXs each says which (`"pbx"` in JSON, a `PBX:` line first)."""
    from cti_cli.ami.reconnect import ReconnectingClient

    client = ReconnectingClient(params, on_state=_stderr_states(pbx))
    out = sys.stdout
    try:
        async for event in client.events():
            if not match(event):
                continue
            if as_json:
                line = event_json(event)
                if pbx:
                    line = '{"pbx":' + json.dumps(pbx) + "," + line[1:]
                out.write(line + "\n")
            else:
                out.write((f"PBX: {printable(pbx)}\n" if pbx else "") + event_text(event) + "\n")
            out.flush()
    finally:
        await client.close()


def call_json(event: CallEvent, pbx: str | None = None) -> str:
    """A call event as JSON; `"pbx"` (first) only when several PBXs are watched."""
    if not pbx:
        return event.to_json()
    return json.dumps({"pbx": pbx, **json.loads(event.to_json())}, ensure_ascii=False)


async def _call_events_json(pbx: str | None, params: ConnectParams, tracker: CallTracker) -> None:
    from cti_cli.calls.tracker import DropNotice

    out = sys.stdout
    notice = DropNotice(tracker)

    def emit(call_events: list[CallEvent]) -> None:
        for call_event in call_events:
            out.write(call_json(call_event, pbx) + "\n")
        out.flush()
        _warn_drops(notice)

    client, _ = follow_calls(params, tracker, emit, _stderr_states(pbx))
    try:
        async for event in client.events():
            if call_events := tracker.feed(event):
                emit(call_events)
    finally:
        await client.close()


def call_line(
    event: CallEvent, now: Callable[[], float] = time.time, pbx: str | None = None
) -> str:
    """One call change as one plain line (`cti watch | tee calls.log`): time, (the PBX, with
    several,) event, uniqueid (what `cti recordings` takes), caller → dialled, then what
    changed."""
    from cti_cli.calls import Answered, Ended, Ringing, Transferred
    from cti_cli.cli.common import format_duration
    from cti_cli.cli.live_calls import who

    stamp = float(event.time) if event.time else now()
    parts = [
        time.strftime("%H:%M:%S", time.localtime(stamp)),
        *([pbx] if pbx else []),
        event.kind,
        event.uniqueid,
        f"{who(event.caller, event.caller_name)} → {event.dialed or '?'}",
    ]
    if event.queue:
        parts.append(f"queue {event.queue}")
    if isinstance(event, (Ringing, Answered)):
        parts.append(f"ext {event.extension}")
    elif isinstance(event, Transferred):
        parts.append(f"from {event.from_extension} to {event.to}")
    elif isinstance(event, Ended):
        parts.append(event.reason)
        if event.answered_by:
            parts.append(f"answered by {', '.join(event.answered_by)}")
        elif event.rang:
            parts.append(f"rang {', '.join(event.rang)}")
        if event.duration is not None:
            parts.append(format_duration(event.duration))
    return printable("  ".join(parts))


async def _call_lines(pbx: str | None, params: ConnectParams, tracker: CallTracker) -> None:
    from cti_cli.calls.tracker import DropNotice

    out = sys.stdout
    notice = DropNotice(tracker)

    def emit(call_events: list[CallEvent]) -> None:
        for call_event in call_events:
            out.write(call_line(call_event, pbx=pbx) + "\n")
        out.flush()  # line by line: a reader (or a kill) sees every change as it happens
        _warn_drops(notice)

    client, _ = follow_calls(params, tracker, emit, _stderr_states(pbx))
    try:
        async for event in client.events():
            if call_events := tracker.feed(event):
                emit(call_events)
    finally:
        await client.close()


async def _live_board(followed: list[tuple[str | None, ConnectParams, CallTracker]]) -> None:
    """The board; with several PBXs one board for all, with a PBX column (`MultiBoard`)."""
    import asyncio

    from rich.live import Live

    from cti_cli.calls.tracker import DropNotice
    from cti_cli.cli.live_calls import CallBoard, MultiBoard

    boards: dict[str, CallBoard] = {}
    clients: list[ReconnectingClient] = []
    pumps: list[Callable[[], Coroutine[Any, Any, None]]] = []
    for pbx, params, tracker in followed:
        board = CallBoard(tracker, server=f"{params.host}:{params.port}")
        boards[pbx or ""] = board
        notice = DropNotice(tracker)

        def record(
            call_events: list[CallEvent], board: CallBoard = board, notice: DropNotice = notice
        ) -> None:
            board.record(call_events, time.monotonic())
            _warn_drops(notice)

        def on_state(state: ConnectionState, board: CallBoard = board) -> None:
            board.set_connection(state, time.monotonic())

        client, _ = follow_calls(params, tracker, record, on_state)
        clients.append(client)

        async def pump(
            client: ReconnectingClient = client,
            tracker: CallTracker = tracker,
            record: Callable[[list[CallEvent]], None] = record,
        ) -> None:
            async for event in client.events():
                if call_events := tracker.feed(event):
                    record(call_events)

        pumps.append(pump)
    shown = MultiBoard(boards) if len(boards) > 1 else next(iter(boards.values()))

    with Live(shown.render(time.monotonic()), console=console, auto_refresh=False,
              transient=False) as live:  # fmt: skip
        tasks = [asyncio.create_task(pump()) for pump in pumps]
        try:
            while not any(task.done() for task in tasks):
                await asyncio.wait(tasks, timeout=REFRESH_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                live.update(shown.render(time.monotonic()), refresh=True)
            for task in tasks:
                if task.done():
                    task.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for client in clients:
                await client.close()
