"""CPU per call of the agent's outbox work, in process (run by hand, never by the test suite):

    .venv/bin/python bench/outbox_ops.py                          # this tree
    .venv/bin/python bench/outbox_ops.py --against /tmp/base       # and another tree, side by side

Each call does what `cti agent` asks of its outbox for one answered queue call with one JSON
webhook: a pop accepted while its rule runs (`put` without a body), its body (`finish`), four
lifecycle events (`put`), and for each of the five rows the deliverer's `due` and `delivered`,
in the deferred (group-commit) mode the agent uses, committing every `--commit-every` calls
(default 1: the agent's 5 ms group commit at 100 calls/s, about 110 commits a second).
Bodies are the sizes the agent writes (pop ≈ 1.2 KB, lifecycle ≈ 0.6 KB, Cyrillic included).
The measure is process CPU time over `--calls` calls after a warm-up, in a fresh subprocess
per run; trees alternate run by run, so compare them within one invocation (the machine is
shared: only the ratio travels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from side_by_side import code_of

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time, uuid
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from cti_cli.notify.outbox import Outbox

calls, folder, every = int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
pending = []
box = Outbox(folder / "outbox.sqlite3", defer=pending.append)
target = "http://127.0.0.1:8080/cti/events"
pop = json.dumps({"event": "screen_pop", "caller_name": "Иван Петров " * 8,
                  "open": [{"x": "y" * 900}]}, ensure_ascii=False).encode()
life = json.dumps({"event": "call.ringing", "caller_name": "Мария Сидорова " * 4,
                   "detail": "z" * 400}, ensure_ascii=False).encode()

def one(n, now):
    group = f"lab:{n}.{n % 97}"
    key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pop{n}"))
    box.put([target], key, group, "screen_pop", None, now=now, expires_at=now + 60,
            intent=b'{"trigger":"answer"}')
    box.finish(key, group, pop)
    for event in ("call.ringing", "call.ringing", "call.answered", "call.ended"):
        box.put([target], str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event}{n}{now}")), group, event,
                life, now=now, expires_at=now + 86400)
    for _ in range(5):
        for item in box.due(target, now=now + 1, limit=8):
            box.delivered(item.id, now=now + 1)
    if int((n + 1) / every) != int(n / every):  # a commit every `every` calls
        while pending:
            pending.pop()()

now = 1.8e9
for n in range(2000):  # warm-up: a table and indexes of some size
    one(n, now + n / 100)
start = time.process_time()
for n in range(2000, 2000 + calls):
    one(n, now + n / 100)
while pending:
    pending.pop()()
print(json.dumps({"us_per_call": 1e6 * (time.process_time() - start) / calls}))
"""


def run(tree: Path, calls: int, every: float) -> float:
    with tempfile.TemporaryDirectory(prefix="cti-outbox-bench-") as folder:
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(tree), str(calls), folder, str(every)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return float(json.loads(out.stdout)["us_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commit-every", type=float, default=1.0, metavar="CALLS",
                        help="calls per group commit (the agent's 5 ms at 100 calls/s: about 1)")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    results: dict[Path, list[float]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            results[tree].append(run(tree, args.calls, args.commit_every))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
          f"{sys.version.split()[0]}, {args.calls:,} calls per run, a commit every "
          f"{args.commit_every:g} calls, {args.rounds} runs per tree (alternating)\n")  # fmt: skip
    print("| tree | code | µs CPU per call (median) | all runs | ÷ first |")
    print("|---|---|---:|---|---:|")
    first = statistics.median(results[trees[0]])
    for tree in trees:
        values = results[tree]
        median = statistics.median(values)
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {tree} | {code_of(tree)} | {median:.0f} | {shown} | {median / first:.2f} |")


if __name__ == "__main__":
    main()
