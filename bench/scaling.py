"""Scaling figures of `cti agent` (run by hand, never by the test suite), all in ONE run:

    .venv/bin/python bench/scaling.py --head          # ≈ 6 min (agents from `git archive HEAD`)
    .venv/bin/python bench/scaling.py --head --quick  # ≈ 3–4 min, fewer kills, shorter windows

1. Failover: two real agents (`python -m cti_cli agent`, same config but state_dir/listen) on
   one fake AMI PBX stream (the Asterisk 22 queue call of bench/e2e_latency.py, broadcast to
   both), a real Redis lease (`lease_ttl` 2 s and 5 s). The holder is SIGKILLed; failover time =
   the kill → the first webhook that arrives on an HTTP connection opened after the kill (the
   dead holder's connections all predate it; the standby delivered nothing before). The killed
   agent is restarted as the new standby and the next repetition kills the other one.
2. Sinks: one agent, no lease, alone with one sink: none, webhook (local h11 receiver), NATS
   JetStream, RabbitMQ (real brokers, subscribers in this process). (a) steady `--cost-rate`
   calls/s: the agent's user+system CPU seconds per call (psutil) over the window; (b) a burst
   of `--burst-calls` at `--burst-rate` calls/s: deliveries/s counted at the receiver side
   (distinct delivery keys / span from the first to the last arrival).

Also read: one Redis sent-marker's MEMORY USAGE and the markers per call, the JetStream bytes
per stored message, the outbox bytes per delivery — the inputs of docs/scaling.md's sizing.

The fake PBX, the webhook receiver and the bus subscribers share this process (pinned to CPU 0
with 2+ CPUs); agents go to the last CPU; brokers are wherever the OS puts them. The machine may
be shared: compare ratios within a run. Prints Markdown (`--json` for JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_latency import (  # the fake PBX and call stream, reused as is
    ROOT,
    Call,
    HttpSession,
    PbxSession,
    build_call,
    caller_of,
    code_version,
    cpu_seconds,
    write_setup,
)

NATS_URL = os.environ.get("CTI_BENCH_NATS", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("CTI_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CTI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CODE = ROOT  # where the agents import cti_cli from (--head: a `git archive HEAD` copy)


# -- a fake PBX that serves several agents the same stream ------------------------------------
class MultiPbx:
    """Stands in for e2e_latency.FakePbx towards PbxSession: every logged-in session (after its
    CoreShowChannels) gets every message."""

    def __init__(self) -> None:
        self.sessions: list[PbxSession] = []
        self.ready = asyncio.Event()
        self.logins = 0
        self.disconnects = 0
        self.started = 0  # calls started
        self.messages = 0
        self.max_lag = 0.0

    @property
    def session(self) -> None:
        return None

    @session.setter
    def session(self, value: PbxSession | None) -> None:
        if value is not None:
            self.sessions.append(value)
            self.ready.set()

    def live(self) -> list[Any]:
        self.sessions = [s for s in self.sessions
                         if s.transport is not None and not s.transport.is_closing()]  # fmt: skip
        return [s.transport for s in self.sessions]

    async def stream(self, rate: float, calls: int | None, stop: asyncio.Event,
                     seed: int = 22, ring_102: float = 0.5) -> None:  # fmt: skip
        """Poisson arrivals at `rate` until `calls` started (None: until `stop`), then the
        remaining messages of the calls in flight."""
        rnd = random.Random(seed)
        heap: list[tuple[float, int, bytes]] = []
        order = 0
        now = time.perf_counter()
        wall0 = time.time() - now
        next_at = now + 0.02
        base = self.started

        def more() -> bool:
            return (calls is None or self.started - base < calls) and not stop.is_set()

        while more() or heap:
            now = time.perf_counter()
            while more() and next_at <= now:
                seq = self.started
                caller, name = caller_of(seq)
                two = rnd.random() < ring_102
                uid_sec = int(wall0 + next_at)
                call = Call(seq, wall0 + next_at, caller, name, 3 * seq + 7, uid_sec, two)
                for offset, data, _ in build_call(call):
                    order += 1
                    heapq.heappush(heap, (next_at + offset, order, data))
                self.started += 1
                next_at += rnd.expovariate(rate)
            transports = self.live()
            while heap and heap[0][0] <= now:
                due, _, data = heapq.heappop(heap)
                self.messages += 1
                self.max_lag = max(self.max_lag, now - due)
                for transport in transports:
                    transport.write(data)
            wake = min(heap[0][0] if heap else 1e18, next_at if more() else 1e18)
            if wake == 1e18:
                break
            await asyncio.sleep(max(0.0, wake - time.perf_counter()))


# -- receivers ---------------------------------------------------------------------------------
class Hits:
    """Every webhook: (arrival perf_counter, connection birth perf_counter, event, key)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, str, str]] = []

    def clear(self) -> None:
        self.rows.clear()


class StampedSession(HttpSession):
    def __init__(self, hits: Hits) -> None:
        super().__init__(self)  # type: ignore[arg-type]  # we are our own "receiver"
        self.hits = hits
        self.born = time.perf_counter()

    def hit(self, headers: dict[bytes, bytes], body: bytes, at: int) -> None:
        self.hits.rows.append((time.perf_counter(), self.born,
                               headers.get(b"x-cti-event", b"").decode(),
                               headers.get(b"x-cti-delivery", b"").decode()))  # fmt: skip


class BusTap:
    """A subscriber on the bus; rows like Hits (connection birth unused)."""

    def __init__(self, kind: str, stream: str, prefix: str) -> None:
        self.kind, self.stream, self.prefix = kind, stream, prefix
        self.hits = Hits()
        self._close: Any = None

    async def start(self) -> None:
        rows = self.hits.rows
        if self.kind == "nats":
            import nats

            nc = await nats.connect(NATS_URL, connect_timeout=3)

            async def take(msg: Any) -> None:
                h = msg.headers or {}
                rows.append((time.perf_counter(), 0.0, h.get("Cti-Event", ""),
                             h.get("Nats-Msg-Id", "")))  # fmt: skip

            await nc.subscribe(f"{self.prefix}.>", cb=take)
            self._close = nc.close
        else:
            import aio_pika

            conn = await aio_pika.connect(AMQP_URL, timeout=5)
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=1000)
            exchange = await channel.declare_exchange(self.stream, aio_pika.ExchangeType.TOPIC,
                                                      durable=True)  # fmt: skip
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, f"{self.prefix}.#")

            async def take_amqp(msg: Any) -> None:
                rows.append((time.perf_counter(), 0.0, msg.type or "", msg.message_id or ""))
                await msg.ack()

            await queue.consume(take_amqp)

            async def close() -> None:
                with contextlib.suppress(Exception):
                    await exchange.delete()
                await conn.close()

            self._close = close

    async def stop(self) -> None:
        if self._close:
            with contextlib.suppress(Exception):
                await self._close()


# -- agents ------------------------------------------------------------------------------------
class Agent:
    def __init__(self, config: Path, listen: str, log: Path, cpu: int | None) -> None:
        self.config, self.listen, self.log_path, self.pin = config, listen, log, cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def start(self) -> Agent:
        env = {**os.environ, "CTI_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(CODE)}  # fmt: skip
        env.pop("CTI_SERVER__PASSWORD", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cti_cli", "agent"],
                                         stdout=log, stderr=log, env=env, cwd=CODE)  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        if self.pin is not None:
            with contextlib.suppress(psutil.Error):
                self.ps.cpu_affinity([self.pin])
        return self

    async def role(self) -> str:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                r = await client.get(f"http://{self.listen}/healthz")
            return str(r.json().get("role", "?"))
        except (httpx.HTTPError, ValueError):
            return "down"

    async def wait_role(self, want: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (got := await self.role()) != want:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"agent exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"role {got!r}, not {want!r}:\n"
                                 f"{self.log_path.read_text()[-3000:]}")  # fmt: skip
            await asyncio.sleep(0.05)

    def cpu(self) -> float:
        assert self.ps is not None
        return cpu_seconds(self.ps)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        for _ in range(150):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.proc.kill()
        self.proc.wait()


def make_config(
    folder: Path, name: str, ami_port: int, hook_port: int, *, webhook: bool,
    agent: dict[str, Any], publish: list[dict[str, Any]],
) -> tuple[Path, str]:  # fmt: skip
    """bench/e2e_latency.py's config (team, rule, 2,000-row directory), own state/listen."""
    sub = folder / name
    sub.mkdir(parents=True, exist_ok=True)
    path = write_setup(sub, ami_port, hook_port, None)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["agent"].update(agent)
    data["agent"]["state_dir"] = str(sub / "state")
    if not webhook:
        data.pop("webhooks", None)
    if publish:
        data["publish"] = publish
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    path.chmod(0o600)
    return path, data["agent"]["listen"]


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values)}  # fmt: skip


# -- 1. failover -------------------------------------------------------------------------------
async def failover(args: argparse.Namespace, folder: Path, ttl: float, cpus: int) -> dict[str, Any]:
    import redis.asyncio as aredis

    loop = asyncio.get_running_loop()
    pbx, hits = MultiPbx(), Hits()
    ami = await loop.create_server(lambda: PbxSession(pbx), "127.0.0.1", 0)  # type: ignore[arg-type]
    hook = await loop.create_server(lambda: StampedSession(hits), "127.0.0.1", 0)
    ami_port, hook_port = ami.sockets[0].getsockname()[1], hook.sockets[0].getsockname()[1]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    lease = {"lease": REDIS_URL, "lease_ttl": ttl, "pbx": name}
    agents = []
    for side in ("a", "b"):
        cfg, listen = make_config(folder / f"ttl{ttl:g}", side, ami_port, hook_port,
                                  webhook=True, agent=lease, publish=[])  # fmt: skip
        agents.append(Agent(cfg, listen, cfg.parent / "agent.log", cpus - 1 if cpus > 1 else None))
    stop = asyncio.Event()
    times: list[float] = []
    deliveries_before: list[int] = []
    streamer: asyncio.Task[None] | None = None
    marker: dict[str, Any] = {}
    try:
        agents[0].start()
        await agents[0].wait_role("active", 30)
        agents[1].start()
        await agents[1].wait_role("standby", 30)
        streamer = asyncio.create_task(pbx.stream(args.failover_rate, None, stop, seed=int(ttl)))
        holder = 0
        for rep in range(args.reps):
            await asyncio.sleep(args.settle)  # calls in flight, deliveries flowing
            if streamer.done():
                streamer.result()
            deliveries_before.append(len(hits.rows))
            agents[holder].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            killed = time.perf_counter()
            deadline = killed + ttl * 3 + 10
            first = None
            while first is None and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
                for at, born, _, _ in reversed(hits.rows):
                    if at < killed:
                        break
                    if born > killed:
                        first = at if first is None else min(first, at)
            if first is None:
                raise SystemExit(f"ttl {ttl}: no delivery by the new holder within "
                                 f"{deadline - killed:.0f} s")  # fmt: skip
            times.append(first - killed)
            print(f"  ttl {ttl:g} s, rep {rep + 1}/{args.reps}: {first - killed:.3f} s",
                  file=sys.stderr)  # fmt: skip
            agents[holder].proc.wait()  # type: ignore[union-attr]
            await agents[1 - holder].wait_role("active", 10)
            agents[holder].start()
            await agents[holder].wait_role("standby", 30)
            holder = 1 - holder
        stop.set()
        await streamer
        await asyncio.sleep(1.0)
        r = aredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=f"cti:sent:{name}:*", count=1000)]
            if keys:
                marker = {"keys": len(keys), "bytes": await r.memory_usage(keys[0]),
                          "key_len": len(keys[0]), "ttl_s": await r.ttl(keys[0])}  # fmt: skip
                marker["per_call"] = len(keys) / max(1, pbx.started)
            lease_key = f"cti:lease:{name}"
            marker["lease_bytes"] = await r.memory_usage(lease_key) or 0
            for i in range(0, len(keys), 500):
                await r.delete(*keys[i : i + 500])
            await r.delete(lease_key)
        finally:
            await r.aclose()
    finally:
        stop.set()
        if streamer is not None and not streamer.done():
            streamer.cancel()
        for agent in agents:
            await agent.stop()
        ami.close()
        hook.close()
    keys = {}
    for _, _, _, key in hits.rows:
        keys.setdefault(key, 0)
        keys[key] += 1
    return {"ttl": ttl, "seconds": stats(times), "all": times, "calls": pbx.started,
            "deliveries": len(hits.rows), "distinct_keys": len(keys),
            "repeated_keys": sum(1 for n in keys.values() if n > 1), "redis": marker}  # fmt: skip


# -- 2. sinks ----------------------------------------------------------------------------------
async def sink(args: argparse.Namespace, folder: Path, kind: str, cpus: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pbx, hits = MultiPbx(), Hits()
    ami = await loop.create_server(lambda: PbxSession(pbx), "127.0.0.1", 0)  # type: ignore[arg-type]
    hook = await loop.create_server(lambda: StampedSession(hits), "127.0.0.1", 0)
    ami_port, hook_port = ami.sockets[0].getsockname()[1], hook.sockets[0].getsockname()[1]
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"CTIBENCH{tag}", f"bench{tag}"
    publish = []
    tap: BusTap | None = None
    if kind in ("nats", "amqp"):
        publish = [{"url": NATS_URL if kind == "nats" else AMQP_URL, "stream": stream,
                    "subject": prefix}]  # fmt: skip
        tap = BusTap(kind, stream, prefix)
        await tap.start()
        hits = tap.hits
    cfg, listen = make_config(folder / f"sink-{kind}", "a", ami_port, hook_port,
                              webhook=kind == "webhook", agent={"pbx": f"bench-{tag}"},
                              publish=publish)  # fmt: skip
    agent = Agent(cfg, listen, cfg.parent / "agent.log", cpus - 1 if cpus > 1 else None)
    out: dict[str, Any] = {"sink": kind}
    stop = asyncio.Event()
    try:
        agent.start()
        await agent.wait_role("active", 30)
        await asyncio.wait_for(pbx.ready.wait(), 30)
        # (a) steady rate: CPU per call
        warm = round(args.warmup * args.cost_rate)
        measured = round(args.cost_duration * args.cost_rate)
        task = asyncio.create_task(pbx.stream(args.cost_rate, warm + measured, stop, seed=5))
        while pbx.started < warm:
            await asyncio.sleep(0.01)
        c0, t0, n0 = agent.cpu(), time.perf_counter(), pbx.started
        while not task.done() and pbx.started < warm + measured:
            await asyncio.sleep(0.01)
        c1, t1, n1 = agent.cpu(), time.perf_counter(), pbx.started
        await task
        out["cost"] = {"calls": n1 - n0, "window_s": t1 - t0, "cpu_s": c1 - c0,
                       "cpu_ms_per_call": 1000 * (c1 - c0) / max(1, n1 - n0),
                       "cpu_share": (c1 - c0) / (t1 - t0)}  # fmt: skip
        await settle(agent, hits)
        # (b) burst: deliveries/s at the receiver
        hits.clear()
        samples: list[tuple[float, float]] = []

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter(), agent.cpu()))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        c0, t0 = agent.cpu(), time.perf_counter()
        await pbx.stream(args.burst_rate, args.burst_calls, stop, seed=9)
        fed = time.perf_counter() - t0
        await settle(agent, hits, limit=args.drain)
        sampler.cancel()
        rows = hits.rows
        # the agent's CPU share from the burst's start to its last delivery (not the idle tail)
        end = rows[-1][0] if rows else time.perf_counter()
        t1, c1 = min(samples, key=lambda s: abs(s[0] - end))
        out["burst"] = {"calls": args.burst_calls, "feed_s": fed, "pbx_lag_s": pbx.max_lag,
                        "agent_cpu_share": (c1 - c0) / (t1 - t0)}  # fmt: skip
        if rows:
            span = max(1e-9, rows[-1][0] - rows[0][0])
            distinct = len({r[3] for r in rows})
            out["burst"].update(deliveries=len(rows), distinct=distinct, span_s=span,
                                per_s=distinct / span, per_call=distinct / args.burst_calls,
                                last_after_feed_s=rows[-1][0] - t0 - fed)  # fmt: skip
        outbox = Path(cfg.parent / "state")
        size = sum(p.stat().st_size for p in outbox.glob("outbox.sqlite3*"))
        out["outbox_bytes"] = size
        out["calls_total"] = pbx.started
        if kind == "nats":
            out["jetstream"] = await jetstream_info(stream)
    finally:
        stop.set()
        await agent.stop()
        if tap:
            await tap.stop()
        ami.close()
        hook.close()
    out["log_errors"] = [line for line in agent.log_path.read_text(errors="replace").splitlines()
                         if " error " in line or "Traceback" in line][:5]  # fmt: skip
    return out


async def settle(agent: Agent, hits: Hits, limit: float = 60.0) -> None:
    """Until the receiver has seen nothing new for 1.5 s and the agent is idle."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        n, c, t = len(hits.rows), agent.cpu(), time.perf_counter()
        await asyncio.sleep(1.5)
        idle = (agent.cpu() - c) / (time.perf_counter() - t) < 0.05
        if len(hits.rows) == n and idle:
            return


async def jetstream_info(stream: str) -> dict[str, Any]:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=3)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        res = {"messages": info.state.messages, "bytes": info.state.bytes,
               "bytes_per_msg": info.state.bytes / max(1, info.state.messages),
               "duplicate_window_s": info.config.duplicate_window,
               "storage": str(info.config.storage)}  # fmt: skip
        await js.delete_stream(stream)
        return res
    finally:
        await nc.close()


# -- the run -----------------------------------------------------------------------------------
async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    cpus = psutil.cpu_count() or 1
    if cpus > 1:
        psutil.Process().cpu_affinity([0])
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code": (code_version().split()[0] + " (git archive HEAD)") if CODE != ROOT
        else code_version(),
        "python": sys.version.split()[0], "cpus": cpus,
        "load_start": [round(x, 2) for x in psutil.getloadavg()], "args": vars(args),
    }  # fmt: skip
    result["failover"] = []
    for ttl in args.ttl:
        print(f"failover, lease_ttl {ttl:g} s …", file=sys.stderr)
        result["failover"].append(await failover(args, folder, ttl, cpus))
    result["sinks"] = []
    for kind in args.sinks:
        print(f"sink {kind} …", file=sys.stderr)
        result["sinks"].append(await sink(args, folder, kind, cpus))
    result["load_end"] = [round(x, 2) for x in psutil.getloadavg()]
    result["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"{r['date']} → {r['finished']}, code {r['code']}, Python {r['python']}, {r['cpus']} CPUs, "
        f"load average {r['load_start'][0]} at the start, {r['load_end'][0]} at the end "
        "(shared machine: compare ratios within the run)",
        "",
        "| lease_ttl | repetitions | min | median | max | median ÷ TTL | max ÷ TTL | calls, "
        "deliveries, repeated keys |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in r["failover"]:
        s, t = f["seconds"], f["ttl"]
        lines.append(f"| {t:g} s | {s['n']} | {s['min']:.2f} s | **{s['median']:.2f} s** | "
                     f"{s['max']:.2f} s | {s['median'] / t:.2f} | {s['max'] / t:.2f} | "
                     f"{f['calls']:,}, {f['deliveries']:,}, {f['repeated_keys']} |")  # fmt: skip
    base = next((s for s in r["sinks"] if s["sink"] == "none"), None)
    b_ms = base["cost"]["cpu_ms_per_call"] if base else float("nan")
    lines += [
        "",
        "| sink | agent CPU ms/call (steady) | × no sink | sink's own ms/call | agent CPU share "
        "(steady) | burst: deliveries/s | deliveries/call | burst span | agent CPU share (burst) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["sinks"]:
        c, b = s["cost"], s.get("burst", {})
        ms = c["cpu_ms_per_call"]
        per_s = f"**{b['per_s']:,.0f}**" if "per_s" in b else "—"
        per_call = f"{b['per_call']:.2f}" if "per_call" in b else "—"
        span = f"{b['span_s']:.1f} s" if "span_s" in b else "—"
        lines.append(
            f"| {s['sink']} | **{ms:.2f}** | {ms / b_ms:.2f}× | "
            f"{'—' if s['sink'] == 'none' else f'{ms - b_ms:.2f}'} | "
            f"{100 * c['cpu_share']:.0f} % | {per_s} | "
            f"{per_call} | {span} | "
            f"{100 * b.get('agent_cpu_share', float('nan')):.0f} % |"
        )  # fmt: skip
    lines.append("")
    for f in r["failover"]:
        red = f["redis"]
        if red.get("keys"):
            lines.append(f"- Redis (ttl {f['ttl']:g} s run): {red['keys']:,} sent markers for "
                         f"{f['calls']:,} calls ({red['per_call']:.2f}/call), MEMORY USAGE of one "
                         f"{red['bytes']} B (key {red['key_len']} B, TTL {red['ttl_s']} s); "
                         f"lease key {red['lease_bytes']} B")  # fmt: skip
    for s in r["sinks"]:
        js = s.get("jetstream")
        if js:
            lines.append(f"- JetStream: {js['messages']:,} messages, {js['bytes']:,} B "
                         f"({js['bytes_per_msg']:.0f} B/message), duplicate window "
                         f"{js['duplicate_window_s']} s, storage {js['storage']}")  # fmt: skip
        lines.append(f"- outbox ({s['sink']}): {s['outbox_bytes'] / 2**20:.1f} MiB after "
                     f"{s['calls_total']:,} calls "
                     f"({s['outbox_bytes'] / max(1, s['calls_total']):,.0f} B/call); "
                     f"burst fed in {s['burst']['feed_s']:.1f} s, PBX lag max "
                     f"{1000 * s['burst']['pbx_lag_s']:.0f} ms"
                     + (f"; log: {s['log_errors']}" if s["log_errors"] else ""))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, shorter windows")
    p.add_argument("--ttl", type=float, nargs="+", default=[2.0, 5.0], help="lease_ttl values")
    p.add_argument("--reps", type=int, default=6, help="kills per TTL")
    p.add_argument("--settle", type=float, default=2.0, help="s of traffic before each kill")
    p.add_argument("--failover-rate", type=float, default=10.0, help="calls/s during failover")
    p.add_argument("--sinks", nargs="+", default=["none", "webhook", "nats", "amqp"])
    p.add_argument("--cost-rate", type=float, default=40.0, help="steady calls/s (CPU/call)")
    p.add_argument("--cost-duration", type=float, default=30.0, help="steady window, s")
    p.add_argument("--warmup", type=float, default=4.0, help="s of calls before the window")
    p.add_argument("--burst-rate", type=float, default=300.0, help="calls/s of the burst")
    p.add_argument("--burst-calls", type=int, default=2000)
    p.add_argument("--drain", type=float, default=180.0, help="max s to wait after the burst")
    p.add_argument("--head", action="store_true",
                   help="run the agents from a `git archive HEAD` copy (others are editing the "
                        "checkout); default: the working tree")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, outboxes)")
    args = p.parse_args()
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to a SIGKILLed agent
    if args.quick:
        args.reps, args.cost_duration, args.burst_calls = 3, 12.0, 800
    folder = Path(tempfile.mkdtemp(prefix="cti-scaling-"))
    global CODE
    if args.head:
        CODE = folder / "head"
        CODE.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "cti_cli"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(CODE)], input=archive, check=True)
    try:
        result = asyncio.run(run(args, folder))
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else markdown(result))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
