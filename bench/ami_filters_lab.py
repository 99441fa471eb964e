"""What AMI event filters save, on the lab's real Asterisk 22 (run by hand, never by the tests):

    .venv/bin/python bench/ami_filters_lab.py                 # 4 rounds of 10 queue calls
    .venv/bin/python bench/ami_filters_lab.py --calls 40 --sessions 8

Starts a lab of its own (free ports; needs root, see lab/README.md) and places queue calls
(`200`: 101 answers after 0.5 s, 102 rings and is cancelled), one every `--gap` s (2 s: one
call at a time, each answered), each talking 1 s. Rounds alternate between AMI sessions
*without* filters and sessions *with* the filters `cti agent` installs
(`cti_cli.ami.filters.filter_events`, the tracker's 31 event names); each round has
`--sessions` such sessions logged in (`read = all`), as with several CTI consumers.

Reported per call: the events and bytes one session received, and the CPU time Asterisk
spent (user + system of its process, over the round, divided by the calls). The events and
bytes are exact; the CPU is that of a shared machine, so compare the two kinds of round side
by side (they alternate, ABAB...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti_cli.ami.client import AMIClient  # noqa: E402
from cti_cli.ami.filters import filter_events  # noqa: E402
from cti_cli.calls.tracker import CallTracker  # noqa: E402
from lab import Lab  # noqa: E402


async def session(lab: Lab, filtered: bool) -> tuple[AMIClient, list[int]]:
    """A logged-in session, with the agent's filters or without; [events, bytes] so far."""
    client = AMIClient()
    await client.connect(lab.info.ami_host, lab.info.ami_port, timeout=10)
    await client.login(lab.info.ami_user, lab.info.ami_secret)
    if filtered:
        why = await filter_events(client, CallTracker().event_names)
        if why is not None:
            raise SystemExit(f"the lab's Asterisk refused the filters: {why}")
    counts = [0, 0]
    received = client._received  # the bench counts the raw bytes it is handed

    def counting(data: bytes) -> None:
        counts[0] += data.count(b"Event: ")
        counts[1] += len(data)
        received(data)

    client._received = counting  # type: ignore[method-assign]
    return client, counts


async def drain(client: AMIClient) -> None:
    async for _batch in client.event_batches():
        pass


async def one_round(
    lab: Lab, filtered: bool, calls: int, sessions: int, gap: float
) -> dict[str, float]:
    made = [await session(lab, filtered) for _ in range(sessions)]
    readers = [asyncio.create_task(drain(client)) for client, _ in made]
    await asyncio.sleep(0.5)
    for _, counts in made:
        counts[:] = [0, 0]
    asterisk = psutil.Process(lab.asterisk.pid)
    cpu0 = sum(asterisk.cpu_times()[:2])
    started = time.perf_counter()
    for i in range(calls):
        lab.call("200", caller=f"+7916555{i:04d}", caller_name="Иван Петров", talk=1.0)
        await asyncio.sleep(gap)
    await asyncio.to_thread(lab.wait_idle, 60)
    await asyncio.sleep(0.5)
    cpu = sum(asterisk.cpu_times()[:2]) - cpu0
    wall = time.perf_counter() - started
    events = sum(c[0] for _, c in made) / sessions
    size = sum(c[1] for _, c in made) / sessions
    for task in readers:
        task.cancel()
    for client, _ in made:
        await client.close()
    return {"events": events / calls, "bytes": size / calls, "cpu_ms": 1000 * cpu / calls,
            "wall": wall}  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    lab = Lab.start()
    try:
        lab.phone("101", "answer", answer_after=0.5)
        lab.phone("102", "noanswer")
        rounds: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for i in range(args.rounds):
            filtered = bool(i % 2)
            result = await one_round(lab, filtered, args.calls, args.sessions, args.gap)
            rounds[filtered].append(result)
            print(f"round {i + 1}: {'with' if filtered else 'without'} filters: "
                  f"{result['events']:.1f} events, {result['bytes']:,.0f} bytes, "
                  f"Asterisk {result['cpu_ms']:.1f} ms CPU per call", file=sys.stderr)  # fmt: skip
    finally:
        lab.stop()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Asterisk 22 lab, "
          f"{args.calls} queue calls per round, {args.sessions} AMI sessions (read = all), "
          f"{args.rounds} rounds alternating\n")
    print("| per call | without filters | with the agent's filters | with ÷ without |")
    print("|---|---:|---:|---:|")
    for key, label, fmt in (("events", "events one session receives", "{:.1f}"),
                            ("bytes", "bytes one session receives", "{:,.0f}"),
                            ("cpu_ms", "Asterisk CPU (all sessions), ms", "{:.1f}")):  # fmt: skip
        off = [r[key] for r in rounds[False]]
        on = [r[key] for r in rounds[True]]
        a, b = sum(off) / len(off), sum(on) / len(on)
        shown = [", ".join(fmt.format(x) for x in values) for values in (off, on)]
        print(f"| {label} | {shown[0]} | {shown[1]} | {b / a:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per round")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between calls")
    parser.add_argument("--sessions", type=int, default=4, help="AMI sessions per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating")
    asyncio.run(main(parser.parse_args()))
