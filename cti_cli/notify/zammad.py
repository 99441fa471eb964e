"""Zammad's Generic CTI API: our call events as `newCall`, `answer` and `hangup`.

Zammad keeps a caller log and shows pop-ups from three events per call, each carrying `from`,
`to`, `direction` and `callId` (docs.zammad.org, api/generic-cti). We send them for calls that
reach a member of a responsible team: `newCall` when the call first rings one (`user` = the
team members it rings, `queue`), `answer` when a team member picks up (`answeringNumber` = their
login, which Zammad matches against user.phone, user.login, user.id; `user` = their name), and
`hangup` with a documented `cause`. Each at most once per call, so Zammad's log stays clean even
when a queue rings in rounds or the call is transferred. Pure: events in, bodies out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cti_cli.agent.pops import Operator, delivery_key
from cti_cli.calls.events import Answered, CallEvent, Ended, Ringing
from cti_cli.textsafe import utf8

# our Ended.reason → Zammad's hangup cause
CAUSES = {
    "completed": "normalClearing",
    "busy": "busy",
    "no-answer": "noAnswer",
    "abandoned": "cancel",
    "cancelled": "cancel",
    "failed": "congestion",
}


@dataclass(frozen=True, slots=True)
class ZammadEvent:
    key: str
    event: str  # "zammad.newCall" | "zammad.answer" | "zammad.hangup" (X-CTI-Event)
    call_id: str
    body: bytes


@dataclass
class _Call:
    new_call: bool = False
    answered: bool = False


@dataclass
class ZammadMapper:
    owners: Mapping[str, Operator]
    pbx: str
    _calls: dict[str, _Call] = field(default_factory=dict)

    def feed(self, event: CallEvent) -> list[ZammadEvent]:
        state = self._calls.setdefault(event.call_id, _Call())
        out: list[ZammadEvent] = []
        operator = (
            self.owners.get(event.extension) if isinstance(event, Ringing | Answered) else None
        )
        if operator is not None and not state.new_call:
            state.new_call = True
            users = [operator.name or operator.login]
            out.append(self._make(event, "newCall", {"user": users, "queue": event.queue}))
        if isinstance(event, Answered) and operator is not None and not state.answered:
            state.answered = True
            extra = {"answeringNumber": operator.login, "user": operator.name or operator.login}
            out.append(self._make(event, "answer", extra))
        if isinstance(event, Ended):
            del self._calls[event.call_id]
            if state.new_call:
                out.append(self._make(event, "hangup", {"cause": hangup_cause(event)}))
        return out

    def restore(self, call_id: str, *, answered: bool) -> None:
        """Zammad was told of this call before a restart (newCall sent)."""
        self._calls[call_id] = _Call(new_call=True, answered=answered)

    def _make(self, event: CallEvent, name: str, extra: dict[str, Any]) -> ZammadEvent:
        body: dict[str, Any] = {
            "event": name,
            "from": event.caller or "anonymous",
            "to": event.dialed,
            "direction": "in",
            "callId": event.call_id,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        data = utf8(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        key = delivery_key(self.pbx, event.call_id, "zammad." + name, "")
        return ZammadEvent(key, "zammad." + name, event.call_id, data)


def hangup_cause(event: Ended) -> str:
    """Zammad's cause for how the call ended; answered calls cleared normally."""
    if event.answered:
        return "normalClearing"
    if event.reason == "lost":
        return "cancel"
    return CAUSES.get(event.reason, "normalClearing")


def zammad_action(answer: bytes) -> str | None:
    """The `action` Zammad answered with (`reject` for a blocked caller), if any."""
    try:
        data = json.loads(answer or b"{}")
    except (ValueError, RecursionError):  # the desk's words: maybe nested 2,000 deep
        return None
    action = data.get("action") if isinstance(data, dict) else None
    return str(action) if action else None
