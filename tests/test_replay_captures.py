"""What `cti replay --json` prints for every real and hand-written capture, event for event.

The call events are the contract the operators' screens, webhooks and `watch --json` consume, so
each capture's stream is kept, reviewed, in `tests/data/replay_expected.json`: whole, and again
attached a third of the way in (a tracker started mid-call, as after a restart). Captures: the
cacofonisk corpus (Asterisk 13), the 1.x transcripts, the Asterisk 22 lab recordings of the demo.
A change in any field of any event fails here; when the change is meant, regenerate the file
(`.venv/bin/python tests/test_replay_captures.py`) and review its diff.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cti_cli.calls import CallTracker
from cti_cli.calls.replay import replay
from cti_cli.calls.sources import read_events

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "data" / "replay_expected.json"
CAPTURES = {
    **{
        f"cacofonisk/{p.parent.name}/{p.stem}": p
        for p in (HERE / "data" / "cacofonisk").glob("*/*.json")
    },
    **{f"transcripts/{p.stem}": p for p in (HERE / "transcripts").glob("*.ami")},
    **{
        f"demo/{p.stem}": p for p in (HERE.parent / "cti_cli" / "demo" / "recordings").glob("*.ami")
    },
}


def _replayed(path: Path, *, from_third: bool) -> list[str]:
    """Call events as JSON lines; the calls still open at the end are closed as lost."""
    with path.open("rb") as stream:
        events = list(read_events(stream))
    if from_third:
        events = events[len(events) // 3 :]
    tracker = CallTracker()
    out = [e.to_json() for ev in events for e in tracker.feed(ev)]
    out += [e.to_json() for e in tracker.reconcile([], time="2000000000.000000")]
    return out


def current() -> dict[str, dict[str, list[str]]]:
    return {
        name: {
            "whole": _replayed(path, from_third=False),
            "from_a_third": _replayed(path, from_third=True),
        }
        for name, path in sorted(CAPTURES.items())
    }


def test_every_capture_is_kept() -> None:
    assert len(CAPTURES) >= 51 + 7 + 10
    assert sorted(json.loads(EXPECTED.read_text("utf-8"))) == sorted(CAPTURES)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_replay_prints_the_kept_call_events(name: str) -> None:
    expected = json.loads(EXPECTED.read_text("utf-8"))[name]["whole"]
    assert _replayed(CAPTURES[name], from_third=False) == expected


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_attached_a_third_in_the_kept_call_events_follow(name: str) -> None:
    expected = json.loads(EXPECTED.read_text("utf-8"))[name]["from_a_third"]
    assert _replayed(CAPTURES[name], from_third=True) == expected


def test_the_whole_stream_is_what_replay_prints() -> None:
    path = CAPTURES["transcripts/ast18_queue_answered"]
    with path.open("rb") as stream:
        printed = [e.to_json() for e in replay(io.BytesIO(stream.read()))]
    assert printed == _replayed(path, from_third=False)[: len(printed)]


if __name__ == "__main__":
    EXPECTED.write_text(json.dumps(current(), ensure_ascii=False, indent=1) + "\n", "utf-8")
    print(f"wrote {EXPECTED}")
