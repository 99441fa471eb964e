"""`cti agent`: the long-running service that turns calls into screen pops and webhook events.

One asyncio loop holds it all together:

* the config watcher — the file polled every 0.5 s and re-read on SIGHUP; a bad edit is
  logged (file:key) and the last good config keeps running;
* one AMI session per PBX (`[server]`, or each of `[[servers]]`) — `ReconnectingClient` (0.5 s
  → 30 s backoff with jitter), reconciled with `CoreShowChannels` after every (re)connect,
  feeding that PBX's own `CallTracker`;
* a planner per PBX (`pops.py`) deciding who gets a pop and which lifecycle events go out, with
  the PBX's name in every delivery key and body;
* the outbox — every message is committed to SQLite before anything is sent; a pop is stored
  as an intent first and gets its body when the rule has run, so a SIGKILL loses nothing and a
  restart re-runs what was still building;
* one deliverer per webhook and per event bus (`[[publish]]`, `notify/bus.py`), and the HTTP
  server for `/healthz`;
* with `[agent] lease`, the Redis lease (`lease.py`): every agent of a pair does all of the above
  but only the holder's deliverers deliver (`_may_deliver`, their gate).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from cti_cli import __version__
from cti_cli import config as cfg
from cti_cli.agent.directory import Directory, DirectoryError, normalize_number, open_directory
from cti_cli.agent.http import (
    Handler,
    HttpServer,
    Request,
    Response,
    json_response,
    parse_listen,
)
from cti_cli.agent.lease import Lease
from cti_cli.agent.metrics import CONTENT_TYPE, AgentMetrics, webhook_label
from cti_cli.agent.pages import OperatorPages
from cti_cli.agent.pops import (
    Lifecycle,
    Operator,
    PopPlanner,
    PopRequest,
    operators_by_extension,
    rule_call,
    screen_pop_body,
)
from cti_cli.agent.rule import RuleOutcome, RuleRunner
from cti_cli.ami.client import AMIClient
from cti_cli.ami.codec import EventFilter
from cti_cli.ami.errors import AMIError
from cti_cli.ami.filters import FiltersPartlyApplied, NotAsked, filter_events
from cti_cli.ami.params import server_params
from cti_cli.ami.reconnect import (
    ConnectionState,
    ConnectParams,
    ReconnectingClient,
    snapshot_channels,
)
from cti_cli.calls import CallEvent, CallTracker, Ended
from cti_cli.calls.tracker import DropNotice
from cti_cli.notify.bus import BusDeliverer, bus_target
from cti_cli.notify.outbox import Item, Outbox, OutboxError, OutboxUnwritable
from cti_cli.notify.webhook import DeliveryResult, OutboxDeliverer, WebhookDeliverer, safe_url
from cti_cli.notify.zammad import ZammadMapper, zammad_action
from cti_cli.rules import RuleError, effective_rule
from cti_cli.textsafe import shorten, utf8

log = logging.getLogger("cti.agent")

POLL_SECONDS = 0.5
HELD_MAX = 20_000  # outbox writes kept in memory while the disk refuses them
STEADY_SECONDS = 5.0  # an outbox that failed is back once it has saved for this long
SHUTDOWN_SECONDS = 5.0
SESSION_RESTART_SECONDS = 1.0  # after an AMI session ended by an unexpected error
NAME_IN_LOG = 120  # characters of a caller's number or name in a log line (they set their own)
GROUP_COMMIT_SECONDS = 0.005  # a SIGKILL inside it is as if it came before the read (reconcile)
SWITCH_INTERVAL = 0.001  # seconds: how soon a rule thread gets the GIL from the loop
LIFECYCLE_TTL = 24 * 3600.0
PRUNE_EVERY = 3600.0


def default_state_dir() -> Path:
    """systemd's StateDirectory (`$STATE_DIRECTORY`), else `$XDG_STATE_HOME/cti`."""
    if systemd := os.environ.get("STATE_DIRECTORY"):
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cti"


def state_dir(config: cfg.Config) -> Path:
    raw = config.agent.state_dir
    return Path(raw).expanduser() if raw else default_state_dir()


def connect_params(config: cfg.Config) -> ConnectParams | None:
    """The (first) AMI server's login, or None while its connection block is incomplete."""
    return server_params(config.pbx_servers()[0][1])


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per body


def _dumps(data: Any) -> bytes:
    return utf8(_JSON.encode(data))


class PbxSession:
    """One AMI server the agent follows: its connection, tracker and planner (one per PBX, so
    call ids and delivery keys never mix between PBXs)."""

    def __init__(
        self,
        name: str,
        server: cfg.ServerConfig,
        config: cfg.Config,
        skipped: collections.Counter[bytes] | None = None,
    ) -> None:
        self.name = name
        self.server = server
        self.tracker = _tracker(config)
        # the events no call logic reads never become messages (counted for /metrics)
        self.events = EventFilter(self.tracker.event_names, skipped)
        self.drops = DropNotice(self.tracker)
        owners = operators_by_extension(config.teams, name)
        self.planner = PopPlanner(owners, config.rule.trigger, name)
        self.zammad = ZammadMapper(owners, name)
        self.client: ReconnectingClient | None = None
        self.connected = False
        self.error: str | None = None
        self.unfinished_checked = False
        self.server_filters: bool | None = None  # Asterisk filters this session's events
        self.server_filters_broken = False  # it took only some filters: not asked again

    def configure(self, config: cfg.Config) -> None:
        owners = operators_by_extension(config.teams, self.name)
        self.planner.configure(owners, config.rule.trigger)
        self.zammad.owners = owners


class Agent:
    """The service; `await Agent(path, config).run()` until SIGTERM/SIGINT or `stop()`."""

    def __init__(
        self,
        config_path: Path,
        config: cfg.Config,
        *,
        clock: Callable[[], float] = time.time,
        install_signals: bool = True,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.clock = clock
        self.install_signals = install_signals
        self.several = bool(config.servers)  # [[servers]]: PBX names in groups and logs
        # AMI events dropped unread by name, over every PBX and session (/metrics)
        self._skipped: collections.Counter[bytes] = collections.Counter()
        self.sessions = self._sessions_for(config, {})
        self.pbx = next(iter(self.sessions))  # the first PBX: names the lease
        self.directory: Directory | None = None
        self.runner: RuleRunner | None = None
        self.outbox: Outbox | None = None
        self.deliverers: dict[str, OutboxDeliverer] = {}  # target → webhook or bus deliverer
        self._delivery_tasks: dict[str, asyncio.Task[None]] = {}
        self._webhooks: dict[str, cfg.Webhook] = {}  # url → hook, every format
        self._labels: dict[str, str] = {}  # url → metrics label
        self._shown: dict[str, str] = {}  # url → how logs name it (no token)
        self._bus: dict[str, cfg.Publish] = {}  # bus target (no credentials) → [[publish]]
        self._building: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._reload = asyncio.Event()
        self._stamp = _stamp(config_path)
        self._said_disabled = False
        self._lock_fd: int | None = None
        self.outbox_error: str | None = None  # the last failed save of the outbox
        # while the outbox cannot be written: the agent's writes, in order, for when it can
        self._held: collections.deque[Callable[[Outbox], object]] = collections.deque()
        self._unsaved: list[Callable[[Outbox], object]] = []  # in the open group commit
        self._deferred = False  # the outbox commits once per loop iteration
        self._held_dropped = 0
        self._saved_held = 0  # by the last _flush_held
        self._saved_total = 0  # held writes saved in this outage
        self._outage: float | None = None  # monotonic: when the outbox began failing
        self._outage_error = ""  # what it said last
        self._ok_since: float | None = None  # monotonic: saving again since
        self.outbox_file_error: str | None = None  # the outbox file went away under us
        self.last_outcome: dict[str, str] = {}
        self.http: HttpServer | None = None
        self.http_address: tuple[str, int] | None = None
        self.pages = OperatorPages(state_dir(config), lambda: self.config, clock=clock)
        self.admin_http: HttpServer | None = None
        self.admin_address: tuple[str, int] | None = None
        self.metrics = AgentMetrics(
            lambda: {s.name: s.connected for s in self.sessions.values()},
            lambda: sum(s.planner.active() for s in self.sessions.values()),
            self._outbox_depths,
            lambda: self._skipped,
        )
        # active/standby ([agent] lease): deliverers deliver only while this agent holds it,
        # and once a takeover has caught up with what the old holder finished (_take_over)
        self.lease: Lease | None = None
        self._caught_up = True
        self._takeovers = 0
        self._lost_ami_at = float("-inf")  # monotonic time the AMI login was lost

    def _sessions_for(
        self, config: cfg.Config, old: dict[str, PbxSession], *, calls_changed: bool = False
    ) -> dict[str, PbxSession]:
        """A session per PBX of `config`; one of `old` for the same PBX keeps its calls (and
        its tracker, unless its host, port or the calls block changed)."""
        out: dict[str, PbxSession] = {}
        pairs = config.pbx_servers()
        if not config.servers and old and not self.several:
            pairs = [(next(iter(old)), pairs[0][1])]  # one [server]: its name is fixed at start
        for name, server in pairs:
            session = old.get(name)
            if session is None:
                out[name] = PbxSession(name, server, config, self._skipped)
                continue
            if (
                session.server.host,
                session.server.port,
            ) != (server.host, server.port) or calls_changed:
                session.tracker = _tracker(config)
                session.drops = DropNotice(session.tracker)
            if (session.server.host, session.server.port, session.server.login) != (
                server.host, server.port, server.login,
            ):  # maybe another Asterisk or user: ask it for event filters afresh  # fmt: skip
                session.server_filters, session.server_filters_broken = None, False
            session.server = server
            session.configure(config)
            out[name] = session
        return out

    # the first PBX's parts, as with one [server] (tests, `cti demo`)
    @property
    def tracker(self) -> CallTracker:
        return next(iter(self.sessions.values())).tracker

    @property
    def planner(self) -> PopPlanner:
        return next(iter(self.sessions.values())).planner

    @property
    def zammad(self) -> ZammadMapper:
        return next(iter(self.sessions.values())).zammad

    @property
    def connected(self) -> bool:
        """Logged in to every PBX's AMI."""
        return all(s.connected for s in self.sessions.values())

    def _group(self, pbx: str, call_id: str) -> str:
        """The outbox group (in order per call): the call id, PBX-qualified with several PBXs
        (two Asterisks can hand out the same uniqueid)."""
        return f"{pbx}:{call_id}" if self.several else call_id

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        """Serve until stopped; returns the exit code (0 after a clean SIGTERM)."""
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        log.info("cti %s agent starting with %s", __version__, self.config_path)
        # a rule thread waits for the GIL while the loop works: hand it over within 1 ms, not
        # CPython's 5 ms, which went straight into every pop's latency
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        if not self.config_path.exists():
            log.warning("%s does not exist: running on defaults (disabled) until it does; "
                        "create it with cti configure", self.config_path)  # fmt: skip
        self._open_outbox()
        self._setup_lease(self.config)
        self._setup_rule(self.config)
        self._setup_directory(self.config)
        self._setup_webhooks(self.config)
        self._setup_publish(self.config)
        await self._start_http(self.config)
        self._resume_building()
        # what start-up loaded (modules, phone metadata, the directory) lives as long as the
        # process: keep it out of the cyclic GC's full collections, which paused every pop
        gc.freeze()
        tasks = [
            asyncio.create_task(self._watch_config(), name="config"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        if self.lease is not None:
            tasks += [
                asyncio.create_task(self.lease.run(), name="lease"),
                asyncio.create_task(self.lease.run_marks(), name="lease marks"),
                asyncio.create_task(self._follow_peer(), name="standby sync"),
            ]
        try:
            await self._main()
        finally:
            for task in tasks:
                task.cancel()
            await self._shutdown()
        return 0

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info(
                "stopping: no new events; flushing deliveries for up to %g s", SHUTDOWN_SECONDS
            )
        self._stopping.set()

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        for pbx in self.sessions.values():
            if pbx.client is not None:
                with contextlib.suppress(Exception):
                    await pbx.client.close()
        if self._building:
            await asyncio.wait(set(self._building), timeout=max(0.0, deadline - time.monotonic()))
        self.pages.hub.save_now()  # operator pages' recent pops and history, for the next start
        # let requests in flight finish (a half-sent one would be sent again after restart)
        drains = [d.drain(max(0.0, deadline - time.monotonic())) for d in self.deliverers.values()]
        if drains:
            await asyncio.gather(*drains, return_exceptions=True)
        for deliverer in self.deliverers.values():
            deliverer.stop()
        for task in self._delivery_tasks.values():
            task.cancel()
        for task in self._delivery_tasks.values():
            with contextlib.suppress(BaseException):
                await task
        if self.lease is not None:  # what we finished, for the standby; then hand over at once
            await self.lease.flush_marks()
            await self.lease.release()
            await self.lease.close()
        if self.http is not None:
            await self.http.close()
        if self.admin_http is not None:
            await self.admin_http.close()
        if self.runner is not None:
            self.runner.close()
        if self.outbox is not None and (self.outbox_error is not None or self._held):
            self._flush_held()
            if held := len(self._held) + len(self._unsaved):
                log.error("outbox: %d writes held in memory could not be saved (%s) and are "
                          "lost", held, self.outbox_error)  # fmt: skip
        if self.outbox is not None:
            pending = self.outbox.depth()
            self.outbox.close()
            if pending:
                log.info("%d deliveries left in the outbox for the next start", pending)
        log.info("stopped")

    async def _main(self) -> None:
        while not self._stopping.is_set():
            config = self.config
            sessions = list(self.sessions.values())
            params = {s.name: server_params(s.server) for s in sessions}
            incomplete = [name for name, p in params.items() if p is None]
            if not config.enabled or incomplete:
                if not self._said_disabled:
                    self._said_disabled = True
                    if not config.enabled:
                        log.info(
                            "integration disabled; holding no AMI connection "
                            "(cti enable switches it on)"
                        )
                    elif self.several:
                        log.warning("connection parameters incomplete for %s; fix [[servers]]",
                                    ", ".join(incomplete))  # fmt: skip
                    else:
                        log.warning("connection parameters incomplete; run cti configure")
                await self._wait_for(self._reconnect)
                continue
            self._said_disabled = False
            running = {
                asyncio.create_task(self._session(s, p), name=f"ami {s.name}")
                for s in sessions
                if (p := params[s.name]) is not None
            }
            waiter = asyncio.create_task(self._wait_for(self._reconnect))
            await asyncio.wait({*running, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for pbx in sessions:
                if pbx.client is not None:
                    await pbx.client.close()
            crashed = [
                task for task in running
                if task.done() and not task.cancelled() and task.exception() is not None
            ]  # fmt: skip
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for pbx in sessions:
                pbx.client = None
                pbx.connected = False
            for task in crashed:  # a bug, not a PBX failure: said, and never a tight loop
                exc = task.exception()
                log.error("%s stopped: %s: %s; starting again in %g s", task.get_name(),
                          type(exc).__name__, exc, SESSION_RESTART_SECONDS)  # fmt: skip
            if crashed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SESSION_RESTART_SECONDS):
                        await self._stopping.wait()

    async def _wait_for(self, event: asyncio.Event) -> None:
        """Until `event` (cleared afterwards) or stop."""
        stop = asyncio.create_task(self._stopping.wait())
        other = asyncio.create_task(event.wait())
        await asyncio.wait({stop, other}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        other.cancel()
        event.clear()

    # ------------------------------------------------------------------ AMI

    def _ami(self, pbx: PbxSession) -> str:
        """How logs name an AMI session: "AMI", or "AMI <pbx>" with several."""
        return f"AMI {pbx.name}" if self.several else "AMI"

    async def _session(self, pbx: PbxSession, params: ConnectParams) -> None:
        log.info("connecting to %s %s:%d as %s", self._ami(pbx), params.host, params.port,
                 params.username)  # fmt: skip

        async def reconcile(client: AMIClient) -> None:
            await self._filter_events(pbx, client)
            await self._reconcile(pbx, client)

        client = ReconnectingClient(
            params,
            on_state=lambda state: self._on_state(pbx, state),
            on_connect=reconcile,
            backoff_initial=0.5,
            backoff_max=30.0,
            jitter=0.2,
            auth_hint=self._auth_hint(pbx),
            client_factory=lambda: AMIClient(event_filter=pbx.events),
        )
        pbx.client = client
        handle = self._handle
        counts = self.metrics.events
        stopping = self._stopping
        batches = client.event_batches()
        try:
            async for batch in batches:
                for event in batch:
                    if stopping.is_set():
                        return
                    name = event.get("Event", "")
                    counts[name] = counts.get(name, 0) + 1
                    for call_event in pbx.tracker.feed(event, name):  # a config edit may swap it
                        handle(call_event, pbx)
        finally:
            await batches.aclose()

    def _auth_hint(self, pbx: PbxSession) -> str:
        """How to fix a refused AMI login: the config is re-read live, no restart needed."""
        where = f"the password of [[servers]] {pbx.name}" if self.several else "server.password"
        return (f"fix {where} in {self.config_path} (the agent re-reads it) or put the old "
                "secret back in Asterisk")  # fmt: skip

    @property
    def ami_error(self) -> str | None:
        return next((s.error for s in self.sessions.values() if s.error), None)

    def _on_state(self, pbx: PbxSession, state: ConnectionState) -> None:
        if state.state == "connected":
            pbx.connected = True
            pbx.error = None
            self.metrics.logins.inc()
        elif state.state in ("error", "reconnecting", "closed"):
            if pbx.connected:
                self.metrics.reconnects.inc()
                self._lost_ami_at = time.monotonic()
            pbx.connected = False
            if state.error:
                pbx.error = state.error
        ami = self._ami(pbx)
        if state.state == "error":
            log.warning("%s: %s", ami, state.error)
        elif state.state == "reconnecting":
            log.info("%s: %s", ami, state)
        elif state.state == "connected":
            log.info("%s: connected and logged in", ami)

    async def _filter_events(self, pbx: PbxSession, client: AMIClient) -> None:
        """Ask Asterisk for only the events the tracker reads (`filter_events`), before the
        reconcile (events whose filter is not in yet are dropped meanwhile); said in the log
        when the answer changes, not on every reconnect."""
        where = f"{pbx.name}: " if self.several else ""
        if pbx.server_filters_broken:
            pbx.server_filters = False
            return
        try:
            why = await filter_events(client, pbx.events.names)
        except FiltersPartlyApplied as exc:
            pbx.server_filters, pbx.server_filters_broken = False, True
            log.warning("%sAMI: %s; not asking again: this session is dropped and the next "
                        "reads every event", where, exc)  # fmt: skip
            raise
        except AMIError as exc:  # no answer, or the connection dropped: maybe at the Filter
            pbx.server_filters, pbx.server_filters_broken = False, True
            log.warning("%sAMI: asking Asterisk for event filters failed (%s); not asking "
                        "again: the next session reads every event", where,
                        exc.describe())  # fmt: skip
            raise
        applied = why is None
        if applied == pbx.server_filters:
            return
        pbx.server_filters = applied
        if applied:
            log.info("%sAMI: Asterisk sends only the %d kinds of events the agent reads",
                     where, len(pbx.events.names))  # fmt: skip
        elif isinstance(why, NotAsked):
            log.info("%sAMI: reading every event and dropping the unread ones here (%s)",
                     where, why)  # fmt: skip
        else:
            log.info("%sAMI: reading every event and dropping the unread ones here (%s); "
                     "an AMI user with write = system lets Asterisk drop them instead",
                     where, why)  # fmt: skip

    async def _reconcile(self, pbx: PbxSession, client: AMIClient) -> None:
        channels = await snapshot_channels(client)
        events = pbx.tracker.reconcile(channels)
        if events:
            log.info("%sreconciled with %d live channels: %d call events",
                     f"{pbx.name}: " if self.several else "", len(channels),
                     len(events))  # fmt: skip
        for call_event in events:
            self._handle(call_event, pbx)
        self._end_unfinished(pbx)

    def _end_unfinished(self, pbx: PbxSession) -> None:
        """Once per PBX, after its first reconcile: calls the outbox shows as started on it
        before this agent (re)started but never ended, and that the PBX no longer has, end now
        as `lost`."""
        if pbx.unfinished_checked or self.outbox is None:
            return
        pbx.unfinished_checked = True
        live = {view.call_id for view in pbx.tracker.active_calls()}
        prefix = f"{pbx.name}:" if self.several else ""
        for group, rows in self.outbox.unfinished_calls(since=self.clock() - LIFECYCLE_TTL):
            if prefix and not group.startswith(prefix):
                continue
            call_id = group[len(prefix) :]
            if call_id in live:
                continue
            ended = _lost_end(call_id, rows)
            if ended is None:
                continue
            log.info("call %s ended while the agent was not running: ended as lost", call_id)
            pbx.planner.restore(call_id)
            if any(event == "zammad.newCall" for event, _ in rows):
                answered = any(event == "zammad.answer" for event, _ in rows)
                pbx.zammad.restore(call_id, answered=answered)
            self._handle(ended, pbx)

    # ------------------------------------------------------------------ calls → outbox

    def _handle(self, event: CallEvent, pbx: PbxSession | None = None) -> None:
        pbx = pbx or next(iter(self.sessions.values()))
        self.pages.call_event(event, pbx.planner.owners)  # operator pages: history
        plan = pbx.planner.plan(event)
        zammad = pbx.zammad.feed(event) if self._zammad_targets else []
        if not plan.lifecycle and not plan.pops and not zammad:
            return
        now = self.clock()
        groups: set[str] = set()  # what the deliverers need to look at (one call: one group)
        if zammad and self.outbox is not None:
            targets, expires = self._zammad_targets, now + LIFECYCLE_TTL
            for item in zammad:
                group = self._group(pbx.name, item.call_id)
                groups.add(group)

                def put(o: Outbox, i: Any = item, g: str = group) -> object:
                    return o.put(targets, i.key, g, i.event, i.body, now=now, expires_at=expires)

                self._save(put)
        # the pop first: it is what the operator waits for; the call event it came with queues
        # behind it (same call, same order for every receiver) for the few ms the rule takes
        for pop in plan.pops:
            groups.add(self._group(self._pop_pbx(pop), pop.call["call_id"]))
            self._put_pop(pop, now)
        for life in plan.lifecycle:
            groups.add(self._group(pbx.name, life.call_id))
            self._put_lifecycle(life, now, pbx.name)
        only = next(iter(groups)) if len(groups) == 1 else None
        for deliverer in self.deliverers.values():
            deliverer.wake(only)

    def _targets(self, event: str) -> list[str]:
        """JSON webhooks and event buses that take `event`."""
        return [
            url
            for url, hook in self._webhooks.items()
            if hook.format == "json" and hook.wants(event)
        ] + [target for target, bus in self._bus.items() if bus.wants(event)]

    @property
    def _zammad_targets(self) -> list[str]:
        return [url for url, hook in self._webhooks.items() if hook.format == "zammad"]

    def _outbox_depths(self) -> dict[str, int]:
        if self.outbox is None:
            return {}
        depths = {label: self.outbox.depth(url) for url, label in self._labels.items()}
        depths.update({target: self.outbox.depth(target) for target in self._bus})
        return depths

    def _put_lifecycle(self, life: Lifecycle, now: float, pbx: str) -> None:
        targets = self._targets(life.event)
        if targets and self.outbox is not None:
            body = _dumps({"event": life.event, "pbx": pbx, **life.body})  # the same from any agent
            group = self._group(pbx, life.call_id)
            self._save(lambda o: o.put(targets, life.key, group, life.event, body, now=now,
                                       expires_at=now + LIFECYCLE_TTL))  # fmt: skip

    def _pop_pbx(self, pop: PopRequest) -> str:
        return pop.pbx or self.pbx

    def _put_pop(self, pop: PopRequest, now: float) -> None:
        targets = self._targets("screen_pop")
        call_id = pop.call["call_id"]
        if targets and self.outbox is not None:
            intent = {"trigger": pop.trigger, "operator": pop.operator.to_dict(), "call": pop.call,
                      "pbx": self._pop_pbx(pop)}  # fmt: skip
            group = self._group(self._pop_pbx(pop), call_id)
            expires = now + self.config.agent.pop_ttl
            new = self._save(lambda o: o.put(
                targets, pop.key, group, "screen_pop", None, now=now, expires_at=expires,
                intent=_dumps(intent),
            ), default=targets)  # fmt: skip
            if not new:
                log.info("pop for %s (%s) on call %s already accepted; not again",
                         pop.operator.login, pop.operator.extension, call_id)  # fmt: skip
                return
        self._spawn_build(pop)

    def _spawn_build(self, pop: PopRequest) -> None:
        """Run the rule for a pop and send it. A rule that is done at once (`RuleRunner.start`)
        has its pop finished here, in the same loop turn as the AMI event; a slower one in a
        task of its own."""
        region = self.config.directory.region
        call = rule_call(pop, normalize_number(pop.call.get("caller") or "", region))
        runner = self.runner
        if runner is None:
            from cti_cli.agent.rule import plain_form

            self._complete_pop(pop, call, RuleOutcome(plain_form(call), "no rule loaded"), None)
            return
        started = time.perf_counter()
        run = runner.start(call, pop.operator)
        if isinstance(run, RuleOutcome):
            self._complete_pop(pop, call, run, started)
            return
        task = asyncio.create_task(self._build_pop(pop, call, run, started))
        self._building.add(task)
        task.add_done_callback(self._building.discard)

    async def _build_pop(
        self,
        pop: PopRequest,
        call: dict[str, Any],
        run: Coroutine[Any, Any, RuleOutcome],
        started: float,
    ) -> None:
        self._complete_pop(pop, call, await run, started)

    def _complete_pop(
        self, pop: PopRequest, call: dict[str, Any], outcome: RuleOutcome, started: float | None
    ) -> None:
        try:
            self._send_pop(pop, call, outcome, started)
        except Exception:  # never into the AMI loop that may have called it: this pop only
            log.exception("pop for %s on call %s failed", pop.operator.login, call["call_id"])

    def _send_pop(
        self, pop: PopRequest, call: dict[str, Any], outcome: RuleOutcome, started: float | None
    ) -> None:
        if started is not None:
            self.metrics.rule_seconds.observe(time.perf_counter() - started)
        opened, error = outcome.opened, outcome.error
        if outcome.skipped:
            self._skip_pop(pop, call, outcome.skip_reason)
            return
        if error:
            self.metrics.pops.labels("rule_error").inc()
            log.warning("rule: %s", error)
        body = screen_pop_body(pop, call, opened)
        log.info("pop → %s (%s, %s) for %s %s", pop.operator.login, pop.operator.extension,
                 pop.trigger, shorten(call.get("caller") or "unknown caller", NAME_IN_LOG),
                 shorten(call.get("caller_name") or "", NAME_IN_LOG),
                 extra={"event": "screen_pop", "call_id": call["call_id"],
                        "operator": pop.operator.login})  # fmt: skip
        self.pages.publish_pop(body)  # the operator's own page, webhooks or not
        if self.outbox is not None and self._targets("screen_pop"):
            pbx = self._pop_pbx(pop)
            sent = _dumps({"event": body["event"], "pbx": pbx, **body})
            group = self._group(pbx, call["call_id"])
            self._save(lambda o: o.finish(pop.key, group, sent))
            for deliverer in self.deliverers.values():
                deliverer.wake(group)

    def _skip_pop(self, pop: PopRequest, call: dict[str, Any], reason: str | None) -> None:
        """The rule decided this operator gets no pop: nothing opens, nothing is sent, and the
        call's later events are not held up behind it."""
        self.metrics.pops.labels("skipped").inc()
        log.info("rule skipped the pop for %s (%s): %s", pop.operator.login,
                 pop.operator.extension, reason or "no reason given",
                 extra={"event": "screen_pop", "call_id": call["call_id"],
                        "operator": pop.operator.login})  # fmt: skip
        if self.outbox is not None:
            group, now = self._group(self._pop_pbx(pop), call["call_id"]), self.clock()
            why = f"skipped by the rule: {reason or ''}"
            self._save(lambda o: o.cancel(pop.key, group, why, now=now))
            for deliverer in self.deliverers.values():
                deliverer.wake()

    def _resume_building(self) -> None:
        """Pops accepted before a crash whose rule had not finished: run them now."""
        if self.outbox is None:
            return
        for key, _group, _event, intent in self.outbox.building(now=self.clock()):
            try:
                data = json.loads(intent or b"{}")
                operator = Operator(**data["operator"])
                pbx = str(data.get("pbx") or self.pbx)
                pop = PopRequest(key, data["trigger"], operator, data["call"], pbx)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("outbox: cannot rebuild pop %s: %s", key, exc)
                continue
            self._spawn_build(pop)

    # ------------------------------------------------------------------ delivery

    def _open_outbox(self) -> None:
        folder = state_dir(self.config)
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o700)
            self._lock_fd = _lock_state_dir(folder)
        except OSError as exc:
            raise OutboxError(_unusable(folder, exc.strerror or str(exc))) from None
        loop = asyncio.get_running_loop()
        # group commit: what comes in within GROUP_COMMIT_SECONDS (AMI reads, a burst of
        # answers) is one commit; deliveries read the open transaction, so they never wait
        try:
            self.outbox = Outbox(
                folder / "outbox.sqlite3",
                defer=lambda _commit: loop.call_later(GROUP_COMMIT_SECONDS, self._commit_outbox),
            )
        except OutboxUnwritable as exc:
            raise OutboxError(_unusable(folder, exc.reason)) from None
        self._deferred = True
        try:  # a full disk or a read-only one lets SQLite open and read: try a write now
            self.outbox.touch()
            self.outbox.commit()
        except OutboxError as exc:
            self.outbox.close()
            self.outbox = None
            raise OutboxError(_unusable(folder, str(exc).rsplit(": ", 1)[-1])) from None

    def _commit_outbox(self) -> None:
        if self.outbox is None:
            return
        if not self.outbox.uncommitted:
            self._unsaved.clear()  # committed already (by _flush_held, or at start)
            return
        try:
            self.outbox.commit()
        except OutboxError as exc:
            self._rehold_unsaved()  # rolled back: written again later
            self._outbox_failed(exc)
            return
        self._unsaved.clear()
        if self.outbox_error is not None and not self._held:  # else _flush_held goes on
            self._outbox_saved()

    def _outbox_saved(self) -> None:
        """A save worked again: deliveries resume; "saving again" is logged once it holds
        (`_outbox_steady`: a nearly full disk takes some writes and refuses the next)."""
        self.outbox_error = None
        self._saved_total += self._saved_held
        self._saved_held = 0
        if self._ok_since is None:
            self._ok_since = time.monotonic()
        for deliverer in self.deliverers.values():
            deliverer.wake()

    def _outbox_steady(self) -> None:
        if self._outage is None or self._ok_since is None or self.outbox_error or self._held:
            return
        now = time.monotonic()
        if now - self._ok_since >= STEADY_SECONDS:
            log.info("outbox: saving again after %.0f s; %d held writes saved",
                     self._ok_since - self._outage, self._saved_total)  # fmt: skip
            self._outage = self._ok_since = None
            self._saved_total = 0

    # ------------------------------------------------------------------ outbox trouble

    def _save(
        self, write: Callable[[Outbox], object], default: object = None
    ) -> Any:  # fmt: skip
        """One write of the agent's into the outbox. While the outbox cannot be written (disk
        full, I/O errors) it is held in memory, in order, and written when the disk takes it
        again (`_flush_held`, every second): nothing accepted is dropped silently."""
        if self.outbox is None:
            return default
        if self.outbox_error is not None or self._held:
            self._hold(write)
            return default
        try:
            result = write(self.outbox)
        except OutboxError as exc:
            self._rehold_unsaved()
            self._hold(write)
            self._outbox_failed(exc)
            return default
        if self._deferred:
            self._unsaved.append(write)
        return result

    def _rehold_unsaved(self) -> None:
        """A failed write may have taken its whole transaction with it (SQLite rolls back on
        a full disk): what it held is written again later (each write is idempotent)."""
        self._held.extendleft(reversed(self._unsaved))
        self._unsaved.clear()

    def _hold(self, write: Callable[[Outbox], object]) -> None:
        if len(self._held) >= HELD_MAX:
            self._held.popleft()
            self._held_dropped += 1
            if self._held_dropped == 1:
                log.error("outbox: more than %d writes held in memory; dropping the oldest "
                          "(counted in /healthz)", HELD_MAX)  # fmt: skip
        self._held.append(write)

    def _outbox_failed(self, exc: OutboxError) -> None:
        """Logged once per outage; deliveries pause (`_gate`) until a write works."""
        if self._outage is None:
            self._outage = time.monotonic()
            log.error("%s; holding new call events and pops in memory, deliveries paused, "
                      "retrying every second: free disk space or make %s writable", exc,
                      state_dir(self.config))  # fmt: skip
        elif self.outbox_error is None:
            log.debug("outbox: failing again: %s", exc)
        self.outbox_error = self._outage_error = str(exc)
        self._ok_since = None

    def _flush_held(self) -> None:
        """While the outbox is failing: a probe write and every held write, in order; saved
        when the commit works (`_commit_outbox` says so), held again when it does not."""
        if self.outbox is None:
            return
        self._saved_held = 0
        try:
            self.outbox.touch()
        except OutboxError as exc:
            self._rehold_unsaved()
            self._outbox_failed(exc)
            return
        while self._held:
            write = self._held.popleft()
            try:
                write(self.outbox)
            except OutboxError as exc:
                self._held.appendleft(write)
                self._rehold_unsaved()
                self._outbox_failed(exc)
                return
            self._saved_held += 1
            if self._deferred:
                self._unsaved.append(write)
        if self._deferred:
            self._commit_outbox()  # saved, or held again
        else:
            self._outbox_saved()  # each write committed as it went

    def _check_outbox_file(self) -> None:
        """The outbox file (or its whole folder) removed while running: SQLite goes on writing
        the open file, which no restart would find, and the folder's lock is gone. Write it
        again, with every row, and take the lock again; told once, retried every second."""
        if self.outbox is None:
            return
        change = self.outbox.file_changed()
        if change is None:
            return
        path = self.outbox.path
        if change == "replaced":
            if self.outbox_file_error is None:
                log.error(
                    "outbox: %s was replaced by another file while the agent runs; it "
                    "goes on with the one it opened: restart it to use the new one",
                    path,
                )
            self.outbox_file_error = f"outbox {path} was replaced while running (restart)"
            return
        if self.outbox_file_error is None:
            log.error("outbox: %s was removed while the agent runs; writing it again with the "
                      "%d pending deliveries", path, self.outbox.depth())  # fmt: skip
        self._commit_outbox()  # what is open goes into the old file (or is held, if it fails)
        if self.outbox_error is not None:
            return
        try:
            self.outbox.rewrite()
            fd = _lock_state_dir(path.parent)
        except (OutboxError, OSError, StateDirBusy) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.outbox_file_error = (f"outbox {path} was removed while running and cannot be "
                                      f"written again ({why}); pending deliveries are lost at "
                                      "a restart")  # fmt: skip
            return
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self._lock_fd = fd
        self.outbox_file_error = None
        log.info("outbox: %s written again (%d pending)", path, self.outbox.depth())

    def _gate(self) -> bool:
        """The deliverers' gate: this agent may deliver, and the outbox can record outcomes."""
        return self.outbox_error is None and self._may_deliver()

    def _setup_webhooks(self, config: cfg.Config) -> None:
        wanted: dict[str, cfg.Webhook] = {}
        for hook in config.webhooks:
            if hook.url in wanted:
                log.warning("webhook %s is listed twice; the first entry is used",
                            webhook_label(hook.url))  # fmt: skip
                continue
            wanted[hook.url] = hook
        if wanted == self._webhooks:
            return
        for url in list(self.deliverers):
            if self._webhooks.get(url) != wanted.get(url):
                self.deliverers.pop(url).stop()
                self._delivery_tasks.pop(url).cancel()
        self._webhooks = wanted
        self._labels = {url: webhook_label(url) for url in wanted}
        self._shown = {
            url: safe_url(url) if hook.format == "json" else webhook_label(url)
            for url, hook in wanted.items()
        }
        assert self.outbox is not None
        for url, hook in wanted.items():
            if url in self.deliverers:
                continue
            deliverer = WebhookDeliverer(hook, self.outbox, target=url, on_result=self._delivered,
                                         gate=self._gate)  # fmt: skip
            self.deliverers[url] = deliverer
            self._delivery_tasks[url] = asyncio.create_task(deliverer.run(), name=f"hook {url}")
        if not wanted and not config.publish:
            log.info("no webhook configured: pops are computed and logged, nothing is sent")

    def _setup_publish(self, config: cfg.Config) -> None:
        """One deliverer per `[[publish]]` event bus, each an outbox target of its own."""
        wanted: dict[str, cfg.Publish] = {}
        for bus in config.publish:
            target = bus_target(bus)
            if target in wanted:
                log.warning("[[publish]] %s is listed twice; the first entry is used", target)
                continue
            wanted[target] = bus
        if wanted == self._bus:
            return
        for target in list(self._bus):
            if self._bus[target] != wanted.get(target):
                self.deliverers.pop(target).stop()
                self._delivery_tasks.pop(target).cancel()
        old, self._bus = self._bus, wanted
        assert self.outbox is not None
        for target, bus in wanted.items():
            if target in self.deliverers and old.get(target) == bus:
                continue
            deliverer = BusDeliverer(bus, self.outbox, target=target, pbx=self.pbx,
                                     on_result=self._delivered, gate=self._gate)  # fmt: skip
            self.deliverers[target] = deliverer
            self._delivery_tasks[target] = asyncio.create_task(deliverer.run(), name=target)
            log.info("publishing call events and pops to %s", target)

    def _shown_target(self, target: str) -> str:
        return target if target in self._bus else self._shown.get(target, "?")

    def _delivered(self, result: DeliveryResult) -> None:
        self.last_outcome[result.target] = result.outcome
        if self.lease is not None and result.outcome in ("delivered", "dead"):
            self.lease.mark(result.target, result.key, result.outcome)
        if result.target in self._bus:
            self._published(result)
            return
        label = self._labels.get(result.target, "?")
        latency = result.latency if result.status is not None else None
        self.metrics.delivery(label, result.event, result.outcome, latency)
        if result.event == "screen_pop" and result.outcome != "retry":
            self.metrics.pops.labels(result.outcome).inc()
        url = self._shown.get(result.target, "?")
        if result.event.startswith("zammad.") and (action := zammad_action(result.answer)):
            log.info(
                "%s %s → %s: Zammad answered action %r (Zammad acts on it itself; cti "
                "does not control the call)",
                result.event,
                result.key,
                url,
                action,
            )
        if result.outcome == "delivered":
            pass  # cti.notify logs each delivery at debug level
        elif result.outcome == "retry":
            log.warning("%s %s → %s: %s; will retry", result.event, result.key, url, result.error)
        elif result.outcome == "dead":
            log.error("%s %s → %s: %s; dead letter, not retried", result.event, result.key, url,
                      result.error)  # fmt: skip
        else:
            log.warning("%s %s → %s expired before it could be delivered", result.event,
                        result.key, url)  # fmt: skip

    def _published(self, result: DeliveryResult) -> None:
        self.metrics.publishes.labels(result.target, result.event, result.outcome).inc()
        if result.outcome in ("delivered", "retry"):
            self.metrics.publish_latency.labels(result.target).observe(result.latency)
        if result.outcome == "retry":
            log.warning("%s %s → %s: %s; will retry", result.event, result.key, result.target,
                        result.error)  # fmt: skip
        elif result.outcome == "dead":
            log.error("%s %s → %s: %s; dead letter, not retried", result.event, result.key,
                      result.target, result.error)  # fmt: skip
        elif result.outcome == "expired":
            log.warning("%s %s → %s expired before it could be published", result.event,
                        result.key, result.target)  # fmt: skip

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(1.0)
            for pbx in self.sessions.values():
                if notice := pbx.drops.check():
                    log.warning("calls%s: %s", f" ({pbx.name})" if self.several else "", notice)
            if self.outbox is None:
                continue
            if self.outbox_error is not None or self._held:
                self._flush_held()
                if self.outbox_error is not None or self._held:
                    continue
            self._outbox_steady()
            self._check_outbox_file()
            now = self.clock()
            try:
                for item in self.outbox.expire(now=now):
                    self._expired(item)
            except OutboxError as exc:
                self._outbox_failed(exc)
                continue
            with contextlib.suppress(OutboxError):  # a failing disk shows in the next commit
                await asyncio.to_thread(self.outbox.checkpoint)
            if now - last_prune > PRUNE_EVERY:
                last_prune = now
                with contextlib.suppress(OutboxError):
                    self.outbox.prune(now=now, keep=self.config.agent.retention)
                self.pages.hub.prune()  # operators' call history past retention, too

    def _expired(self, item: Item) -> None:
        if not self._may_deliver():  # a standby's copy: the active agent delivered it, or not
            log.debug("%s %s expired in the standby's outbox", item.event, item.key)
            return
        if item.event == "screen_pop":
            self.metrics.pops.labels("expired").inc()
        shown = self._shown_target(item.target)
        log.warning("%s %s → %s expired undelivered", item.event, item.key, shown)

    # ------------------------------------------------------------------ active/standby

    def _setup_lease(self, config: cfg.Config) -> None:
        if not config.agent.lease:
            return
        self.lease = Lease(config.agent.lease, self.pbx, config.agent.lease_ttl,
                           on_change=self._lease_changed, eligible=self._eligible)  # fmt: skip
        self._caught_up = False
        self.metrics.lease_holder.set(0)
        log.info("active/standby: lease %s (ttl %g s) as %s; standby until it is ours",
                 self.lease.key, self.lease.ttl, self.lease.owner)  # fmt: skip

    def _eligible(self) -> bool:
        """Only an agent that follows the PBX may hold the lease: one that lost AMI for longer
        than the TTL (or is disabled) gives it up, so the other one can take over."""
        if not self.config.enabled:
            return False
        return self.connected or time.monotonic() - self._lost_ami_at < self.config.agent.lease_ttl

    def _may_deliver(self) -> bool:
        """The deliverers' gate: no lease configured, or held (and caught up after a takeover)."""
        return self.lease is None or (self._caught_up and self.lease.held)

    @property
    def role(self) -> str:
        return "active" if self._may_deliver() else "standby"

    def _lease_changed(self, held: bool) -> None:
        assert self.lease is not None
        self.metrics.lease_holder.set(1 if held else 0)
        self._caught_up = False
        if held:
            if self.lease.takeovers > self._takeovers:
                self._takeovers = self.lease.takeovers
                self.metrics.takeovers.inc()
            task = asyncio.create_task(self._take_over(), name="takeover")
            self._building.add(task)  # kept referenced; shutdown waits for it like a build
            task.add_done_callback(self._building.discard)

    async def _take_over(self) -> None:
        """Just took the lease: drop from the outbox what the old holder already finished, then
        deliver the rest (the same keys: a receiver that saw one drops it)."""
        try:
            await self._sync_from_peer()
        except Exception as exc:
            log.warning("takeover: cannot read what the other agent delivered (%s); delivering "
                        "everything pending (receivers dedupe on the key)", exc)  # fmt: skip
        if self.lease is not None and self.lease.held:
            self._caught_up = True
            pending = self.outbox.depth() if self.outbox is not None else 0
            log.info("active: delivering %d pending", pending)
            for deliverer in self.deliverers.values():
                deliverer.wake()

    async def _follow_peer(self) -> None:
        """On standby: keep the outbox in step with what the active agent finished."""
        while True:
            await asyncio.sleep(1.0)
            if self.lease is None or self.lease.held:
                continue
            with contextlib.suppress(Exception):
                await self._sync_from_peer()

    async def _sync_from_peer(self, batch: int = 500, most: int = 50_000) -> int:
        """Rows of ours the holder marked delivered or dead: the same here. Returns how many."""
        if self.lease is None or self.outbox is None:
            return 0
        targets = list(self.deliverers)
        after, seen, done = 0, 0, 0
        now = self.clock()
        while seen < most:
            rows = self.outbox.pending_keys(targets, after=after, limit=batch)
            if not rows:
                break
            seen += len(rows)
            after = rows[-1][0]
            for item_id, outcome in await self.lease.peer_outcomes(rows):
                if outcome == "dead":
                    self.outbox.dead(item_id, reason="a dead letter at the active agent", now=now)
                else:
                    self.outbox.delivered(item_id, now=now)
                done += 1
        if done:
            log.debug("standby: %d deliveries done by the active agent", done)
        return done

    # ------------------------------------------------------------------ config

    async def _watch_config(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._reload.wait()
            forced = self._reload.is_set()
            self._reload.clear()
            stamp = _stamp(self.config_path)
            if forced or stamp != self._stamp:
                self._stamp = stamp
                if stamp is None:
                    log.error("config: %s is gone; the previous config keeps running",
                              self.config_path)  # fmt: skip
                else:
                    self._reload_config()
            if self.runner is not None and (problem := self.runner.reload_if_changed()):
                log.error("rule: %s", problem)

    def _reload_config(self) -> None:
        try:
            new = cfg.load(self.config_path)
        except cfg.ConfigError as exc:
            for line in exc.problems:
                log.error("config: %s; the previous config keeps running", line)
            return
        old, self.config = self.config, new
        if new == old:
            return
        log.info("config reloaded from %s", self.config_path)
        if bool(new.servers) != self.several:
            log.warning("[server] ↔ [[servers]] changed; restart the agent to use it")
            new = new.model_copy(update={"server": old.server, "servers": old.servers})
        pbxs = [name for name, _ in new.pbx_servers()] if self.several else list(self.sessions)
        if pbxs[0] != self.pbx:
            log.warning("the first PBX is now %s, the lease stays %s until a restart", pbxs[0],
                        self.pbx)  # fmt: skip
        servers_changed = new.server != old.server or new.servers != old.servers
        self.sessions = self._sessions_for(new, self.sessions, calls_changed=new.calls != old.calls)
        if new.rule != old.rule:
            self._setup_rule(new)
        if new.directory != old.directory:
            self._setup_directory(new)
        if new.webhooks != old.webhooks:
            self._setup_webhooks(new)
        if new.publish != old.publish:
            self._setup_publish(new)
        if servers_changed or new.calls != old.calls:
            self._reconnect.set()
        elif new.enabled != old.enabled:
            if not new.enabled:
                log.info("integration disabled: closing the AMI connection")
            self._reconnect.set()
        if (new.agent.listen, new.agent.admin_listen) != (old.agent.listen, old.agent.admin_listen):
            log.warning("agent.listen / admin_listen changed; restart the agent to use them")
        if (new.agent.lease, new.agent.lease_ttl) != (old.agent.lease, old.agent.lease_ttl):
            log.warning("agent.lease / lease_ttl changed; restart the agent to use them")

    def _setup_rule(self, config: cfg.Config) -> None:
        path = effective_rule(config.rule.script)
        find = self.directory.find if self.directory is not None else None
        try:
            if self.runner is None:
                self.runner = RuleRunner(path, config.rule.timeout, find)
            elif path != self.runner.path:
                self.runner.use(path)
        except RuleError as exc:
            keeps = "; the previous rule keeps running" if self.runner else ""
            log.error("rule: %s%s", exc, keeps)
            return
        except OSError as exc:
            log.error("rule: %s: %s", path, exc.strerror)
            return
        self.runner.timeout = config.rule.timeout
        which = "built-in rule" if not config.rule.script else "rule"
        log.info("%s %s runs on %s (timeout %g s)", which, path, config.rule.trigger,
                 config.rule.timeout)  # fmt: skip

    def _setup_directory(self, config: cfg.Config) -> None:
        try:
            self.directory = open_directory(config.directory)
        except DirectoryError as exc:
            log.error("directory: %s", exc)
            self.directory = None
        if self.directory is not None:
            log.info("directory: %s", self.directory.describe())
        if self.runner is not None:
            self.runner.find = self.directory.find if self.directory is not None else None

    # ------------------------------------------------------------------ health

    async def _start_http(self, config: cfg.Config) -> None:
        admin: dict[str, Handler] = {"/healthz": self._healthz, "/metrics": self._metrics}
        main: dict[str, Handler] = {} if config.agent.admin_listen else dict(admin)
        main.update(self.pages.routes())  # /operator pages (cti operator link)
        host, port = parse_listen(config.agent.listen)
        self.http = HttpServer(main)
        self.http_address = await self.http.start(host, port)
        log.info("listening on http://%s:%d%s", *self.http_address,
                 "" if config.agent.admin_listen else " (/healthz, /metrics)")  # fmt: skip
        if config.agent.admin_listen:
            host, port = parse_listen(config.agent.admin_listen)
            self.admin_http = HttpServer(admin)
            self.admin_address = await self.admin_http.start(host, port)
            log.info("admin endpoints on http://%s:%d (/healthz, /metrics)", *self.admin_address)

    def health(self) -> dict[str, Any]:
        reason = None
        if not self.config.enabled:
            reason = "integration disabled"
        elif any(server_params(s.server) is None for s in self.sessions.values()):
            reason = "connection parameters incomplete (cti configure)"
        elif not self.connected:
            down = next(s for s in self.sessions.values() if not s.connected)
            where = f"AMI {down.name}" if self.several else "AMI"
            reason = f"not logged in to {where}: {down.error or 'connecting'}"
        elif self.outbox_file_error is not None:
            reason = self.outbox_file_error
        elif self._outage is not None:
            dropped = f", {self._held_dropped} dropped" if self._held_dropped else ""
            now = "deliveries paused" if self.outbox_error else "saving again"
            reason = (f"outbox not writable ({self._outage_error}): {len(self._held)} writes "
                      f"held in memory{dropped}, {now}")  # fmt: skip
        elif self.lease is not None and not self.lease.held and self.lease.error:
            reason = f"lease: cannot reach Redis ({self.lease.error}); delivering nothing"
        elif self.role == "active":
            failing = [(t, o) for t, o in self.last_outcome.items() if o in ("retry", "dead")]
            if failing:
                target, outcome = failing[0]
                shown = self._shown_target(target)
                what = "event bus" if target in self._bus else "webhook"
                reason = (
                    f"{what} {shown} is failing; deliveries wait in the outbox"
                    if outcome == "retry"
                    else f"{what} {shown} refused the last delivery (dead letter: cti outbox "
                    "list --dead)"
                )
        depth = self.outbox.depth() if self.outbox is not None else 0
        first = next(iter(self.sessions.values())).server
        return {
            "status": "ok" if reason is None else "degraded",
            "reason": reason,
            "enabled": self.config.enabled,
            "ami": {"connected": self.connected, "server": f"{first.host}:{first.port}"},
            "servers": [
                {"pbx": s.name, "server": f"{s.server.host}:{s.server.port}",
                 "connected": s.connected, "error": s.error, "event_filters": s.server_filters}
                for s in self.sessions.values()
            ],
            "active_calls": sum(s.planner.active() for s in self.sessions.values()),
            "outbox": {"pending": depth},
            "role": self.role,
            "lease": None if self.lease is None else {
                "name": self.lease.key, "owner": self.lease.owner, "holder": self.lease.holder,
                "ttl": self.lease.ttl, "error": self.lease.error,
                "takeovers": self.lease.takeovers,
            },
        }  # fmt: skip

    async def _healthz(self, request: Request) -> Response:
        data = self.health()
        return json_response(data, 200 if data["status"] == "ok" else 503)

    async def _metrics(self, request: Request) -> Response:
        return Response(200, self.metrics.render(), CONTENT_TYPE)


def _tracker(config: cfg.Config) -> CallTracker:
    return CallTracker(config.calls.extension_pattern, max_active=config.calls.max_active)


def _lost_end(call_id: str, rows: list[tuple[str, bytes]]) -> Ended | None:
    """An `ended` (reason lost) for a call known only from what the outbox sent of it."""
    call: dict[str, Any] | None = None
    rang: list[str] = []
    answered_by: list[str] = []
    for event, body in rows:
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if not isinstance(data, dict) or not event.startswith("call."):
            continue
        call = data
        ext = data.get("extension")
        if event == "call.ringing" and ext and ext not in rang:
            rang.append(ext)
        if event == "call.answered" and ext and ext not in answered_by:
            answered_by.append(ext)
    if call is None:
        return None
    return Ended(
        call_id, str(call.get("uniqueid") or call_id), str(call.get("caller") or ""),
        str(call.get("caller_name") or ""), str(call.get("dialed") or ""), call.get("queue"),
        None, bool(answered_by), tuple(answered_by), tuple(rang), "lost", None,
    )  # fmt: skip


def _unusable(folder: Path, why: str) -> str:
    """The one line for a state folder the agent cannot write, and what to do."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != folder and not parent.is_dir():
        why = f"{why} ({parent} is a file, not a folder)"
    with contextlib.suppress(OSError):
        disk = os.statvfs(parent)
        if min(disk.f_bavail, disk.f_bfree) == 0 and "full" not in why and "space" not in why:
            why = f"{why} (its disk is full)"  # SQLite calls some of that "disk I/O error"
    return (
        f"cannot write the agent's state folder {folder} ([agent] state_dir): {why}; make "
        "it writable for the user the agent runs as (or free space on its disk), or set "
        "[agent] state_dir to one that is"
    )


class StateDirBusy(Exception):
    """Another agent already uses this state folder (two would deliver everything twice)."""


def _lock_state_dir(folder: Path) -> int:
    """Hold an exclusive lock on `<state_dir>/agent.lock` for the agent's lifetime."""
    import fcntl

    fd = os.open(folder / "agent.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateDirBusy(
            f"another cti agent (pid {other}) already uses {folder}; stop it, or give this one "
            "its own [agent] state_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
