"""Events nobody reads are dropped as they are framed (`EventFilter`): pure units, no I/O.

What a user would notice if the filter were wrong: a call that never pops, rings twice or
never ends because an event the tracker needs was dropped. So the main check replays every
recorded capture (the vendored cacofonisk corpus and the lab's own recordings) through a
decoder with and without the tracker's filter, cut into reads at random places, and asks
for the very same call events.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from corpus import FILES, needs_corpus

from cti_cli.ami.codec import AMIDecoder, EventFilter
from cti_cli.ami.protocol import ActionListResult, AMIProtocol, Completed, Events, Greeted
from cti_cli.calls import CallTracker
from cti_cli.calls.sources import read_events

RECORDINGS = sorted((Path(__file__).resolve().parents[1] / "cti_cli/demo/recordings").glob("*.ami"))
TRACKER_EVENTS = CallTracker().event_names


def wire(events: Iterable[Mapping[str, str]]) -> bytes:
    """Events as Asterisk writes them: CRLF lines, a CRLF blank line after each."""
    return b"".join(
        ("".join(f"{k}: {v}\r\n" for k, v in event.items()) + "\r\n").encode("utf-8")
        for event in events
    )


def decode(data: bytes, seed: int, event_filter: EventFilter | None) -> list[Mapping[str, str]]:
    decoder = AMIDecoder(expect_banner=False)
    decoder.event_filter = event_filter
    rnd = random.Random(seed)
    out: list[Mapping[str, str]] = []
    at = 0
    while at < len(data):
        step = rnd.choice((1, 7, 64, 500, 4096, 65536))
        out += decoder.feed(data[at : at + step])
        at += step
    assert decoder.buffered == 0
    return out


def call_events(events: Iterable[Mapping[str, str]]) -> list[dict[str, object]]:
    tracker = CallTracker()
    return [e.to_dict() for ev in events for e in tracker.feed(ev)]


def captures() -> list[tuple[str, list[Mapping[str, str]]]]:
    found: list[tuple[str, list[Mapping[str, str]]]] = []
    for path in FILES:
        found.append((path.stem, [dict(e) for e in json.loads(path.read_text("utf-8"))]))
    for path in RECORDINGS:
        with path.open("rb") as stream:
            found.append((path.stem, [dict(e) for e in read_events(stream)]))
    return found


CAPTURES = captures()


def test_every_capture_is_checked() -> None:
    assert len(RECORDINGS) >= 10 and len(CAPTURES) == len(FILES) + len(RECORDINGS)
    with_calls = [name for name, events in CAPTURES if call_events(events)]
    assert len(with_calls) >= len(CAPTURES) - 2, "captures without calls would prove nothing"


@needs_corpus
@pytest.mark.parametrize(("name", "events"), CAPTURES, ids=[name for name, _ in CAPTURES])
def test_dropping_unread_events_changes_no_call_event(
    name: str, events: list[Mapping[str, str]]
) -> None:
    data = wire(events)
    wanted = call_events(decode(data, 1, None))
    skipped: Counter[bytes] = Counter()
    event_filter = EventFilter(TRACKER_EVENTS, skipped)
    kept = decode(data, 2, event_filter)
    assert call_events(kept) == wanted
    # nothing is lost from the count: kept + dropped = every event, by name
    by_name = Counter(str(e.get("Event")) for e in events)
    seen = Counter(str(m.get("Event")) for m in kept)
    seen.update({k.decode(): v for k, v in skipped.items()})
    assert seen == by_name
    assert all(k.decode() not in TRACKER_EVENTS for k in skipped)


def test_only_an_exact_unlisted_event_line_is_dropped() -> None:
    skipped: Counter[bytes] = Counter()
    decoder = AMIDecoder(expect_banner=False)
    decoder.event_filter = EventFilter(["Newchannel", "Hangup"], skipped)
    data = (
        b"Event: VarSet\r\nChannel: PJSIP/101-1\r\nVariable: Event: Newchannel\r\n\r\n"
        b"Event: Newchannel\r\nUniqueid: 1\r\n\r\n"
        b"Event: NewchannelX\r\nUniqueid: 2\r\n\r\n"  # a longer name is another event
        b"Response: Success\r\nMessage: Event: VarSet\r\n\r\n"
        b"Event:Hangup\r\nUniqueid: 3\r\n\r\n"  # spelled otherwise: kept, the tracker decides
        b"event: VarSet\r\nUniqueid: 4\r\n\r\n"
        b"Event: Hangup\nUniqueid: 5\r\n\r\n"  # a bare-LF header line
        b"Event: Hangup\r\n\r\n"
        b"Event: \xd0\x92\xd0\xb0\xd1\x80\r\nUniqueid: 6\r\n\r\n"
    )
    kept = decoder.feed(data)
    assert [m.get("Uniqueid") or m.get("Response") or m.name for m in kept] == [
        "1", "Success", "3", "4", "5", "Hangup"
    ]  # fmt: skip
    assert skipped == {b"VarSet": 1, b"NewchannelX": 1, "Вар".encode(): 1}


def test_list_events_of_an_action_are_never_dropped() -> None:
    protocol = AMIProtocol(event_filter=EventFilter(["Newchannel"]))
    assert isinstance(protocol.receive_data(b"Asterisk Call Manager/11.0.0\r\n")[0], Greeted)
    action_id, _ = protocol.send_action("CoreShowChannels", collect=True)
    out = protocol.receive_data(
        f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\n\r\n"
        f"Event: CoreShowChannel\r\nActionID: {action_id}\r\nUniqueid: 9.1\r\n\r\n"
        f"Event: CoreShowChannelsComplete\r\nActionID: {action_id}\r\nEventList: Complete\r\n"
        "\r\nEvent: VarSet\r\nUniqueid: 9.1\r\n\r\n".encode()
    )
    done = [o for o in out if isinstance(o, Completed)]
    assert len(done) == 1 and isinstance(done[0].reply, ActionListResult)
    assert [e.get("Uniqueid") for e in done[0].reply.events] == ["9.1"]
    # with no action waiting, the filter is back on
    after = protocol.receive_data(
        b"Event: VarSet\r\nUniqueid: 9.1\r\n\r\nEvent: Newchannel\r\nUniqueid: 9.2\r\n\r\n"
    )
    batches = [m.get("Uniqueid") for o in after if isinstance(o, Events) for m in o.messages]
    assert batches == ["9.2"]
