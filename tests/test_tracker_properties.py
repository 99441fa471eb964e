"""Property: interleaving the events of unrelated calls does not change any call's events."""

from __future__ import annotations

import json
from collections.abc import Mapping

from corpus import CORPUS, needs_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from cti_cli.calls import CallTracker

# Recordings of distinct calls (distinct Linkedids, no shared channel names).
NAMES = [
    "simple/ab_success_a_hangup",
    "simple/ab_reject",
    "simple/ab_callgroup",
    "queue/queue_a_cancel",
    "queue/queue_group",
    "xfer_blind/xfer_blind_abbcac",
    "xfer_attended/xfer_abbcac",
]
pytestmark = needs_corpus


def _load(name: str) -> list[Mapping[str, str]]:
    data: list[Mapping[str, str]] = json.loads((CORPUS / f"{name}.json").read_text("utf-8"))
    return data


def _by_call(events: list[Mapping[str, str]]) -> dict[str, list[dict[str, object]]]:
    tracker = CallTracker()
    calls: dict[str, list[dict[str, object]]] = {}
    for event in events:
        for out in tracker.feed(event):
            calls.setdefault(out.call_id, []).append(out.to_dict())
    return calls


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.sampled_from(NAMES), min_size=2, max_size=4, unique=True),
    data=st.data(),
)
def test_interleaving_unrelated_calls_changes_nothing(
    picks: list[str], data: st.DataObject
) -> None:
    streams = [_load(name) for name in picks]
    alone: dict[str, list[dict[str, object]]] = {}
    for stream in streams:
        alone.update(_by_call(stream))
    # A random merge that keeps each recording's own order.
    cursors = [0] * len(streams)
    merged: list[Mapping[str, str]] = []
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        live = [i for i, s in enumerate(streams) if cursors[i] < len(s)]
        i = data.draw(st.sampled_from(live))
        merged.append(streams[i][cursors[i]])
        cursors[i] += 1
    assert _by_call(merged) == alone
