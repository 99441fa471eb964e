"""Benchmark the call tracker (run by hand: `.venv/bin/python bench/tracker.py`).

One run, three measurements, printed as a Markdown table:
1. the cacofonisk corpus repeated to >= 1M events through our `CallTracker` and through
   cacofonisk's own `EventHandler` (bench extra) -> events/s each, and the ratio;
2. the same stream as raw AMI bytes -> `AMIDecoder` -> `CallTracker` -> events/s;
3. process RSS before and after 1M events, with every call ended (state must not grow).
Each repetition gets its own Uniqueids/Linkedids (suffix `-r<N>`) so the calls are distinct.
"""

from __future__ import annotations

import gc
import json
import logging
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cti_cli.ami.codec import AMIDecoder
from cti_cli.calls import CallTracker

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "cacofonisk"
TARGET_EVENTS = 1_000_000
BATCH_REPS = 10
CHUNK = 65536


def load_corpus() -> list[list[dict[str, str]]]:
    files = sorted(CORPUS.glob("*/*.json"))
    if len(files) != 51:
        raise SystemExit(f"expected 51 corpus files under {CORPUS}, found {len(files)}")
    out = []
    for path in files:
        events = json.loads(path.read_text("utf-8"))
        out.append([{k: v for k, v in e.items() if k != "content"} for e in events])
    return out


def _is_id(key: str) -> bool:
    return key.endswith(("Uniqueid", "UniqueID", "Linkedid")) or key == "BridgedChannel"


def batches(corpus: list[list[dict[str, str]]], reps: int) -> Iterator[list[dict[str, str]]]:
    """Events of `reps` repetitions, BATCH_REPS at a time, ids made unique per repetition."""
    for start in range(0, reps, BATCH_REPS):
        batch: list[dict[str, str]] = []
        for rep in range(start, min(reps, start + BATCH_REPS)):
            tag = f"-r{rep}"
            for events in corpus:
                for e in events:
                    batch.append({k: (v + tag if v and _is_id(k) else v) for k, v in e.items()})
        yield batch


def to_ami_bytes(batch: list[dict[str, str]]) -> bytes:
    return b"".join(
        "".join(f"{k}: {v}\r\n" for k, v in e.items()).encode() + b"\r\n" for e in batch
    )


def rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def bench_ours(corpus: list[list[dict[str, str]]], reps: int) -> tuple[int, float, int]:
    tracker = CallTracker()
    n = calls = 0
    elapsed = 0.0
    for batch in batches(corpus, reps):
        feed = tracker.feed
        t0 = time.perf_counter()
        for event in batch:
            calls += len(feed(event))
        elapsed += time.perf_counter() - t0
        n += len(batch)
    return n, elapsed, calls


def bench_cacofonisk(corpus: list[list[dict[str, str]]], reps: int) -> tuple[int, float]:
    from cacofonisk.handlers import EventHandler
    from cacofonisk.reporters import BaseReporter

    logging.getLogger("cacofonisk").setLevel(logging.CRITICAL)
    handler = EventHandler(reporter=BaseReporter(), logger=logging.getLogger("cacofonisk"))
    wanted = handler.event_handlers().keys()
    n = 0
    elapsed = 0.0
    for batch in batches(corpus, reps):
        t0 = time.perf_counter()
        for event in batch:
            if event["Event"] in wanted:  # what its FileRunner does
                handler.on_event(event)
        elapsed += time.perf_counter() - t0
        n += len(batch)
    return n, elapsed


def bench_bytes(corpus: list[list[dict[str, str]]], reps: int) -> tuple[int, float, int]:
    tracker = CallTracker()
    decoder = AMIDecoder(expect_banner=False)
    n = calls = 0
    elapsed = 0.0
    for batch in batches(corpus, reps):
        data = to_ami_bytes(batch)
        feed = tracker.feed
        t0 = time.perf_counter()
        for i in range(0, len(data), CHUNK):
            for message in decoder.feed(data[i : i + CHUNK]):
                n += 1
                calls += len(feed(message))
        elapsed += time.perf_counter() - t0
    return n, elapsed, calls


def bench_decode_only(corpus: list[list[dict[str, str]]], reps: int) -> tuple[int, float]:
    """The codec alone, to tell its share of the bytes -> tracker path from the tracker's."""
    decoder = AMIDecoder(expect_banner=False)
    n = 0
    elapsed = 0.0
    for batch in batches(corpus, reps):
        data = to_ami_bytes(batch)
        t0 = time.perf_counter()
        for i in range(0, len(data), CHUNK):
            for message in decoder.feed(data[i : i + CHUNK]):
                n += message.is_event
        elapsed += time.perf_counter() - t0
    return n, elapsed


def bench_rss(corpus: list[list[dict[str, str]]], reps: int) -> tuple[float, float, int, int]:
    tracker = CallTracker()
    for batch in batches(corpus, BATCH_REPS):  # warm up: first allocations, interned names
        for event in batch:
            tracker.feed(event)
    before = rss_mib()
    for batch in batches(corpus, reps):
        for event in batch:
            tracker.feed(event)
        del batch
    after = rss_mib()
    return before, after, len(tracker._chans), len(tracker._calls)


def main() -> None:
    corpus = load_corpus()
    per_rep = sum(len(events) for events in corpus)
    reps = -(-TARGET_EVENTS // per_rep)
    ours_n, ours_t, ours_calls = bench_ours(corpus, reps)
    caco_n, caco_t = bench_cacofonisk(corpus, reps)
    bytes_n, bytes_t, bytes_calls = bench_bytes(corpus, reps)
    dec_n, dec_t = bench_decode_only(corpus, reps)
    before, after, chans_left, calls_left = bench_rss(corpus, reps)
    ours_rate, caco_rate, bytes_rate = ours_n / ours_t, caco_n / caco_t, bytes_n / bytes_t
    load = " / ".join(f"{x:.1f}" for x in psutil.getloadavg())
    print(f"load average at the end: {load} on {psutil.cpu_count()} CPUs")
    print(
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{per_rep} corpus events x {reps} repetitions"
    )
    print()
    print("| measurement | events | seconds | events/s | note |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| CallTracker (dict events) | {ours_n:,} | {ours_t:.2f} | {ours_rate:,.0f} "
        f"| {ours_calls:,} call events; {ours_rate / caco_rate:.1f}x cacofonisk (target >= 2x) |"
    )
    print(
        f"| cacofonisk 0.7.10 EventHandler | {caco_n:,} | {caco_t:.2f} | {caco_rate:,.0f} "
        "| null reporter, events pre-filtered like its FileRunner |"
    )
    print(
        f"| raw AMI bytes -> AMIDecoder -> CallTracker | {bytes_n:,} | {bytes_t:.2f} "
        f"| {bytes_rate:,.0f} | {bytes_calls:,} call events; target >= 150,000/s |"
    )
    print(
        f"| raw AMI bytes -> AMIDecoder only | {dec_n:,} | {dec_t:.2f} | {dec_n / dec_t:,.0f} "
        "| the codec's share of the line above |"
    )
    print(
        f"| RSS before / after {reps * per_rep:,} events | | | | {before:.1f} MiB / "
        f"{after:.1f} MiB ({after - before:+.1f}); channels left {chans_left}, "
        f"calls left {calls_left} |"
    )


if __name__ == "__main__":
    main()
