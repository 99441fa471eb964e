"""Does the agent's call state stay bounded over a million calls? (run by hand, never by tests)

    .venv/bin/python bench/soak_memory.py --calls 1000000 --every 100000

The real agent cannot be driven through a million calls in a working session (at the
benchmark's 100 calls/s that is 2.8 h, and the fake PBX is the first to saturate above that),
so this soak takes every piece of the agent that keeps something in memory per call, in one
process, as fast as they go, with the same AMI stream as `bench/e2e_latency.py` (a lab-recorded
Asterisk 22 queue call: ≈ 120 messages, every noise event included, half the callers known):

  AMI bytes -> AMIProtocol (the agent's EventFilter) -> CallTracker -> PopPlanner
  -> OperatorPages' PopHub (history, rings, live calls) -> normalize_number (its cache)

Each call gets its own ids; calls overlap as at 100 calls/s (each lasts ≈ 3.2 s of stream, so
≈ 320 are in progress at once). RSS is sampled every `--every` calls after a full collection.
Not in it: the SQLite outbox (its memory is SQLite's page cache, bounded by `cache_size`; the
file grows on disk until `prune`) and the HTTP client (a fixed pool of connections).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import platform
import re
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import e2e_latency as stream  # noqa: E402  (the e2e benchmark's call generator)

from cti_cli.agent.numbers import normalize_number  # noqa: E402
from cti_cli.agent.pophub import PopHub  # noqa: E402
from cti_cli.agent.pops import Operator, PopPlanner  # noqa: E402
from cti_cli.ami.codec import EventFilter  # noqa: E402
from cti_cli.ami.protocol import AMIProtocol, Events  # noqa: E402
from cti_cli.calls import CallTracker  # noqa: E402

RATE = 100.0  # calls per second of stream time (sets how many overlap)

# Template calls, built once by the e2e generator with ids no other text contains; each call
# of the soak is a template with its own ids and caller put in (bytes.replace on the whole
# call: the generator itself would take most of the soak's time).
_SEQ, _CHAN, _SEC = 0x0DEAD0, 0x0BEEF00, 1999999999
_CALLERS = {True: "89169999999", False: "+74959999999"}
_SEP = b"\x00"


def _pairs(seq: int, chan: int, sec: int) -> list[tuple[bytes, bytes]]:
    out = [(f"{seq + 1:08x}]", f"{(seq + 1) % 2**32:08x}]"),
           (f"{seq:08x}-34bc", f"{seq % 2**32:08x}-34bc"), (f"{chan:012x}", f"{chan:012x}")]
    for k in range(3):
        out.append((f"{_SEC}.{_CHAN + k}", f"{sec}.{chan + k}"))
        out.append((f"-{_CHAN + k:08x}", f"-{chan + k:08x}"))
    return [(old.encode(), new.encode()) for old, new in out]


Template = tuple[list[float], list[bytes], list[int]]  # offsets, text between ids, which id


def _templates() -> dict[tuple[bool, bool], Template]:
    found = {}
    for known in (True, False):
        olds = [old for old, _ in _pairs(_SEQ, _CHAN, _SEC)] + [_CALLERS[known].encode()]
        which = {old: i for i, old in enumerate(olds)}
        ids = re.compile(b"|".join(re.escape(o) for o in sorted(olds, key=len, reverse=True)))
        for with_102 in (True, False):
            call = stream.Call(_SEQ, 1.7e9, _CALLERS[known], "Шаблон Звонка", _CHAN, _SEC, with_102)
            parts = stream.build_call(call)
            blob = _SEP.join(d for _, d, _ in parts)
            segments, kinds, pos = [], [], 0
            for m in ids.finditer(blob):
                segments.append(blob[pos : m.start()])
                kinds.append(which[m.group()])
                pos = m.end()
            segments.append(blob[pos:])
            found[(known, with_102)] = ([o for o, _, _ in parts], segments, kinds)
    return found


def _call(templates: dict[tuple[bool, bool], Template], seq: int, chan: int,
          sec: int) -> tuple[list[float], list[bytes]]:  # fmt: skip
    caller, _name = stream.caller_of(seq)
    offsets, segments, kinds = templates[(seq % 2 == 0, seq % 4 < 2)]
    values = [new for _, new in _pairs(seq, chan, sec)] + [caller.encode()]
    pieces = [segments[0]]
    for kind, segment in zip(kinds, segments[1:], strict=True):
        pieces.append(values[kind])
        pieces.append(segment)
    return offsets, b"".join(pieces).split(_SEP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000, help="RSS sample period, calls")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    me = psutil.Process()
    tracker = CallTracker()
    protocol = AMIProtocol(event_filter=EventFilter(tracker.event_names))
    protocol.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    owners = {"101": Operator("ivanov", "Иван Иванов", "Первая линия", "101")}
    planner = PopPlanner(owners, "answer", "bench")
    clock = [1.7e9]
    hub = PopHub(None, clock=lambda: clock[0])
    heap: list[tuple[float, int, bytes]] = []
    order = 0
    pops = ended = call_events = 0
    chan_no = 0
    samples: list[tuple[int, float, float]] = []  # (calls started, MiB, seconds)
    started_at = time.perf_counter()

    def feed(data: bytes) -> None:
        nonlocal pops, ended, call_events
        for outcome in protocol.receive_data(data):
            if not isinstance(outcome, Events):
                continue
            for event in outcome.messages:
                for call_event in tracker.feed(event, event.get("Event", "")):
                    call_events += 1
                    hub.call_event(call_event, owners)
                    plan = planner.plan(call_event)
                    for pop in plan.pops:
                        pops += 1
                        e164 = normalize_number(str(pop.call.get("caller") or ""), "RU")
                        hub.publish_pop(pop.operator.login, {
                            "event": "screen_pop", "id": pop.key, "call": {**pop.call,
                            "caller_e164": e164}, "operator": pop.operator.to_dict(),
                        })  # fmt: skip
                    if call_event.kind == "ended":
                        ended += 1

    def sample(calls: int) -> None:
        gc.collect()
        mib = me.memory_info().rss / 2**20
        samples.append((calls, mib, time.perf_counter() - started_at))
        active = len(tracker.active_calls())
        print(f"[{samples[-1][2]:7.1f} s] calls {calls:>9,}  RSS {mib:6.1f} MiB  "
              f"active {active:4d}  pops {pops:,}", file=sys.stderr)  # fmt: skip

    sample(0)
    templates = _templates()
    for seq in range(args.calls):
        at = seq / RATE
        offsets, messages = _call(templates, seq, chan_no, 1_700_000_000 + int(at))
        chan_no += 3 if seq % 4 < 2 else 2
        for offset, data in zip(offsets, messages, strict=True):
            order += 1
            heapq.heappush(heap, (at + offset, order, data))
        chunk: list[bytes] = []
        while heap and heap[0][0] <= at:
            chunk.append(heapq.heappop(heap)[2])
        if chunk:
            clock[0] = 1.7e9 + at
            feed(b"".join(chunk))
        if (seq + 1) % args.every == 0:
            sample(seq + 1)
    while heap:
        feed(heapq.heappop(heap)[2])
    sample(args.calls)

    first_full = samples[1][1] if len(samples) > 2 else samples[0][1]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
          f"{platform.python_version()}; {args.calls:,} calls, {pops:,} pops, {ended:,} ended, "
          f"{call_events:,} call events, {len(tracker.active_calls())} left active")  # fmt: skip
    print("\n| calls | " + " | ".join(f"{c:,}" for c, _, _ in samples) + " |")
    print("|---|" + "---:|" * len(samples))
    print("| RSS, MiB | " + " | ".join(f"{m:.1f}" for _, m, _ in samples) + " |")
    print(f"\nRSS after the first {samples[1][0]:,} calls: {first_full:.1f} MiB; at the end "
          f"{samples[-1][1]:.1f} MiB ({samples[-1][1] - first_full:+.1f} MiB over the "
          f"remaining {samples[-1][0] - samples[1][0]:,} calls)")  # fmt: skip


if __name__ == "__main__":
    main()
