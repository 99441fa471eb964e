"""Mutation fuzzing by hand: millions of mutated real captures through codec, replay and tracker.

    python bench/fuzz.py                      # 1,000,000 inputs on 2 processes
    python bench/fuzz.py --inputs 200000 --workers 1 --seed 7 --json bench/results/fuzz.json

The mutations and the oracle are those of tests/test_fuzz.py (tests/fuzz_support.py), driven by
a seeded PRNG instead of hypothesis: reproducible (`--seed`), and a finding is printed with the
(seed, start, plan) that rebuilds it. 1 MB values are drawn in about 1 input of 500 (each costs
~20 ms; uniformly they would be most of the run). Peak memory (max RSS) is reported per worker:
it must stay flat however many inputs run. Exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_support import OPERATIONS, build, check, seeds  # noqa: E402

_HEAVY = ("huge_value", "endless")
_LIGHT = tuple(op for op in OPERATIONS if op not in _HEAVY)


def _plan(rng: random.Random) -> list[tuple[str, int]]:
    plan = [(rng.choice(_LIGHT), rng.getrandbits(32)) for _ in range(rng.randint(0, 8))]
    if rng.random() < 0.002:
        plan.insert(rng.randint(0, len(plan)), (rng.choice(_HEAVY), rng.getrandbits(32)))
    return plan


def _worker(args: tuple[int, int]) -> dict[str, Any]:
    seed, count = args
    rng = random.Random(seed)
    totals = {"inputs": 0, "messages": 0, "call_events": 0, "protocol_errors": 0,
              "replay_refused": 0, "damaged": 0, "heavy": 0}  # fmt: skip
    findings: list[dict[str, Any]] = []
    rss_after_warmup = 0
    started = time.perf_counter()
    for n in range(count):
        which, start, plan = rng.getrandbits(16), rng.getrandbits(16), _plan(rng)
        try:
            outcome = check(build(which, start, plan))
        except Exception as exc:  # a finding, recorded with how to rebuild it
            findings.append({"seed": which, "start": start, "plan": plan, "error": repr(exc),
                             "trace": traceback.format_exc(limit=4)})  # fmt: skip
            if len(findings) >= 20:
                break
            continue
        totals["inputs"] += 1
        totals["messages"] += outcome.messages
        totals["call_events"] += outcome.call_events
        totals["protocol_errors"] += outcome.protocol_error
        totals["replay_refused"] += outcome.replay_refused
        totals["damaged"] += outcome.damaged
        totals["heavy"] += any(op in _HEAVY for op, _ in plan)
        if n == min(10_000, count // 10):
            rss_after_warmup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**totals, "findings": findings, "seconds": time.perf_counter() - started,
            "rss_warm_kib": rss_after_warmup,
            "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    seeds()  # load once before forking
    share = -(-args.inputs // args.workers)
    jobs = [(args.seed * 1000 + w, share) for w in range(args.workers)]
    started = time.perf_counter()
    if args.workers == 1:
        parts = [_worker(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            parts = pool.map(_worker, jobs)
    wall = time.perf_counter() - started
    keys = ("inputs", "messages", "call_events", "protocol_errors", "replay_refused", "damaged",
            "heavy")  # fmt: skip
    result: dict[str, Any] = {key: sum(p[key] for p in parts) for key in keys}
    findings = [f for p in parts for f in p["findings"]]
    result.update(
        findings=len(findings),
        first_findings=findings[:3],
        seed=args.seed,
        workers=args.workers,
        wall_seconds=round(wall, 1),
        inputs_per_second=round(result["inputs"] / wall) if wall else 0,
        rss_warm_mib=round(max(p["rss_warm_kib"] for p in parts) / 1024, 1),
        rss_peak_mib=round(max(p["rss_peak_kib"] for p in parts) / 1024, 1),
        seeds=len(seeds()),
        python=platform.python_version(),
        when=time.strftime("%Y-%m-%d %H:%M:%S %z"),
    )
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", "utf-8")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
