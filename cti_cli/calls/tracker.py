"""The call tracker: AMI events in, call events out. Pure and synchronous.

`CallTracker.feed(event)` takes one AMI event (any `Mapping[str, str]`) and returns the call
events it caused. No sockets, no clock reads, no logging: time only comes from the events'
`Timestamp` headers. Unknown or uninteresting events cost one dict lookup. Headers are asked
for in one spelling (`Uniqueid`, `DestUniqueid`, `Linkedid`): the events' own lookups ignore
case (`Message`, `HeaderDict`), so `UniqueID` or `LinkedID` from older modules are found too.

This module is the Asterisk 12+ state machine; the dialects without a Linkedid (1.4 - 11) add
their events from `legacy`, transfers and call pickup theirs from `transfers`, and the per-
extension counting of ringing and talking operators lives with the call (`state.Call`).

How calls are grouped
    Asterisk 12+ puts every channel of a call under one `Linkedid`; that is the call id, and the
    channel whose Uniqueid equals it is the caller. Older dialects have no Linkedid: every
    channel starts as its own call and calls are merged as they turn out to be one (`legacy`).

Who is an operator
    A channel whose name matches the extension pattern (default: `PJSIP|SIP|IAX2/<digits>-<hex>`)
    and that is not the call's own caller channel. Local channels never are, except FreePBX queue
    members `Local/101@from-queue...` (-> 101). Trunks (non-numeric device names) are not operators.

What `ringing` and `answered` mean
    `ringing`: an operator channel of the call reaches state Ringing (5): `Newstate` (or the
    state a channel is in when first seen, when attaching mid-call), or `DialState` with
    `DialStatus: RINGING`. `DialBegin` alone is NOT ringing (a busy phone gets DialBegin and
    never rings).
    `answered`: an operator channel of the call reaches state Up (6), or is bridged (`Bridge`/
    `Link`), or is the member of `AgentConnect`. Fallback where ringing is not observable: an
    operator who answers without a ringing state having been seen gets its `ringing` event right
    before `answered`, so `rang` always contains `answered_by`.
    Both are counted per extension: two channels for one extension (a FreePBX Local member and
    its device) give one event. An extension that rings again in a later round (queue retry)
    gives a new `ringing`; `rang` lists each extension once.

When a call ends
    When its last known channel hangs up; its state is dropped then (bounded memory). The call is
    `answered` when an operator answered or a non-operator, non-Local party (a trunk, a mobile)
    answered a dial of the call. See `outcome.end_reason` for the reason ladder.

Bounded state
    Hangups can be missed (a filtered stream, a flood of `Newchannel` that never hang up), so the
    tracker never holds more than `max_active` calls: past that the oldest call is dropped and
    counted in `evicted`. A call with no event for `idle_expiry` seconds — by the events' own
    `Timestamp`s, so a replay behaves as live — is dropped and counted in `expired`. Either way
    a dropped call ends with reason `lost`, like a call that ended while disconnected.

Attaching mid-call
    Events for never-seen channels create what they can; a `Hangup` of an unknown channel is
    ignored; a call that ended is remembered (bounded) so late events of its Linkedid do not start
    a ghost call. Nothing here raises on odd input.

Catching up after a (re)connect
    `reconcile(channels)` takes the `CoreShowChannels` list: channels missing from it hung up
    unseen (a call left empty ends `lost`), unknown ones are attached as above (the same
    `_observe` path as a live event), known ones take their listed state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping

from cti_cli.ami.message import HeaderDict
from cti_cli.calls import legacy, transfers
from cti_cli.calls.events import Answered, CallEvent, CallView, Ended, Ringing
from cti_cli.calls.naming import ExtensionMatcher, local_pair_base
from cti_cli.calls.outcome import duration, end_reason
from cti_cli.calls.state import RINGING, UP, Call, Chan

Event = Mapping[str, str]
Out = list[CallEvent]
# What the dispatch table holds: a function of the tracker, the event and the call events out.
Handler = Callable[["CallTracker", Event, Out], object]

_STATE_BY_DESC = {
    "Down": "0",
    "Rsrvd": "1",
    "OffHook": "2",
    "Dialing": "3",
    "Ring": "4",
    "Ringing": RINGING,
    "Up": UP,
    "Busy": "7",
    "Dialing Offhook": "8",
    "Pre-ring": "9",
}
_ENDED_MEMORY = 8192  # recently ended call keys kept to ignore their stragglers
DEFAULT_MAX_ACTIVE = 20_000  # calls held at once; the oldest is dropped past this
DEFAULT_IDLE_EXPIRY = 6 * 3600.0  # seconds (event time) without an event: the call is dropped
_SWEEP_EVERY = 64  # handled events between looks at the clock of the stream
_MARK_SECONDS = 60.0  # stream time between two (event count, time) marks


def _state_of(ev: Event, prefix: str = "") -> str | None:
    """ChannelState code of the (prefixed) channel in `ev`; 1.4 sends only `State: Ringing`."""
    st = ev.get(prefix + "ChannelState")
    if st is not None:
        return st
    desc = ev.get(prefix + "ChannelStateDesc") or (ev.get("State") if not prefix else None)
    return _STATE_BY_DESC.get(desc) if desc else None


def _remember(recent: dict[str, None], key: str) -> None:
    """Add to a bounded insertion-ordered set, forgetting the oldest entry when full."""
    recent[key] = None  # pragma: no mutate (a set: the values are never read)
    if len(recent) > _ENDED_MEMORY:
        del recent[next(iter(recent))]


def _queue_of(entry: Event) -> str | None:
    """The queue a `CoreShowChannel` caller waits in (`Application: Queue`, data `name,opts`)."""
    if entry.get("Application") != "Queue":
        return None
    return entry.get("ApplicationData", "").partition(",")[0].strip() or None


def _seconds(duration: str | None) -> int | None:
    """`CoreShowChannel` `Duration` (`HH:MM:SS`, empty when unknown) in seconds."""
    parts = (duration or "").split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, secs = (int(p) for p in parts)
    return hours * 3600 + minutes * 60 + secs


def _start_from_durations(call: Call, now: str, listed: Mapping[str, Event]) -> None:
    """A call first seen in a snapshot started when its oldest listed channel was created."""
    ages = [_seconds(listed[uid].get("Duration")) for uid in call.chans if uid in listed]
    known = [age for age in ages if age is not None]
    if not known:
        return
    try:
        start = float(now) - max(known)
    except ValueError:  # `time` was not a number: keep the snapshot time
        return
    call.start_ts = f"{start:.6f}"


def _ignore(t: CallTracker, ev: Event, out: Out) -> None:
    """Handled (it counts for housekeeping), but says nothing the tracker needs."""
    return None


class CallTracker:
    """Turns a stream of AMI events into call events; see the module docstring for the rules."""

    def __init__(
        self,
        extension_pattern: str | None = None,
        *,
        max_active: int = DEFAULT_MAX_ACTIVE,
        idle_expiry: float = DEFAULT_IDLE_EXPIRY,
    ) -> None:
        if max_active < 1:
            raise ValueError(f"max_active must be at least 1, got {max_active}")
        self._ext = ExtensionMatcher(extension_pattern)
        self.max_active = max_active
        self.idle_expiry = idle_expiry
        self.evicted = 0  # calls dropped because more than max_active were in progress
        self.expired = 0  # calls dropped after idle_expiry seconds without an event
        self._live: dict[Call, None] = {}  # calls in progress, oldest first
        self._tick = 0  # handled events so far: calls remember the last that touched them
        self._next_sweep = _SWEEP_EVERY
        self._marks: deque[tuple[int, float]] = deque()  # (tick, event time), oldest first
        self._cutoff = 0  # calls touched before this tick were last seen idle_expiry ago
        self._chans: dict[str, Chan] = {}
        self._names: dict[str, str] = {}  # channel name -> Uniqueid (old dialects talk in names)
        self._calls: dict[str, Call] = {}  # call id (or alias after a merge) -> call
        self._ended: dict[str, None] = {}  # insertion-ordered set of recently ended keys
        self._gone: dict[str, None] = {}  # recently hung-up channels (events may trail Hangup)
        self._seq = 0
        self._reconciling = False  # inside reconcile(): an extension is reported once per call
        # The Asterisk 12+ state machine. Events that only introduce their channel go straight
        # to `_observe` (its return value is unused): one Python call less on the commonest.
        observe = CallTracker._observe
        ignore = _ignore
        self._handlers: dict[str, Handler] = {
            "Newchannel": observe,
            "NewConnectedLine": observe,
            "BridgeEnter": observe,
            "BridgeLeave": observe,
            "Newstate": CallTracker._on_newstate,
            "NewCallerid": CallTracker._on_callerid,
            "Rename": CallTracker._on_rename,
            "DialBegin": CallTracker._on_dial_begin,
            "DialState": CallTracker._on_dial_state,
            "DialEnd": CallTracker._on_dial_end,
            "Hangup": CallTracker._on_hangup,
            "QueueCallerJoin": CallTracker._on_queue_join,
            "QueueCallerLeave": CallTracker._on_queue_join,
            "QueueCallerAbandon": CallTracker._on_queue_abandon,
            "AgentCalled": CallTracker._on_agent_called,
            "AgentConnect": CallTracker._on_agent_connect,
            "AgentComplete": ignore,  # member channels' own events say all we need
            "AgentRingNoAnswer": ignore,
        }
        transfers.register(self._handlers)  # BlindTransfer, AttendedTransfer, Pickup, Transfer
        legacy.register(self._handlers)  # Asterisk 1.4 - 11 (AMI 1.0 - 1.3)

    # ------------------------------------------------------------------ public API

    @property
    def event_names(self) -> frozenset[str]:
        """Every AMI event name `feed` acts on: all others it ignores, so a source may leave
        them out (``EventFilter``)."""
        return frozenset(self._handlers)

    def feed(self, event: Event, name: str | None = None) -> list[CallEvent]:
        """Apply one AMI event; return the call events it caused (often none). ``name``: its
        ``Event`` header, when the caller has already read it (eleven thousand times a second
        on a busy PBX, a lookup saved is worth it)."""
        handler = self._handlers.get(event.get("Event", "") if name is None else name)
        if handler is None:  # most real traffic (VarSet, Newexten, DeviceStateChange...)
            return []
        out: list[CallEvent] = []
        handler(self, event, out)
        self._tick += 1
        if len(self._live) > self.max_active or self._tick >= self._next_sweep:
            self._housekeep(event, out)
        return out

    def reconcile(
        self, channels: Iterable[Event], time: str | float | None = None
    ) -> list[CallEvent]:
        """Bring the tracker in line with `CoreShowChannels` (every `CoreShowChannel` entry),
        taken right after a (re)connect; return the call events that catching up caused.

        Channels we hold that are not listed hung up while we were not listening: they are
        dropped, and a call left without channels ends with reason `lost`. Listed channels we
        do not know are attached mid-call exactly as live events would attach them; known ones
        get their current state. An extension already reported as ringing (answered) in a call
        is not reported again. Calls already ended stay ended. Idempotent: the same list again
        gives nothing. `time` (AMI `Timestamp` form, or epoch seconds) stamps the events and
        gives a lost call its duration; without it they have none. No clock is read here.
        """
        now = f"{time:.6f}" if isinstance(time, int | float) else time
        stamp: dict[str, str] = {} if now is None else {"Timestamp": now}
        listed: dict[str, Event] = {}
        for entry in channels:
            uid = entry.get("Uniqueid")
            if uid:
                listed[uid] = entry
        out: Out = []
        before = {id(call) for call in self._calls.values()}
        self._reconciling = True
        try:
            # callers first, so that their own caller ID is what the operators' events carry
            order = sorted(listed.items(), key=lambda item: item[0] != item[1].get("Linkedid"))
            for uid, entry in order:
                ev: Event = HeaderDict({**entry, **stamp}) if stamp else entry
                chan = self._chans.get(uid)
                if chan is None:  # attach mid-call, as its first live event would
                    chan = self._observe(ev, out)
                    if chan is not None and uid == chan.call.caller_uid:
                        chan.call.queue = chan.call.queue or _queue_of(entry)
                else:
                    chan.call.touched = self._tick  # Asterisk says it is still there
                    self._apply_state(chan, _state_of(ev), ev, out)
            for uid in [uid for uid in self._chans if uid not in listed]:
                self._forget(self._chans.pop(uid))  # hung up while we were away
            calls = {id(call): call for call in self._calls.values()}
            for call in calls.values():
                if not call.chans:
                    self._end(call, stamp, out, lost=True)
                elif id(call) not in before and now is not None:
                    _start_from_durations(call, now, listed)
            self._evict(stamp, out)
        finally:
            self._reconciling = False
        return out

    def active_calls(self) -> list[CallView]:
        """Snapshot of the calls in progress, oldest first."""
        calls = {id(call): call for call in self._calls.values()}  # a merged call once
        return [
            CallView(
                call_id=call.call_id,
                caller=call.caller,
                caller_name=call.caller_name,
                dialed=call.dialed,
                queue=call.queue,
                state="talking" if call.talking else "ringing",
                ringing=tuple(call.ringing),
                talking=tuple(call.talking),
                started=call.start_ts,
                uniqueid=call.caller_uid,
            )
            for call in calls.values()
        ]

    # ------------------------------------------------------------------ events: Asterisk 12+

    def _on_newstate(self, ev: Event, out: Out) -> None:
        chan = self._observe(ev, out)
        if chan is not None:
            self._apply_state(chan, _state_of(ev), ev, out)

    def _on_callerid(self, ev: Event, out: Out) -> None:
        chan = self._observe(ev, out)
        if chan is not None and chan.uid == chan.call.caller_uid:
            self._caller_from(chan.call, ev)

    def _on_rename(self, ev: Event, out: Out) -> None:
        old = ev.get("Channel") or ev.get("Oldname")
        new = ev.get("Newname")
        uid = ev.get("Uniqueid")
        chan = self._chans.get(uid) if uid else self._by_name(old)
        if chan is None or not new:
            return
        if self._names.get(chan.name) == chan.uid:
            del self._names[chan.name]
        chan.name = new
        self._names[new] = chan.uid
        chan.local = new.startswith("Local/")
        if chan.talk_ext is None and chan.ring_ext is None:
            chan.ext = self._ext.extension(new)

    def _on_hangup(self, ev: Event, out: Out) -> None:
        uid = ev.get("Uniqueid")
        chan = self._chans.pop(uid, None) if uid is not None else None
        if chan is None:
            return
        self._forget(chan)
        call = chan.call
        if chan.uid == call.caller_uid:
            call.caller_cause = ev.get("Cause")  # absent: like a normal clearing
        if not call.chans:
            self._end(call, ev, out)

    def _on_dial_begin(self, ev: Event, out: Out) -> None:
        self._observe_dest(ev, out, self._observe(ev, out))

    def _on_dial_state(self, ev: Event, out: Out) -> None:
        dest = self._observe_dest(ev, out, self._observe(ev, out))
        ringing = ev.get("DialStatus") == "RINGING"
        if ringing and dest is not None and dest.state not in (UP, RINGING):
            self._set_state(dest, RINGING, ev, out)

    def _on_dial_end(self, ev: Event, out: Out) -> None:
        src = self._observe(ev, out)
        dest = self._observe_dest(ev, out, src)
        self._dial_result(src, dest, ev.get("DialStatus"))

    @staticmethod
    def _dial_result(src: Chan | None, dest: Chan | None, status: str | None) -> None:
        call = src.call if src is not None else dest.call if dest is not None else None
        if call is None or not status:
            return
        call.dial_status = status
        if (
            status == "ANSWER"
            and dest is not None
            and dest.ext is None
            and not dest.local
            and dest.uid != call.caller_uid
        ):
            call.answered = True  # a trunk / mobile / non-operator party took the call

    def _on_queue_join(self, ev: Event, out: Out) -> None:
        self._queue_from(self._observe(ev, out), ev)

    @staticmethod
    def _queue_from(chan: Chan | None, ev: Event) -> None:
        """`chan`'s call waits in the event's `Queue`, unless it was in one already."""
        queue = ev.get("Queue")
        if chan is not None and queue and chan.call.queue is None:
            chan.call.queue = queue

    def _on_queue_abandon(self, ev: Event, out: Out) -> None:
        chan = self._observe(ev, out)
        if chan is not None:
            chan.call.abandoned = True
            if chan.call.queue is None:
                chan.call.queue = ev.get("Queue")

    def _on_agent_called(self, ev: Event, out: Out) -> None:
        if "DestUniqueid" not in ev:
            legacy.agent_called(self, ev, out)
            return
        caller = self._observe(ev, out)
        self._queue_from(caller, ev)  # before the member's first events, which name it
        self._queue_member(ev, out, caller, self._observe_dest(ev, out, caller))

    def _on_agent_connect(self, ev: Event, out: Out) -> None:
        if "DestUniqueid" in ev:  # Channel is the caller, Dest* the member
            caller = self._observe(ev, out)
            self._queue_from(caller, ev)
            member = self._queue_member(ev, out, caller, self._observe_dest(ev, out, caller))
        else:
            member = legacy.agent_connect_member(self, ev, out)
        if member is not None and member.state != UP:
            self._set_state(member, UP, ev, out)

    def _queue_member(
        self, ev: Event, out: Out, caller: Chan | None, member: Chan | None
    ) -> Chan | None:
        """Shared by AgentCalled/AgentConnect: tie the member to the caller's call, name it."""
        if caller is not None:
            self._queue_from(caller, ev)
            if member is not None and member.call is not caller.call and not ev.get("Linkedid"):
                self._merge(member.call, caller.call, ev, out)
        if member is not None and member.ext is None and member.local:
            interface = ev.get("Interface") or ev.get("Member") or ev.get("AgentCalled") or ""
            member.ext = self._ext.extension(interface)
        return member

    # ------------------------------------------------------------------ channels and calls

    def _observe(self, ev: Event, out: Out) -> Chan | None:
        """The event's own channel (Uniqueid/Channel), created on first sight.

        Its ChannelState is read only when the channel is new (attaching mid-call): every
        state change is announced by `Newstate` in all dialects, and skipping the lookup
        elsewhere keeps the hot path to two header reads per event.
        """
        uid = ev.get("Uniqueid")
        if uid is None:
            return None
        chan = self._chans.get(uid)
        if chan is None:
            chan = self._get(uid, ev.get("Channel", ""), ev.get("Linkedid"), None, ev)
            if chan is not None:
                chan.call.touched = self._tick
                self._apply_state(chan, _state_of(ev), ev, out)
        else:
            chan.call.touched = self._tick
        return chan

    def _observe_dest(self, ev: Event, out: Out, src: Chan | None) -> Chan | None:
        """The destination channel of a Dial*/Agent* event (`Dest...` headers)."""
        uid = ev.get("DestUniqueid")
        if uid is None:
            return None
        parent = src.call if src is not None else None
        chan = self._chans.get(uid)
        if chan is None:
            name = ev.get("DestChannel") or ev.get("Destination") or ""
            chan = self._get(uid, name, ev.get("DestLinkedid"), parent, ev, "Dest")
            if chan is not None:
                chan.call.touched = self._tick
                self._apply_state(chan, _state_of(ev, "Dest"), ev, out)
        if chan is None or parent is None or chan.call is parent:
            return chan
        if not ev.get("DestLinkedid"):
            self._merge(chan.call, parent, ev, out)
        elif chan.state == UP and chan.uid == chan.call.caller_uid and len(chan.call.chans) == 1:
            transfers.pick_up(self, chan, parent, ev, out)  # seen without its Pickup event
        return chan

    def _get(
        self,
        uid: str,
        name: str,
        linkedid: str | None,
        parent: Call | None,
        ev: Event,
        prefix: str = "",
    ) -> Chan | None:
        """The channel `uid`, created on first sight (None for stragglers of an ended call)."""
        chan = self._chans.get(uid)
        if chan is not None:
            return chan
        if uid in self._gone:
            return None
        call: Call | None = None
        if linkedid:
            call = self._calls.get(linkedid)
            if call is None:
                if linkedid in self._ended:
                    return None
                call = self._new_call(linkedid)
        elif parent is not None:
            call = parent
        else:
            base = local_pair_base(name)
            if base is not None:
                other = self._names.get(base + (";1" if name.endswith(";2") else ";2"))
                if other is not None:
                    call = self._chans[other].call
            if call is None:
                if uid in self._ended:
                    return None
                call = self._new_call(uid)
        chan = Chan(uid, name, call, self._ext.extension(name), name.startswith("Local/"))
        self._chans[uid] = chan
        if name:
            self._names[name] = uid
        call.chans[uid] = chan
        if call.start_ts is None:
            call.start_ts = ev.get("Timestamp")
        if uid == call.caller_uid:
            self._caller_from(call, ev, prefix)
            call.dialed = ev.get(prefix + "Exten", "")
        elif not call.caller and chan.ext is not None:
            # Attached mid-call: an operator's connected line is the caller.
            num = ev.get(prefix + "ConnectedLineNum")
            if num and num != "<unknown>":
                call.caller = num
                name_ = ev.get(prefix + "ConnectedLineName", "")
                call.caller_name = "" if name_ == "<unknown>" else name_
        return chan

    def _new_call(self, key: str) -> Call:
        self._seq += 1
        call = Call(key, key, self._seq)
        call.touched = self._tick
        self._calls[key] = call
        self._live[call] = None  # pragma: no mutate (an ordered set: values never read)
        return call

    def _known(self, uid: str | None) -> Chan | None:
        """The channel we know by Uniqueid `uid` (a header's value, None when absent)."""
        return self._chans.get(uid or "")

    def _by_name(self, name: str | None) -> Chan | None:
        uid = self._names.get(name) if name else None
        return self._chans.get(uid) if uid is not None else None

    def _by_uid_or_name(self, uid: str | None, name: str | None) -> Chan | None:
        chan = self._chans.get(uid) if uid else None
        return chan if chan is not None else self._by_name(name)

    @staticmethod
    def _caller_from(call: Call, ev: Event, prefix: str = "") -> None:
        num = ev.get(prefix + "CallerIDNum")
        if num is None:
            num = ev.get(prefix + "CallerID")
        if num is not None:
            call.caller = num
        name = ev.get(prefix + "CallerIDName")
        if name is not None:
            call.caller_name = "" if name == "<unknown>" else name

    _state_in = staticmethod(_state_of)  # for the handlers of `transfers`

    def _apply_state(self, chan: Chan, st: str | None, ev: Event, out: Out) -> None:
        if st is not None and st != chan.state:
            self._set_state(chan, st, ev, out)

    def _forget(self, chan: Chan) -> None:
        """`chan`, just taken out of `_chans`, is gone: release what it held in its call."""
        if self._names.get(chan.name) == chan.uid:
            del self._names[chan.name]
        _remember(self._gone, chan.uid)
        call = chan.call
        call.unring(chan)
        call.untalk(chan)
        call.chans.pop(chan.uid, None)

    # ------------------------------------------------------------------ operator state machine

    def _set_state(self, chan: Chan, st: str, ev: Event, out: Out) -> None:
        chan.state = st
        if chan.ext is None or chan.uid == chan.call.caller_uid:
            return
        if st == RINGING:
            self._ring(chan, ev, out)
        elif st == UP:
            self._answer(chan, ev, out)
        elif chan.ring_ext is not None:
            chan.call.unring(chan)

    def _ring(self, chan: Chan, ev: Event, out: Out) -> None:
        call = chan.call
        ext = call.ring(chan, retell=not self._reconciling)
        if ext is not None:
            out.append(Ringing(*self._common(call, ev), ext))

    def _answer(self, chan: Chan, ev: Event, out: Out) -> None:
        call = chan.call
        if chan.talk_ext is None and chan.ext is not None and chan.ext not in call.rang:
            self._ring(chan, ev, out)  # ringing was not observable: report it first
        ext = call.answer(chan, retell=not self._reconciling)
        if ext is not None:
            out.append(Answered(*self._common(call, ev), ext))

    @staticmethod
    def _common(call: Call, ev: Event) -> tuple[str, str, str, str, str, str | None, str | None]:
        call.emitted = True
        return (
            call.call_id,
            call.caller_uid,
            call.caller,
            call.caller_name,
            call.dialed,
            call.queue,
            ev.get("Timestamp"),
        )

    # ------------------------------------------------------------------ moving channels

    def _move(self, chan: Chan, dst: Call, ev: Event, out: Out) -> None:
        """Re-home a channel (transfer, merge) and replay its state in the new call."""
        src = chan.call
        if src is dst:
            return
        src.unring(chan)
        src.untalk(chan)
        src.chans.pop(chan.uid, None)
        chan.call = dst
        dst.chans[chan.uid] = chan
        if chan.state:
            self._set_state(chan, chan.state, ev, out)

    def _merge(self, a: Call, b: Call, ev: Event, out: Out) -> Call:
        """Fold the newer of two calls into the older; returns the survivor."""
        if a is b:
            return a
        older, newer = (a, b) if a.seq < b.seq else (b, a)
        self._absorb(older, newer, ev, out)
        return older

    def _absorb(self, keep: Call, gone: Call, ev: Event, out: Out) -> None:
        """Move every channel and key of `gone` into `keep` (`gone` ends if it was shown)."""
        if gone.emitted:
            self._emit_end(gone, ev, out)
        if keep.queue is None:  # before the moves: the events they replay name the queue
            keep.queue = gone.queue
        keep.abandoned = keep.abandoned or gone.abandoned
        for chan in list(gone.chans.values()):
            self._move(chan, keep, ev, out)
        keep.touched = max(keep.touched, gone.touched)
        self._live.pop(gone, None)
        for key in (gone.call_id, *gone.aliases):
            self._calls[key] = keep
            keep.aliases.append(key)

    # ------------------------------------------------------------------ ending

    def _emit_end(self, call: Call, ev: Event, out: Out, lost: bool = False) -> None:
        out.append(
            Ended(
                *self._common(call, ev),
                call.answered,
                tuple(call.answered_by),
                tuple(call.rang),
                end_reason(call, lost=lost),
                duration(call.start_ts, ev.get("Timestamp")),
            )
        )

    def _end(self, call: Call, ev: Event, out: Out, lost: bool = False) -> None:
        self._emit_end(call, ev, out, lost)
        self._live.pop(call, None)
        for key in (call.call_id, *call.aliases):
            if self._calls.get(key) is call:
                del self._calls[key]
            _remember(self._ended, key)

    # ------------------------------------------------------------------ bounded state

    def _housekeep(self, ev: Event, out: Out) -> None:
        self._evict(ev, out)
        if self._tick >= self._next_sweep:
            self._next_sweep = self._tick + _SWEEP_EVERY
            self._expire(ev, out)

    def _evict(self, ev: Event, out: Out) -> None:
        """Past `max_active` calls, drop the oldest (a flood of calls that never hang up)."""
        while len(self._live) > self.max_active:
            self.evicted += 1
            self._drop(next(iter(self._live)), ev, out)

    def _expire(self, ev: Event, out: Out) -> None:
        """Drop the calls with no event for `idle_expiry` seconds of the stream's own time."""
        try:
            now = float(ev.get("Timestamp", ""))
        except ValueError:
            return  # no Timestamp headers (timestampevents=no): only max_active bounds
        marks = self._marks
        if not marks or now - marks[-1][1] >= _MARK_SECONDS:
            marks.append((self._tick, now))
        while len(marks) > 1 and now - marks[1][1] >= self.idle_expiry:
            marks.popleft()
        tick, when = marks[0]
        if now - when < self.idle_expiry or tick <= self._cutoff:
            return
        self._cutoff = tick
        for call in [c for c in self._live if c.touched < tick]:
            self.expired += 1
            self._drop(call, ev, out)

    def _drop(self, call: Call, ev: Event, out: Out) -> None:
        """Stop following `call`: its channels are forgotten and it ends `lost`."""
        for chan in list(call.chans.values()):
            if self._chans.get(chan.uid) is chan:
                del self._chans[chan.uid]
            self._forget(chan)
        self._end(call, ev, out, lost=True)


class DropNotice:
    """When to tell the user that `tracker` has started dropping calls (`evicted`, `expired`):
    at the first drop and at every tenfold after it. Pure: the caller prints or logs the line."""

    def __init__(self, tracker: CallTracker) -> None:
        self.tracker = tracker
        self._next = 1

    def check(self) -> str | None:
        t = self.tracker
        dropped = t.evicted + t.expired
        if dropped < self._next:
            return None
        self._next = dropped * 10
        return (
            f"stopped following {dropped} call(s) that never hung up: {t.evicted} dropped as the "
            f"oldest past [calls] max_active = {t.max_active}, {t.expired} silent for "
            f"{t.idle_expiry / 3600:g} h; they end as lost"
        )
