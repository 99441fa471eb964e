"""Call tracking: AMI events -> call events (ringing, answered, transferred, ended)."""

from cti_cli.calls.events import (
    Answered,
    CallEvent,
    CallView,
    Ended,
    Ringing,
    Transferred,
)
from cti_cli.calls.tracker import CallTracker

__all__ = [
    "Answered",
    "CallEvent",
    "CallTracker",
    "CallView",
    "Ended",
    "Ringing",
    "Transferred",
]
