"""AMI ingest benchmark: how many events/s each AMI client library takes in.

One byte stream of realistic Asterisk 22 events (Cyrillic caller names, the header
counts Asterisk 22 sends) is served over loopback by a server thread in this process;
each consumer runs in a fresh subprocess, logs in, reads every event and touches its
``Event`` and ``CallerIDName`` headers. Consumers: ours (cti_cli.ami.client, ``events()``),
ours-batches (the same client, ``event_batches()``),
panoramisk 1.4, pyst2 0.5.1, and a naive asyncio ``readuntil`` loop.

    .venv/bin/python bench/ami_ingest.py --events 200000

Prints a markdown table. Numbers are for humans; no test asserts timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
USER, SECRET = "bench", "bench-secret"

NAMES = [
    "Иван Петров",
    "Мария Сидорова",
    "Алексей Кузнецов",
    "Ольга Смирнова",
    "Дмитрий Волков",
    "Екатерина Морозова",
    "Сергей Лебедев",
    "Анна Новикова",
    "Юлия Фёдорова",
    "Пётр Ёлкин",
    "ООО Ромашка",
    "<unknown>",
    "John Smith",
]
CONSUMERS = ("ours", "ours-batches", "panoramisk", "pyst2", "naive")


# -- the stream ----------------------------------------------------------------
Hdrs = list[tuple[str, str]]


def _snapshot(
    prefix: str,
    chan: str,
    state: tuple[str, str],
    num: str,
    name: str,
    uid: str,
    linked: str,
    exten: str,
) -> list[tuple[str, str]]:
    return [
        (f"{prefix}Channel", chan),
        (f"{prefix}ChannelState", state[0]),
        (f"{prefix}ChannelStateDesc", state[1]),
        (f"{prefix}CallerIDNum", num),
        (f"{prefix}CallerIDName", name),
        (f"{prefix}ConnectedLineNum", "<unknown>"),
        (f"{prefix}ConnectedLineName", "<unknown>"),
        (f"{prefix}Language", "ru"),
        (f"{prefix}AccountCode", ""),
        (f"{prefix}Context", "from-trunk"),
        (f"{prefix}Exten", exten),
        (f"{prefix}Priority", "1"),
        (f"{prefix}Uniqueid", uid),
        (f"{prefix}Linkedid", linked),
    ]


def _event(name: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"Event: {name}", "Privilege: call,all", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def build_stream(n_events: int, seed: int = 22) -> tuple[bytes, list[str]]:
    """Events of whole queue calls (Newchannel..Hangup, with the VarSet, DeviceStateChange,
    TestEvent... traffic of a real call) until ``n_events``; returns the bytes and the
    CallerIDName of every event in order (for verification)."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    names: list[str] = []
    call = 0
    ts = 1764100000
    while len(out) < n_events:
        call += 1
        name = rnd.choice(NAMES)
        num = f"+7495{rnd.randrange(10**6, 10**7)}"
        uid = f"{ts + call}.{call * 2}"
        peer_uid = f"{ts + call}.{call * 2 + 1}"
        chan = f"PJSIP/trunk-{call:08x}"
        peer = f"PJSIP/10{rnd.randrange(1, 4)}-{call:08x}"
        down, ring, ringing, up = ("0", "Down"), ("4", "Ring"), ("5", "Ringing"), ("6", "Up")

        def snap(
            state: tuple[str, str],
            *,
            chan: str = chan,
            uid: str = uid,
            cid: str = name,
            num: str = num,
        ) -> list[tuple[str, str]]:
            return _snapshot("", chan, state, num, cid, uid, uid, "101")

        ext = peer[6:9]

        def varset(var: str, value: str, state: tuple[str, str] = ring) -> tuple[str, Hdrs]:
            return ("VarSet", [*snap(state), ("Variable", var), ("Value", value)])

        def newexten(app: str, data: str, state: tuple[str, str] = ring) -> tuple[str, Hdrs]:
            return (
                "Newexten",
                [*snap(state), ("Extension", "101"), ("Application", app), ("AppData", data)],
            )

        def device(state: str, dev: str = f"PJSIP/{ext}") -> tuple[str, Hdrs]:
            return ("DeviceStateChange", [("Device", dev), ("State", state)])

        def test_event(state: str, line: int) -> tuple[str, Hdrs]:
            return (
                "TestEvent",
                [
                    ("Type", "StateChange"),
                    ("State", state),
                    ("AppFile", "app_queue.c"),
                    ("AppFunction", "ring_entry"),
                    ("AppLine", str(line)),
                ],
            )

        member_status = (
            "QueueMemberStatus",
            [
                ("Queue", "support"),
                ("MemberName", f"PJSIP/{ext}"),
                ("Interface", f"PJSIP/{ext}"),
                ("StateInterface", f"PJSIP/{ext}"),
                ("Membership", "static"),
                ("Penalty", "0"),
                ("CallsTaken", str(call)),
                ("LastCall", str(ts + call)),
                ("LastPause", "0"),
                ("LoginTime", str(ts)),
                ("InCall", "1"),
                ("Status", "2"),
                ("Paused", "0"),
                ("PausedReason", ""),
                ("Ringinuse", "0"),
                ("Wrapuptime", "0"),
            ],
        )
        # The mix of a real Asterisk 22 queue call (docs/performance.md): per call 8 events
        # that matter and 18 that most consumers ignore (VarSet 10, DeviceStateChange 3,
        # TestEvent 2, Newexten 2, QueueMemberStatus 1), in the proportions of the lab count.
        call_events: list[tuple[str, Hdrs]] = [
            ("Newchannel", snap(down)),
            varset("CALLERID(name)", name),
            varset("__FROM_DID", "74951234567"),
            varset("CDR(did)", "74951234567"),
            newexten("Set", f"CALLERID(name)={name}"),
            varset("QUEUENUM", "support"),
            newexten("Queue", "support,t,,,300"),
            varset("DIALSTATUS", ""),
            ("Newstate", snap(ring)),
            test_event("CONNECTED", 7712),
            (
                "DialBegin",
                [
                    *snap(ring),
                    *_snapshot("Dest", peer, down, "101", name, peer_uid, uid, "101"),
                    ("DialString", "101"),
                ],
            ),
            device("RINGING"),
            ("Newstate", snap(ringing, chan=peer, uid=peer_uid)),
            varset("QUEUEPOSITION", "1"),
            (
                "DialEnd",
                [
                    *snap(ring),
                    *_snapshot("Dest", peer, up, "101", name, peer_uid, uid, "101"),
                    ("DialStatus", "ANSWER"),
                ],
            ),
            device("INUSE"),
            member_status,
            ("Newstate", snap(up)),
            test_event("CALLER_ANSWERED", 6501),
            varset("MEMBERINTERFACE", f"PJSIP/{ext}", up),
            varset("MEMBERNAME", f"PJSIP/{ext}", up),
            (
                "BridgeEnter",
                [
                    ("BridgeUniqueid", f"b-{call}"),
                    ("BridgeType", "basic"),
                    ("BridgeTechnology", "simple_bridge"),
                    ("BridgeCreator", "<unknown>"),
                    ("BridgeName", "<unknown>"),
                    ("BridgeNumChannels", "1"),
                    ("BridgeVideoSourceMode", "none"),
                    *snap(up),
                ],
            ),
            varset("BRIDGEPEER", peer, up),
            varset("BRIDGEPVTCALLID", f"{call:x}@10.0.0.1", up),
            device("NOT_INUSE"),
            ("Hangup", [*snap(up), ("Cause", "16"), ("Cause-txt", "Normal Clearing")]),
        ]
        for ev_name, headers in call_events:
            out.append(_event(ev_name, headers))
            cid = dict(headers).get("CallerIDName", "")
            names.append(cid)
            if len(out) >= n_events:
                break
    return b"".join(out), names


# -- the server ------------------------------------------------------------------
def _read_action(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def serve_once(listener: socket.socket, stream: bytes) -> None:
    """Banner, answer the Login, send the stream, wait until the client hangs up."""
    conn, _ = listener.accept()
    with conn:
        conn.sendall(BANNER)
        action = _read_action(conn)
        action_id = b""
        for line in action.split(b"\r\n"):
            if line.lower().startswith(b"actionid:"):
                action_id = b"ActionID: " + line.split(b":", 1)[1].strip() + b"\r\n"
        conn.sendall(
            b"Response: Success\r\n" + action_id + b"Message: Authentication accepted\r\n\r\n"
        )
        conn.sendall(stream)
        conn.settimeout(300)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


# -- consumers (each runs in its own subprocess) ----------------------------------
def consume_ours(port: int, count: int) -> dict[str, object]:
    import asyncio

    from cti_cli.ami.client import AMIClient

    async def run() -> dict[str, object]:
        client = AMIClient()
        start = time.perf_counter()
        await client.connect("127.0.0.1", port)
        await client.login(USER, SECRET, auth="plain")
        seen = 0
        names: list[str] = []
        async for event in client.events():
            event["Event"]
            names.append(event.get("CallerIDName", ""))
            seen += 1
            if seen >= count:
                break
        elapsed = time.perf_counter() - start
        await client.close()
        return {"events": seen, "seconds": elapsed, "names": names}

    return asyncio.run(run())


def consume_ours_batches(port: int, count: int) -> dict[str, object]:
    """Ours through ``event_batches()``: one ``async for`` step per socket read."""
    import asyncio

    from cti_cli.ami.client import AMIClient

    async def run() -> dict[str, object]:
        client = AMIClient()
        start = time.perf_counter()
        await client.connect("127.0.0.1", port)
        await client.login(USER, SECRET, auth="plain")
        seen = 0
        names: list[str] = []
        async for batch in client.event_batches():
            for event in batch:
                event["Event"]
                names.append(event.get("CallerIDName", ""))
            seen += len(batch)
            if seen >= count:
                break
        elapsed = time.perf_counter() - start
        await client.close()
        return {"events": seen, "seconds": elapsed, "names": names}

    return asyncio.run(run())


def consume_naive(port: int, count: int) -> dict[str, object]:
    import asyncio

    async def run() -> dict[str, object]:
        start = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        await reader.readline()
        writer.write(f"Action: Login\r\nUsername: {USER}\r\nSecret: {SECRET}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        seen = 0
        names: list[str] = []
        while seen < count:
            raw = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in raw.decode("utf-8").split("\r\n"):
                key, sep, value = line.partition(": ")
                if sep:
                    headers.setdefault(key, value)
            headers["Event"]
            names.append(headers.get("CallerIDName", ""))
            seen += 1
        elapsed = time.perf_counter() - start
        writer.close()
        return {"events": seen, "seconds": elapsed, "names": names}

    return asyncio.run(run())


def consume_panoramisk(port: int, count: int, limit: float) -> dict[str, object]:
    import asyncio
    import logging

    from panoramisk import Manager

    logging.disable(logging.CRITICAL)

    async def run() -> dict[str, object]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        names: list[str] = []

        def on_event(manager: object, event: dict[str, str]) -> None:
            event["Event"]
            names.append(event.get("CallerIDName", ""))
            if len(names) >= count and not done.done():
                done.set_result(None)

        manager = Manager(
            host="127.0.0.1",
            port=port,
            username=USER,
            secret=SECRET,
            ping_delay=10**6,
            reconnect_timeout=10**6,
            loop=loop,
        )
        manager.register_event("*", on_event)
        start = time.perf_counter()
        manager.connect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, limit)
        elapsed = time.perf_counter() - start
        manager.close()
        return {"events": len(names), "seconds": elapsed, "names": names}

    return asyncio.run(run())


def consume_pyst2(port: int, count: int, limit: float) -> dict[str, object]:
    from asterisk.manager import Manager

    finished = threading.Event()
    names: list[str] = []

    def on_event(event: object, manager: object) -> None:
        event["Event"]  # type: ignore[index]
        names.append(event.get_header("CallerIDName", ""))  # type: ignore[attr-defined]
        if len(names) >= count:
            finished.set()

    manager = Manager()
    manager.register_event("*", on_event)
    start = time.perf_counter()
    manager.connect("127.0.0.1", port)
    manager.login(USER, SECRET)
    finished.wait(limit)
    elapsed = time.perf_counter() - start
    return {"events": len(names), "seconds": elapsed, "names": names}


def run_consumer(name: str, port: int, count: int, limit: float) -> dict[str, object]:
    if name == "ours":
        return consume_ours(port, count)
    if name == "ours-batches":
        return consume_ours_batches(port, count)
    if name == "naive":
        return consume_naive(port, count)
    if name == "panoramisk":
        return consume_panoramisk(port, count, limit)
    if name == "pyst2":
        return consume_pyst2(port, count, limit)
    raise SystemExit(f"unknown consumer {name!r}")


# -- driver -----------------------------------------------------------------------
def measure(name: str, stream: bytes, names: list[str], limit: float) -> dict[str, object]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = threading.Thread(target=serve_once, args=(listener, stream), daemon=True)
    server.start()
    cmd = [
        sys.executable,
        __file__,
        "--consumer",
        name,
        "--port",
        str(port),
        "--events",
        str(len(names)),
        "--limit",
        str(limit),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 60)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"no result within {limit + 60:.0f} s"}
    finally:
        listener.close()
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "error": f"crashed: {tail}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    got = result.pop("names")
    result["name"] = name
    result["complete"] = result["events"] == len(names)
    result["names_intact"] = got == names[: len(got)]
    return result


def table(results: list[dict[str, object]], n_events: int, n_bytes: int) -> str:
    ours = next((r for r in results if r["name"] == "ours" and "error" not in r), None)
    ours_rate = float(ours["events"]) / float(ours["seconds"]) if ours else None  # type: ignore[arg-type]
    rows = [
        f"Stream: {n_events} events, {n_bytes / 1e6:.1f} MB, loopback TCP, one fresh process "
        "per consumer; consumers run round-robin.",
        "",
        "| consumer | events read | seconds | events/s (best) | all runs, events/s | ours ÷ this "
        "| caller names intact |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | — | — | — | — | — | {r['error']} |")
            continue
        rate = float(r["events"]) / float(r["seconds"])  # type: ignore[arg-type]
        ratio = f"{ours_rate / rate:.1f}×" if ours_rate else "—"
        done = "" if r["complete"] else f" (stopped after {r['seconds']:.0f} s)"
        intact = "yes" if r["names_intact"] else "NO (corrupted)"
        runs = ", ".join(f"{x:,}" for x in r.get("all_rates", []))  # type: ignore[attr-defined]
        rows.append(
            f"| {r['name']} | {r['events']}{done} | {r['seconds']:.2f} | {rate:,.0f} | "
            f"{runs} | {ratio} | {intact} |"
        )
    return "\n".join(rows)


def best_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """The fastest complete run (least disturbed by other processes); all runs' rates noted."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    best = dict(min(ok, key=lambda r: float(r["seconds"]) / max(1, int(r["events"]))))  # type: ignore[arg-type]
    best["all_rates"] = [round(float(r["events"]) / float(r["seconds"])) for r in ok]  # type: ignore[arg-type]
    best["names_intact"] = all(r["names_intact"] for r in ok)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per consumer, round-robin; the table shows the best run",
    )
    parser.add_argument(
        "--limit",
        type=float,
        default=120.0,
        help="seconds a consumer may take before it is reported as unfinished",
    )
    parser.add_argument("--only", nargs="*", choices=CONSUMERS, default=list(CONSUMERS))
    parser.add_argument("--consumer", choices=CONSUMERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consumer:
        result = run_consumer(args.consumer, args.port, args.events, args.limit)
        print(json.dumps(result, ensure_ascii=False))
        return
    stream, names = build_stream(args.events)
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in args.only}
    for round_no in range(args.rounds):
        for name in args.only:
            if name == "pyst2" and round_no:
                continue  # minutes per run; one run says enough
            result = measure(name, stream, names, args.limit)
            print(f"round {round_no + 1} {name}: {result}", file=sys.stderr)
            runs[name].append(result)
    print(table([best_of(r) for r in runs.values()], len(names), len(stream)))


if __name__ == "__main__":
    main()
