"""CPU per webhook POST: the agent's lean keep-alive client against httpx (run by hand).

A receiver in a subprocess (pinned to CPU 0 when there are 2+ CPUs) answers every request with
`200 OK` and a 2-byte body; each client sends N screen-pop-sized signed POSTs one after the
other over keep-alive connections from a subprocess of its own (pinned to the last CPU), and
reports its process CPU time (user + system) and wall time per POST, after 200 warm-up POSTs.
Clients run interleaved round by round, so a busy machine slows all of them alike; the medians
are printed side by side.

    .venv/bin/python bench/post_cpu.py                       # lean vs httpx, 5 rounds of 5,000
    .venv/bin/python bench/post_cpu.py --tree /tmp/old-cti   # also the lean client of another
                                                             # checkout (e.g. a git worktree)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RECEIVER = textwrap.dedent("""\
    import asyncio, sys

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                head = self.buffer[:end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\\r\\n")[0])
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length:]
                self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json"
                                     b"\\r\\nContent-Length: 2\\r\\n\\r\\nok")

    async def main():
        server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(86400)

    asyncio.run(main())
""")

CLIENT = textwrap.dedent("""\
    import asyncio, json, sys, time
    tree, kind, url, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sys.path.insert(0, tree)
    body = b'{"event":"screen_pop","id":"' + b"7" * 36 + b'","call":{' + b"x" * 800 + b"}}"
    headers = [
        (b"Content-Type", b"application/json"), (b"User-Agent", b"cti/0.1.0"),
        (b"X-CTI-Event", b"screen_pop"), (b"X-CTI-Delivery", b"7" * 36),
        (b"X-CTI-Timestamp", b"1764640000"), (b"X-CTI-Signature", b"sha256=" + b"ab" * 32),
    ]

    async def main():
        if kind == "httpx":
            import httpx
            client = httpx.AsyncClient(http1=True, http2=False, timeout=5.0)

            async def post():
                async with client.stream("POST", url, content=body, headers=headers) as reply:
                    await reply.aread()
                    return reply.status_code
        else:
            from cti_cli.notify.http1 import PostClient
            client = PostClient(url, max_connections=8, user_agent="cti/0.1.0")

            async def post():
                return (await client.post(body, headers)).status

        for _ in range(200):
            await post()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            status = await post()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await client.aclose()
        assert status == 200, status
        print(json.dumps({"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6}))

    asyncio.run(main())
""")


def pinned(cpu: int) -> list[str]:
    n = os.cpu_count() or 1
    return ["taskset", "-c", str(cpu % n)] if n >= 2 and _has_taskset() else []


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--posts", type=int, default=5000, help="POSTs per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], metavar="PATH",
                        help="another checkout whose lean client to measure too")  # fmt: skip
    args = parser.parse_args()
    receiver = subprocess.Popen([*pinned(0), sys.executable, "-c", RECEIVER],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/cti/events"
        clients = {"lean (this tree)": (str(ROOT), "lean"), "httpx": (str(ROOT), "httpx")}
        for tree in args.tree:
            clients[f"lean ({tree})"] = (tree, "lean")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, (tree, kind) in clients.items():
                out = subprocess.run(
                    [*pinned(-1), sys.executable, "-c", CLIENT, tree, kind, url, str(args.posts)],
                    capture_output=True, text=True, check=True, cwd="/",
                ).stdout  # fmt: skip
                results[name].append(json.loads(out))
    finally:
        receiver.kill()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds of "
          f"{args.posts} POSTs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| client | CPU µs per POST (median) | min–max | wall µs per POST |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        cpu = [r["cpu_us"] for r in runs]
        wall = statistics.median(r["wall_us"] for r in runs)
        print(f"| {name} | {statistics.median(cpu):.0f} | {min(cpu):.0f}–{max(cpu):.0f} "
              f"| {wall:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
