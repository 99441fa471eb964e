"""Why a call ended, from what the tracker saw (contract reasons in `events.REASONS`).

A call whose channels vanished while cti was not connected to AMI (found by
`CallTracker.reconcile`) is `lost`: how it ended was not seen, whatever was known before.

Otherwise, order of evidence: an answer wins (`completed`); then a queue abandon (`abandoned`);
then the caller channel's hangup cause when it is specific (busy / no answer / a network
failure); then the last dial result in the call (BUSY, NOANSWER, CANCEL, CHANUNAVAIL...). A
caller who simply hung up before anyone answered is `cancelled`.
"""

from __future__ import annotations

from cti_cli.calls.state import Call

# Q.850 causes Asterisk reports for a caller hanging up or normal teardown.
_NORMAL_CAUSES = frozenset({"", "0", "16", "26", "31", "127"})
_BUSY_CAUSES = frozenset({"17", "21"})  # user busy, call rejected
_NO_ANSWER_CAUSES = frozenset({"18", "19"})  # no user responding, alerting but no answer

_DIAL_STATUS_REASON = {
    "BUSY": "busy",
    "NOANSWER": "no-answer",
    "CANCEL": "cancelled",
    "CHANUNAVAIL": "failed",
    "CONGESTION": "failed",
    "INVALIDARGS": "failed",
    "DONTCALL": "failed",
    "TORTURE": "failed",
}


def end_reason(call: Call, *, lost: bool = False) -> str:
    if lost:
        return "lost"
    if call.answered:
        return "completed"
    if call.abandoned:
        return "abandoned"
    cause = call.caller_cause
    if cause is not None:
        if cause in _BUSY_CAUSES:
            return "busy"
        if cause in _NO_ANSWER_CAUSES:
            return "no-answer"
        if cause not in _NORMAL_CAUSES:
            return "failed"
    return _DIAL_STATUS_REASON.get(call.dial_status, "cancelled")


def duration(start: str | None, end: str | None) -> int | None:
    """Whole seconds between two AMI `Timestamp` values (epoch seconds with fraction)."""
    if start is None or end is None:
        return None
    try:
        return max(0, round(float(end) - float(start)))
    except ValueError:
        return None
