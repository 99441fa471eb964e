"""Which call events become screen pops and webhook events: the agent's pure decision layer.

Call events come from the tracker (the one interpretation of AMI). This module only decides,
for the responsible teams and the configured trigger, who gets a pop and which lifecycle events
go out — with delivery keys that any agent following the same PBX computes identically
(PBX + call + event + operator + occurrence), so a restart, a reconnect or a standby taking
over produces the same keys and the outbox drops what was already accepted.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cti_cli.calls.events import Answered, CallEvent, Ended, Ringing, Transferred
from cti_cli.config_choices import Trigger

# Fixed namespace: keys must be equal across agents, versions and restarts.
_KEY_NAMESPACE = uuid.UUID("6f4c2a64-4c1b-4f63-9d0e-0c7a1f1e5c11")
_NAMESPACE_BYTES = _KEY_NAMESPACE.bytes


def delivery_key(pbx: str, call_id: str, event: str, party: str, nth: int = 1) -> str:
    """The idempotency key of one event: a UUID derived from what identifies it.

    Exactly ``str(uuid.uuid5(namespace, pbx ␟ call ␟ event ␟ party ␟ nth))`` (RFC 4122 §4.3),
    computed without the UUID object: four or five keys per call, on the event loop."""
    name = "\x1f".join((pbx, call_id, event, party, str(nth)))
    sha1 = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False)
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Operator:
    """A member of a responsible team, as seen at one extension."""

    login: str
    name: str
    team: str
    extension: str

    def to_dict(self) -> dict[str, str]:
        return {
            "login": self.login,
            "name": self.name,
            "team": self.team,
            "extension": self.extension,
        }


@dataclass(frozen=True, slots=True)
class PopRequest:
    """One operator should see one caller's card now."""

    key: str
    trigger: Trigger
    operator: Operator
    call: dict[str, Any]  # call_id, uniqueid, caller, caller_name, dialed, queue, time
    pbx: str = ""  # the PBX the call is on (`[[servers]]` name)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One `call.*` webhook event, body ready."""

    key: str
    event: str  # "call.ringing", ...
    call_id: str
    body: dict[str, Any]


@dataclass
class _CallState:
    relevant: bool = False
    popped: set[str] = field(default_factory=set)  # "login@trigger" popped for this call
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    held: list[Lifecycle] = field(default_factory=list)  # events before a team member was reached


@dataclass
class Plan:
    pops: list[PopRequest] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)


class PopPlanner:
    """Call events in, pop requests and lifecycle events out. No I/O."""

    def __init__(self, owners: Mapping[str, Operator], trigger: Trigger, pbx: str) -> None:
        self.owners = dict(owners)
        self.trigger: Trigger = trigger
        self.pbx = pbx
        self._calls: dict[str, _CallState] = {}

    def configure(self, owners: Mapping[str, Operator], trigger: Trigger) -> None:
        """New teams or trigger from a config reload; calls in progress keep their history."""
        self.owners = dict(owners)
        self.trigger = trigger

    def active(self) -> int:
        return len(self._calls)

    def restore(self, call_id: str) -> None:
        """A call that reached a team member before a restart: its end must go out too."""
        self._calls.setdefault(call_id, _CallState()).relevant = True

    def plan(self, event: CallEvent) -> Plan:
        out = Plan()
        state = self._calls.get(event.call_id)
        if state is None:
            state = self._calls[event.call_id] = _CallState()
        party = _party(event)
        slot = (event.kind, party)
        nth = state.counts.get(slot, 0) + 1
        state.counts[slot] = nth
        body = event.to_dict()
        body["event"] = "call." + event.kind
        life = Lifecycle(
            delivery_key(self.pbx, event.call_id, body["event"], party, nth),
            body["event"],
            event.call_id,
            body,
        )
        operator = self.owners.get(party) if isinstance(event, Ringing | Answered) else None
        if operator is not None and not state.relevant:
            state.relevant = True
            out.lifecycle.extend(state.held)
            state.held.clear()
        if state.relevant:
            out.lifecycle.append(life)
        elif not isinstance(event, Ended):
            state.held.append(life)
        if operator is not None and _triggers(event, self.trigger):
            once = f"{operator.login}@{self.trigger}"
            if once not in state.popped:
                state.popped.add(once)
                out.pops.append(self._pop(event, operator))
        if isinstance(event, Ended):
            del self._calls[event.call_id]
        return out

    def _pop(self, event: CallEvent, operator: Operator) -> PopRequest:
        party = f"{operator.login}@{self.trigger}"
        key = delivery_key(self.pbx, event.call_id, "screen_pop", party, 1)
        call = {
            "call_id": event.call_id,
            "uniqueid": event.uniqueid,
            "caller": event.caller,
            "caller_name": event.caller_name,
            "dialed": event.dialed,
            "queue": event.queue,
            "time": event.time,
        }
        return PopRequest(key, self.trigger, operator, call, self.pbx)


CALL_FIELDS = (
    "call_id", "uniqueid", "caller", "caller_e164", "caller_name", "dialed", "queue", "trigger",
)  # fmt: skip


def rule_call(pop: PopRequest, caller_e164: str | None) -> dict[str, Any]:
    """The call as the rule and the screen_pop body see it."""
    call = dict(pop.call)
    call["caller_e164"] = caller_e164
    call["trigger"] = pop.trigger
    return {k: call.get(k) for k in CALL_FIELDS}


def screen_pop_body(pop: PopRequest, call: Mapping[str, Any], opened: Any) -> dict[str, Any]:
    """The `screen_pop` webhook body (the same in `cti rule test --json`)."""
    return {
        "event": "screen_pop",
        "id": pop.key,
        "call": {k: call.get(k) for k in CALL_FIELDS},
        "operator": pop.operator.to_dict(),
        "open": opened,
    }


def _party(event: CallEvent) -> str:
    if isinstance(event, Ringing | Answered):
        return event.extension
    if isinstance(event, Transferred):
        return f"{event.from_extension}>{event.to}"
    return ""


def _triggers(event: CallEvent, trigger: Trigger) -> bool:
    return isinstance(event, Ringing) if trigger == "ring" else isinstance(event, Answered)


def operators_by_extension(teams: Any, pbx: str | None = None) -> dict[str, Operator]:
    """Extension → operator on PBX `pbx`, from the config's `[[teams]]` (first team listing it
    wins). `"main:101"` counts only on PBX `main`, a bare `"101"` on every PBX; `pbx` None
    takes every entry."""
    from cti_cli.config import split_extension

    owners: dict[str, Operator] = {}
    for team in teams:
        for member in team.members:
            for spec in member.extensions:
                on, ext = split_extension(spec)
                if on is not None and pbx is not None and on != pbx:
                    continue
                owners.setdefault(ext, Operator(member.login, member.name, team.name, ext))
    return owners
