"""Call events: the one contract that `replay --json`, `watch --json` and the agent all emit.

Each event is a frozen dataclass; `to_dict()` gives the keys in contract order (the common
keys first, then the kind-specific ones) and `to_json()` one compact UTF-8 line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

# `lost`: the call ended while cti was disconnected from AMI (see `CallTracker.reconcile`).
REASONS = ("completed", "no-answer", "busy", "abandoned", "cancelled", "failed", "lost")


@dataclass(frozen=True, slots=True)
class CallEvent:
    """What every call event carries; subclasses add their own fields."""

    kind: ClassVar[str] = ""
    call_id: str
    uniqueid: str
    caller: str
    caller_name: str
    dialed: str
    queue: str | None
    time: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.kind,
            "call_id": self.call_id,
            "uniqueid": self.uniqueid,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "dialed": self.dialed,
            "queue": self.queue,
            "time": self.time,
        }
        out.update(self._extra())
        return out

    def _extra(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Ringing(CallEvent):
    """An operator's phone started ringing for this call."""

    kind: ClassVar[str] = "ringing"
    extension: str

    def _extra(self) -> dict[str, Any]:
        return {"extension": self.extension}


@dataclass(frozen=True, slots=True)
class Answered(CallEvent):
    """An operator is now talking with the caller."""

    kind: ClassVar[str] = "answered"
    extension: str

    def _extra(self) -> dict[str, Any]:
        return {"extension": self.extension}


@dataclass(frozen=True, slots=True)
class Transferred(CallEvent):
    """An operator (or the caller's side) handed the call on to `to`."""

    kind: ClassVar[str] = "transferred"
    from_extension: str
    to: str

    def _extra(self) -> dict[str, Any]:
        return {"from_extension": self.from_extension, "to": self.to}


@dataclass(frozen=True, slots=True)
class Ended(CallEvent):
    """The call's last channel hung up; the tracker forgets the call after this."""

    kind: ClassVar[str] = "ended"
    answered: bool
    answered_by: tuple[str, ...]
    rang: tuple[str, ...]
    reason: str
    duration: int | None

    def _extra(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "answered_by": list(self.answered_by),
            "rang": list(self.rang),
            "reason": self.reason,
            "duration": self.duration,
        }


@dataclass(frozen=True, slots=True)
class CallView:
    """Read-only snapshot of a live call, for the live table of `cti watch`."""

    call_id: str
    caller: str
    caller_name: str
    dialed: str
    queue: str | None
    state: str  # "ringing" | "talking"
    ringing: tuple[str, ...]
    talking: tuple[str, ...]
    started: str | None
    uniqueid: str = ""  # the caller channel's: the key of the call's CDR rows
