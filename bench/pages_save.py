"""How long saving the operator pages' file holds the agent's loop (run by hand, never by the
test suite):

    .venv/bin/python bench/pages_save.py                          # this tree
    .venv/bin/python bench/pages_save.py --against /tmp/base       # and another tree, side by side

While calls come in, the agent writes `<state_dir>/operator-pages.json` once a second
(`PopHub`, `SAVE_EVERY`): every operator's buffered events (up to 200 each, the last hour) and
last 20 calls. The bytes are made on the agent's loop, the write goes to a thread. This script
fills a hub like a busy desk's, `--operators` operators with `--events` buffered events each
(pops the size the agent publishes, ≈ 1.5 KB with Cyrillic names, and call ends, half and half),
then times what the loop does per save (`_snapshot()`, the bytes of the file, with `--fresh` new
pops since the last save) and per pop
(`publish_pop`, which also makes the pop's SSE frame). Wall time of the loop's own work in a
fresh subprocess per run, trees alternating run by run: compare within one invocation (the
machine is shared: only the ratio travels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import code_of

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from cti_cli.agent.pophub import PopHub

operators, events, saves, fresh = (int(a) for a in sys.argv[2:6])
now = [1.8e9]
hub = PopHub(None, clock=lambda: now[0])

def pop(login, n):
    caller = f"+7916{n:07d}"
    return {
        "event": "screen_pop", "id": f"pop-{login}-{n}",
        "call": {"call_id": f"lab:{n}.1", "uniqueid": f"{n}.1", "caller": caller,
                 "caller_e164": caller, "caller_name": "Иван Петрович Сидоров",
                 "dialed": "200", "queue": "support", "trigger": "answer"},
        "operator": {"login": login, "name": "Мария Иванова", "team": "Поддержка",
                     "extension": "101"},
        "open": [
            {"type": "employee_card", "employee": {
                "id": str(n), "name": "Иван Петрович Сидоров", "phone": caller,
                "department": "Бухгалтерия", "email": "ivan.sidorov@example.ru",
                "position": "Главный бухгалтер", "office": "Москва, ул. Тверская, 1"}},
            {"type": "request_form", "fields": {
                "client": "Иван Петрович Сидоров", "client_id": str(n), "phone": caller,
                "subject": "Звонок от Иван Петрович Сидоров", "queue": "support"}},
        ],
        "received_at": now[0],
        "links": {"card": f"https://sd.example.ru/employees/{n}",
                  "form": f"https://sd.example.ru/requests/new?client={n}"},
    }

logins = [f"operator{i:03d}" for i in range(operators)]
n = 0
for login in logins:  # fill each feed: pops and call ends, as a busy hour leaves them
    feed = hub._feed(login)
    for _ in range(events // 2):
        n += 1
        hub.publish_pop(login, pop(login, n))
        hub._append(login, "call", {"call_id": f"lab:{n}.1", "caller": f"+7916{n:07d}",
                                    "caller_name": "Иван Петрович Сидоров", "answered": True,
                                    "talk": 93, "extension": "101", "reason": "hangup"})
size = 0
times = []
for _ in range(saves):  # the desk goes on between saves: `fresh` new events each second
    for _ in range(fresh):
        n += 1
        login = logins[n % operators]
        hub.publish_pop(login, pop(login, n))
    start = time.perf_counter()
    raw = hub._snapshot()  # bytes, or pieces written one after the other
    times.append(time.perf_counter() - start)
    raw = raw if isinstance(raw, bytes) else b"".join(raw)
    size = len(raw)
json.loads(raw)  # a valid file
start = time.perf_counter()
pops = 2000
for i in range(pops):
    n += 1
    hub.publish_pop(logins[i % operators], pop(logins[i % operators], n))
per_pop = (time.perf_counter() - start) / pops
times.sort()
print(json.dumps({"save_ms": 1e3 * times[len(times) // 2], "pop_us": 1e6 * per_pop,
                  "bytes": size}))
"""


def run(tree: Path, operators: int, events: int, saves: int, fresh: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(tree), str(operators), str(events), str(saves),
         str(fresh)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--events", type=int, default=200, help="buffered events per operator")
    parser.add_argument("--saves", type=int, default=21, help="saves timed per run (median)")
    parser.add_argument("--fresh", type=int, default=4,
                        help="pops published between two saves (a desk's second)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    results: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            results[tree].append(run(tree, args.operators, args.events, args.saves, args.fresh))
    sizes = {round(r["bytes"] / 2**20, 1) for rs in results.values() for r in rs}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
          f"{sys.version.split()[0]}, {args.operators} operators × {args.events} buffered "
          f"events, {args.fresh} new pops between saves, pages file "
          f"{', '.join(f'{s} MiB' for s in sorted(sizes))}, "
          f"{args.rounds} runs per tree (alternating)\n")  # fmt: skip
    print("| tree | code | loop held per save (median ms) | all runs | per pop (µs) |")
    print("|---|---|---:|---|---:|")
    for tree in trees:
        saves = [r["save_ms"] for r in results[tree]]
        pops = [r["pop_us"] for r in results[tree]]
        shown = ", ".join(f"{v:.2f}" for v in saves)
        print(f"| {tree} | {code_of(tree)} | {statistics.median(saves):.2f} | {shown} | "
              f"{statistics.median(pops):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
