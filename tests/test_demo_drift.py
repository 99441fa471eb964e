"""The simulator does not drift from Asterisk.

For every recorded scenario the tracker must tell the same story from the simulator's stream
(fresh ids, another caller, other operators, other times) as from the real lab recording —
event for event, modulo ids, names and times:

* offline, straight from `templates.render`;
* over the wire: every scenario at once on one `SimPbx`, interleaved, through our AMI client;
* against the lab itself (marked `lab`): each scenario recorded again from the real Asterisk 22
  gives the same call events as the stored recording, so the recordings still are Asterisk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from random import Random
from typing import Any

import pytest

from cti_cli.ami.client import AMIClient
from cti_cli.calls import CallEvent, CallTracker
from cti_cli.demo import scenarios, templates
from cti_cli.demo.pbx import SimPbx
from cti_cli.demo.player import Player
from cti_cli.demo.scenarios import PlannedCall, Traffic
from cti_cli.demo.templates import Timing

SCENARIOS = templates.names()
CALLER, NAME = "+79161234567", "Пётр Сидоров"


def track(events: Iterable[Mapping[str, str]]) -> list[CallEvent]:
    tracker = CallTracker()
    out: list[CallEvent] = []
    for event in events:
        out += tracker.feed(event)
    return out


def recorded_events(name: str) -> list[CallEvent]:
    return track(dict(h) for _, h in templates.load(name).events)


def normalized(
    events: Iterable[CallEvent], ext_map: Mapping[str, str] | None = None, named: bool = True
) -> list[dict[str, Any]]:
    """Call events with ids as first-seen ordinals, the caller as CALLER/NAME, extensions
    mapped back to the lab's, no times."""
    back = {demo: lab for lab, demo in (ext_map or {}).items()}
    ids: dict[str, int] = {}
    out = []
    for event in events:
        data = event.to_dict()
        for key in ("call_id", "uniqueid"):
            data[key] = ids.setdefault(data[key], len(ids))
        data.pop("time")
        data.pop("duration", None)
        for key in ("extension", "from_extension", "to", "dialed"):
            if key in data:
                data[key] = back.get(data[key], data[key])
        for key in ("answered_by", "rang"):
            if key in data:
                data[key] = [back.get(x, x) for x in data[key]]
        data["caller"] = "CALLER"
        data["caller_name"] = "NAME" if data["caller_name"] and named else ""
        out.append(data)
    return out


def mapping_for(name: str, seed: int) -> dict[str, str]:
    """Operators as the demo picks them for this kind of call (not the lab's own)."""
    kind = scenarios.kind(name)
    rng = Random(seed)
    for _ in range(50):
        ext_map = Traffic(rng, Timing(), 30)._assign(kind, frozenset())
        assert ext_map is not None
        if any(ext_map[e] != e for e in templates.load(name).extensions):
            return ext_map
    return ext_map


@pytest.mark.parametrize("name", SCENARIOS)
def test_simulated_call_events_equal_the_recorded_ones(name: str) -> None:
    real = recorded_events(name)
    assert real and real[-1].kind == "ended", "the recording holds one whole call"
    for seed in (1, 2, 3):
        ext_map = mapping_for(name, seed)
        sent = templates.render(
            templates.load(name), templates.Ids(Random(seed)), start=time.time() + seed * 100,
            ext_map=ext_map, caller=CALLER, caller_name=NAME if seed != 2 else "",
            timing=Timing(0.3 * seed, 2.0),
        )  # fmt: skip
        simulated = track(templates.iter_events(sent))
        assert {e.caller for e in simulated} == {CALLER}
        assert {e.caller_name for e in simulated} == {NAME if seed != 2 else ""}
        assert normalized(simulated, ext_map) == normalized(real, named=seed != 2)
        assert {e.call_id for e in simulated}.isdisjoint({e.call_id for e in real})


def test_every_scenario_at_once_over_the_wire() -> None:
    """All recordings interleaved on one simulated PBX, through the AMI client: each call is
    still the recorded call (and no call borrows another's ids)."""

    async def scenario() -> dict[str, list[CallEvent]]:
        timing = Timing(0.05, 0.2)
        pbx = SimPbx(login="cti", secret="pw")
        _, port = await pbx.start()
        client = AMIClient()
        await client.connect("127.0.0.1", port, timeout=5)
        await client.login("cti", "pw")
        player = Player(pbx, Traffic(Random(1), timing, 0), timing=timing, rng=Random(1))
        callers: dict[str, str] = {}
        for i, name in enumerate(SCENARIOS):
            caller = f"+7916000{i:04d}"
            callers[caller] = name
            identity = {"101": "101", "102": "102", "103": "103"}
            player.start(PlannedCall(scenarios.kind(name), identity, caller, NAME, 0.0))
        tracker = CallTracker()
        got: dict[str, list[CallEvent]] = {}
        ended = 0

        async def follow() -> None:
            nonlocal ended
            async for message in client.events():
                if message.get("Event") == "Newchannel":
                    channels.append((message["Channel"], message["Uniqueid"]))
                elif message.get("Event") == "BridgeCreate":
                    bridges.append(message["BridgeUniqueid"])
                for event in tracker.feed(message):
                    got.setdefault(callers[event.caller], []).append(event)
                    ended += event.kind == "ended"
                    if ended == len(SCENARIOS):
                        return

        try:
            await asyncio.wait_for(asyncio.gather(follow(), player.finish(60)), 60)
        finally:
            await client.close()
            await pbx.close()
        return got

    channels: list[tuple[str, str]] = []
    bridges: list[str] = []
    got = asyncio.run(scenario())
    assert set(got) == set(SCENARIOS)
    names, uids = [c for c, _ in channels], [u for _, u in channels]
    assert len(set(names)) == len(names) and len(set(uids)) == len(uids), "fresh ids per call"
    assert len(set(bridges)) == len(bridges) >= 6, "one bridge per answered call, each its own"
    for name in SCENARIOS:
        assert normalized(got[name]) == normalized(recorded_events(name)), name


# ---------------------------------------------------------------------- against the real lab


def loose(events: list[dict[str, Any]]) -> list[Any]:
    """Two live runs of a call differ in the order of simultaneous rings (ring-all members,
    a ring group) and nothing else: compare runs of ringing events as sets."""
    out: list[Any] = []
    for e in events:
        item = {k: v for k, v in e.items() if k not in ("rang",)}
        if e["event"] == "ended":
            item["rang"] = sorted(e["rang"])
        if e["event"] == "ringing" and out and isinstance(out[-1], set):
            out[-1].add(e["extension"])
        elif e["event"] == "ringing":
            out.append({e["extension"]})
        else:
            out.append(item)
    return out


@pytest.mark.lab
def test_recordings_still_match_the_real_asterisk(lab: Any) -> None:
    from lab.record_scenarios import SCENARIOS as LAB_SCENARIOS
    from lab.record_scenarios import _record

    by_name = {s.name: s for s in LAB_SCENARIOS}
    assert set(by_name) == set(SCENARIOS), "every recording has its lab scenario"
    try:
        for name in SCENARIOS:
            raw = asyncio.run(_record(lab, by_name[name]))
            _, messages = templates.parse_messages(raw)
            fresh = track(dict(h) for h in messages if any(k == "Event" for k, _ in h))
            assert loose(normalized(fresh)) == loose(normalized(recorded_events(name))), name
    finally:
        lab.reset_phones()
