"""Per-operator pop hub: what each operator's page is told, in order, resumable.

Every operator has a feed: a ring buffer of events (`pop` — a screen pop for them; `call` — a
call that reached them ended: answered or missed, talk time) with ids that only grow (seeded from
the clock in milliseconds, so they keep growing across restarts), and their last 20 calls.
A page's server-sent-events stream gets, on connect, a `hello` (who, the last calls) and then:
with `Last-Event-ID`, every buffered event after it (nothing lost, nothing repeated); without,
the events of the last `pop_ttl` seconds (a reload mid-call shows the pop again). Then live
events as they are published, and a keep-alive comment every 15 s.

The feeds are kept in `<state_dir>/operator-pages.json` (0600, atomic) so a restart keeps the
history and honours a `Last-Event-ID` from before it. No network I/O here: the HTTP handler
turns a `Subscription` into bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cti_cli.calls.events import Answered, CallEvent, Ended, Ringing
from cti_cli.files import write_private
from cti_cli.textsafe import shorten, utf8, whole_json

log = logging.getLogger("cti.agent.pages")

RING = 200  # events kept per operator for resuming
RESUME_WINDOW = 3600.0  # seconds an event stays resumable
HISTORY = 20  # calls shown per operator
DEFAULT_RETENTION = 7 * 86400.0  # [agent] retention: older history (caller numbers) is dropped
KEEPALIVE = 15.0
SAVE_EVERY = 1.0  # seconds between writes of the pages file (pops and call ends batch up)
QUEUE_LIMIT = 1000  # a stream that falls this far behind is closed (the page reconnects)


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of a feed. Its JSON is made at most once, when a page or the pages file first
    needs it, and kept: the file is written every second while calls come in, and serialising
    every buffered event again each time (up to 200 per operator) held the agent's loop for
    tens of milliseconds per save on a desk of 50 operators (``bench/pages_save.py``)."""

    id: int
    kind: str  # "pop" | "call"
    at: float
    data: dict[str, Any]  # never changed once the entry exists (its JSON is kept)
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _json(self) -> str:
        text = self._memo.get("text")
        if text is None:
            text = self._memo["text"] = _json_line(self.data)
        return str(text)

    def sse(self) -> bytes:
        return _frame(self.kind, self._json(), self.id)

    def record(self) -> bytes:
        """Its line in the pages file (the JSON of ``to_json()``), made once."""
        record = self._memo.get("record")
        if record is None:
            head = f'{{"id":{self.id},"kind":{_json_line(self.kind)},"at":{_json_line(self.at)}'
            record = self._memo["record"] = utf8(f'{head},"data":{self._json()}}}')
        return bytes(record)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": self.at, "data": self.data}


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per call


def _json_line(value: Any) -> str:
    """Compact one-line JSON, UTF-8 kept as is (newlines inside strings are escaped)."""
    return _ENCODER.encode(value)


def _frame(event: str, text: str, event_id: int | None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return utf8(f"{head}event: {event}\ndata: {text}\n\n")


def sse_frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event; the JSON is a single line (newlines inside strings are escaped)."""
    return _frame(event, _json_line(data), event_id)


@dataclass
class _Feed:
    events: deque[Entry] = field(default_factory=lambda: deque(maxlen=RING))
    history: list[dict[str, Any]] = field(default_factory=list)  # newest first
    subscribers: set[Subscription] = field(default_factory=set)
    # pop key -> entry id: "is this pop already in the ring?" without a scan of the ring on
    # every pop (ids grow, and the ring only ever loses its oldest entries)
    pop_ids: dict[str, int] = field(default_factory=dict)
    _joined: tuple[tuple[int, int, int] | None, bytes] | None = None  # `records()`, kept

    def add(self, entry: Entry) -> None:
        self.events.append(entry)
        key = entry.data.get("id") if entry.kind == "pop" else None
        if isinstance(key, str):
            if len(self.pop_ids) >= 2 * RING:  # forget keys that left the ring
                oldest = self.events[0].id
                self.pop_ids = {k: i for k, i in self.pop_ids.items() if i >= oldest}
            self.pop_ids[key] = entry.id

    def records(self) -> bytes:
        """The buffered events' records, comma-joined: kept until the ring changes (it only
        gains newer ids at its end and loses its oldest), so a save rejoins only the feeds of
        operators who had a call since the last one."""
        events = self.events
        mark = (events[0].id, events[-1].id, len(events)) if events else None
        if self._joined is None or self._joined[0] != mark:
            self._joined = (mark, b",".join([entry.record() for entry in events]))
        return self._joined[1]

    def has_pop(self, key: str) -> bool:
        at = self.pop_ids.get(key)
        return at is not None and bool(self.events) and at >= self.events[0].id


@dataclass
class _Live:
    """A call that reached at least one team member, until it ends."""

    started: float
    # extension → (agent clock, PBX timestamp or None) when it answered
    answered_at: dict[str, tuple[float, float | None]] = field(default_factory=dict)


class Subscription:
    """One open stream: what to replay first, then live entries from the queue."""

    def __init__(self, hub: PopHub, login: str, replay: list[Entry]) -> None:
        self.hub = hub
        self.login = login
        self.replay = replay
        self.queue: asyncio.Queue[Entry | None] = asyncio.Queue()
        self.closed = False

    def push(self, entry: Entry) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.close()
            return
        self.queue.put_nowait(entry)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
        self.hub.unsubscribe(self)


class PopHub:
    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        keepalive: float = KEEPALIVE,
        retention: Callable[[], float] = lambda: DEFAULT_RETENTION,
    ) -> None:
        self.path = path
        self.clock = clock
        self.keepalive = keepalive
        self.retention = retention  # read at each use: a config reload takes effect
        self._feeds: dict[str, _Feed] = {}
        self._live: dict[str, _Live] = {}
        self._last_id = 0
        self._dirty = False
        self._flush: asyncio.TimerHandle | None = None
        self._saved_at = float("-inf")  # loop time of the last save
        self._save_failing = False  # the last save failed (warned once, until one works)
        self._load()
        self._last_id = max(self._last_id, int(clock() * 1000))

    # ------------------------------------------------------------------ publishing

    def _feed(self, login: str) -> _Feed:
        feed = self._feeds.get(login)
        if feed is None:
            feed = self._feeds[login] = _Feed()
        return feed

    def _kept_since(self, now: float) -> float:
        """History ended before this moment is past retention."""
        return now - self.retention()

    def _retained(self, history: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        since = self._kept_since(now)
        return [h for h in history if _ended(h) >= since]

    def _append(self, login: str, kind: str, data: dict[str, Any]) -> Entry:
        self._last_id += 1
        now = self.clock()
        entry = Entry(self._last_id, kind, now, data)
        feed = self._feed(login)
        oldest = max(now - RESUME_WINDOW, self._kept_since(now))
        while feed.events and feed.events[0].at < oldest:
            feed.events.popleft()
        feed.add(entry)
        for sub in list(feed.subscribers):
            sub.push(entry)
        if self.path is not None:
            self._prepare(entry)
        return entry

    @staticmethod
    def _prepare(entry: Entry) -> None:
        """Make the entry's record soon, on its own turn of the loop (after what the pop still
        has to send): at 100 pops a second that is 200 records, which all at once in the next
        save would hold the loop for milliseconds."""
        with contextlib.suppress(RuntimeError):  # no loop (a tool, a test): the save makes it
            asyncio.get_running_loop().call_soon(entry.record)

    def publish_pop(self, login: str, data: dict[str, Any]) -> Entry | None:
        """A screen pop for `login` (`data["id"]` is the pop's delivery key: a pop rebuilt
        after a restart is not published twice)."""
        feed = self._feed(login)
        key = data.get("id")
        if isinstance(key, str) and feed.has_pop(key):
            return None
        entry = self._append(login, "pop", data)
        self._save()
        return entry

    def call_event(self, event: CallEvent, owners: Mapping[str, Any]) -> None:
        """Follow a call (owners: extension → operator with `.login`); when it ends, every team
        member it reached gets a `call` event and a history line: answered or missed."""
        now = self.clock()
        if isinstance(event, Ringing | Answered):
            if event.extension not in owners and event.call_id not in self._live:
                return
            live = self._live.get(event.call_id)
            if live is None:
                live = self._live[event.call_id] = _Live(now)
            if isinstance(event, Answered):
                live.answered_at.setdefault(event.extension, (now, _event_time(event)))
            return
        if not isinstance(event, Ended):
            return
        live = self._live.pop(event.call_id, None)
        reached: dict[str, list[str]] = {}
        for ext in (*event.rang, *event.answered_by):
            owner = owners.get(ext)
            if owner is not None and ext not in reached.setdefault(owner.login, []):
                reached[owner.login].append(ext)
        if not reached:
            return
        end_time = _event_time(event)
        started = live.started if live else now - (event.duration or 0)
        for login, exts in reached.items():
            answered = [e for e in exts if e in event.answered_by]
            talk: float | None = None
            if answered:
                marks = [live.answered_at[e] for e in answered if live and e in live.answered_at]
                if marks:
                    clock_at, pbx_at = min(marks)
                    if pbx_at is not None and end_time is not None:
                        talk = max(0.0, end_time - pbx_at)
                    else:
                        talk = max(0.0, now - clock_at)
            data = {
                "call_id": event.call_id,
                "caller": event.caller,
                "caller_name": event.caller_name,
                "dialed": event.dialed,
                "queue": event.queue,
                "extension": exts[0],
                "answered": bool(answered),
                "talk": round(talk) if talk is not None else None,
                "reason": event.reason,
                "started": round(started, 3),
                "ended": round(now, 3),
            }
            feed = self._feed(login)
            feed.history = [h for h in feed.history if h.get("call_id") != event.call_id]
            feed.history.insert(0, data)
            del feed.history[HISTORY:]
            feed.history = self._retained(feed.history, now)
            self._append(login, "call", data)
        self._save()

    # ------------------------------------------------------------------ reading

    def history(self, login: str) -> list[dict[str, Any]]:
        feed = self._feeds.get(login)
        return self._retained(feed.history, self.clock()) if feed else []

    def prune(self) -> int:
        """Drop history and buffered events past retention (kept off disk, too); the count."""
        now = self.clock()
        since = self._kept_since(now)
        dropped = 0
        for feed in self._feeds.values():
            kept = self._retained(feed.history, now)
            dropped += len(feed.history) - len(kept)
            feed.history = kept
            while feed.events and feed.events[0].at < since:
                feed.events.popleft()
                dropped += 1
        if dropped:
            self._save()
        return dropped

    def entries(self, login: str) -> list[Entry]:
        feed = self._feeds.get(login)
        return list(feed.events) if feed else []

    def subscribe(self, login: str, last_id: int | None, ttl: float) -> Subscription:
        """Register a stream and say what it must replay, in one step (no gap, no repeat)."""
        feed = self._feed(login)
        buffered = list(feed.events)
        if last_id is not None and last_id <= self._last_id:
            replay = [e for e in buffered if e.id > last_id]
        else:  # a fresh page, or an id this hub never gave: what is still current
            since = self.clock() - ttl
            replay = [e for e in buffered if e.at >= since]
        sub = Subscription(self, login, replay)
        feed.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        feed = self._feeds.get(sub.login)
        if feed is not None:
            feed.subscribers.discard(sub)

    def subscribers(self, login: str) -> int:
        feed = self._feeds.get(login)
        return len(feed.subscribers) if feed else 0

    async def stream(
        self,
        sub: Subscription,
        hello: dict[str, Any],
        still_valid: Callable[[], bool],
        check_every: float = 1.0,
    ) -> AsyncIterator[bytes]:
        """The bytes of one SSE stream; ends when `still_valid()` turns false (rotated token,
        operator removed from the teams) or the client goes away."""
        try:
            yield b"retry: 2000\n\n" + sse_frame("hello", hello)
            for old in sub.replay:
                yield old.sse()
            sub.replay = []
            quiet = 0.0
            while not sub.closed:
                try:
                    async with asyncio.timeout(check_every):
                        entry = await sub.queue.get()
                except TimeoutError:
                    if not still_valid():
                        return
                    quiet += check_every
                    if quiet >= self.keepalive:
                        quiet = 0.0
                        yield b": keep-alive\n\n"
                    continue
                if entry is None or not still_valid():
                    return
                quiet = 0.0
                yield entry.sse()
        finally:
            sub.close()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("operator pages: cannot read %s (%s); starting empty", self.path,
                        exc.strerror)  # fmt: skip
            return
        try:
            data: Any = whole_json(json.loads(raw.decode("utf-8")))
        except RecursionError:
            self._damaged("nested too deeply")
            return
        except ValueError as exc:
            self._damaged(str(exc))
            return
        try:
            self._last_id = int(data.get("last_id", 0))
            since = max(self.clock() - RESUME_WINDOW, self._kept_since(self.clock()))
            for login, saved in dict(data.get("operators", {})).items():
                feed = self._feed(str(login))
                for item in saved.get("events", []):
                    entry = Entry(int(item["id"]), str(item["kind"]), float(item["at"]),
                                  dict(item["data"]))  # fmt: skip
                    if entry.at >= since:
                        feed.add(entry)
                history = [dict(h) for h in saved.get("history", [])][:HISTORY]
                feed.history = self._retained(history, self.clock())
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self._damaged(f"{type(exc).__name__}: {exc}")
            self._feeds.clear()

    def _damaged(self, why: str) -> None:
        """Start empty, but keep the damaged file beside the new one (`.damaged`): the next
        save would otherwise overwrite what someone may want to look at or repair."""
        assert self.path is not None
        kept = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, kept)
        except OSError as exc:
            log.warning("operator pages: %s is damaged (%s); starting empty (cannot keep it: "
                        "%s)", self.path, shorten(why, 200), exc.strerror)  # fmt: skip
            return
        log.warning("operator pages: %s is damaged (%s); starting empty, the damaged file is "
                    "kept as %s", self.path, shorten(why, 200), kept)  # fmt: skip

    def _save(self) -> None:
        """Persist soon: inside the agent's loop at once when the last save is SAVE_EVERY
        seconds old, else when it will be (so a crash loses at most the last second's pops,
        and a busy desk still costs one write a second), written by a worker thread (a pop
        must never wait for the disk); without a loop, at once."""
        if self.path is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save_now()
            return
        self._dirty = True
        if self._flush is None:
            wait = max(0.0, self._saved_at + SAVE_EVERY - loop.time())
            self._flush = loop.call_later(wait, self._flush_soon, loop)

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush = None
        if self._dirty:
            self._dirty = False
            self._saved_at = loop.time()
            raw = self._snapshot()
            loop.run_in_executor(None, self._write, raw)

    def save_now(self) -> None:
        """Write the file now (start-up without a loop, shutdown)."""
        if self.path is None:
            return
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._dirty = False
        self._write(self._snapshot())

    def _snapshot(self) -> list[bytes]:
        """The pages file, ``{"version": 1, "last_id": …, "operators": {login: {"events": […],
        "history": […]}}}``, in pieces made of each entry's ready-made record: one piece per
        operator, written one after the other, so no copy of the whole file is ever made."""
        now = self.clock()
        pieces = [b'{"version":1,"last_id":%d,"operators":{' % self._last_id]
        for login, feed in self._feeds.items():
            if feed.events or feed.history:
                events = feed.records()
                history = utf8(_json_line(self._retained(feed.history, now)))
                comma = b"," if len(pieces) > 1 else b""
                login_json = utf8(_json_line(login))
                pieces.append(b'%s%s:{"events":[%s],"history":%s}' % (
                    comma, login_json, events, history))  # fmt: skip
        pieces.append(b"}}")
        return pieces

    def _write(self, pieces: list[bytes]) -> None:
        assert self.path is not None
        try:
            write_private(self.path, pieces, durable=False)
        except OSError as exc:
            if not self._save_failing:  # once, not on every pop while the disk is full
                log.warning("operator pages: cannot save %s: %s (the pages keep working from "
                            "memory)", self.path, exc.strerror)  # fmt: skip
            self._save_failing = True
            return
        if self._save_failing:
            self._save_failing = False
            log.info("operator pages: saved %s again", self.path)


def _ended(line: dict[str, Any]) -> float:
    """When a history line's call ended (0 when unknown: it is past any retention)."""
    try:
        return float(line.get("ended") or 0)
    except (TypeError, ValueError):
        return 0.0


def _event_time(event: CallEvent) -> float | None:
    try:
        return float(event.time) if event.time else None
    except ValueError:
        return None
