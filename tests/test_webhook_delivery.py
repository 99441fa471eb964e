"""The webhook deliverer against a real HTTP receiver on 127.0.0.1 (scripted answers, signature
checked with ``signing.verify`` on every request) and a real outbox file."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import cti_cli
from cti_cli.config import Webhook
from cti_cli.notify.outbox import Outbox
from cti_cli.notify.signing import sign, verify
from cti_cli.notify.webhook import (
    DeliveryResult,
    WebhookDeliverer,
    clean_text,
    parse_retry_after,
    safe_url,
)

pytestmark = pytest.mark.timeout(30)

SECRET = "s3cr3t-вебхук"
T = 1_800_000_000.0
DAY = 86400.0


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Clock:
    """Time the test moves by hand."""

    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the receiver


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    signature_ok: bool | None
    at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None

    @property
    def key(self) -> str:
        return self.headers["x-cti-delivery"]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer when set (or when the test ends)
    delay: float = 0.0


class Receiver:
    """A threaded HTTP/1.1 server whose answers a test scripts."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.secret = SECRET
        self.requests: list[Request] = []
        self.script: Callable[[Request], Reply] = lambda request: Reply()
        self.active = 0
        self.most_active = 0
        self.closing = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                signature = headers.get("x-cti-signature")
                ok = None
                if signature is not None:
                    ok = verify(
                        receiver.secret,
                        headers.get("x-cti-timestamp", ""),
                        body,
                        signature,
                        now=receiver.clock(),
                    )
                request = Request(self.path, headers, body, ok)
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.active += 1
                    receiver.most_active = max(receiver.most_active, receiver.active)
                try:
                    reply = receiver.script(request)
                    if reply.hold is not None:
                        while not (reply.hold.is_set() or receiver.closing.is_set()):
                            reply.hold.wait(0.02)
                    if reply.delay:
                        receiver.closing.wait(reply.delay)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    request.answered_at = time.monotonic()
                    with receiver._lock:
                        receiver.active -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def keys(self) -> list[str]:
        return [request.key for request in self.requests]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver(clock: Clock) -> Iterator[Receiver]:
    server = Receiver(clock)
    yield server
    server.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield outbox
    outbox.close()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Harness:
    """A deliverer for the receiver, its results, and a running task."""

    def __init__(
        self,
        receiver: Receiver,
        box: Outbox,
        clock: Callable[[], float],
        *,
        hook: dict[str, Any] | None = None,
        url: str | None = None,
        **options: Any,
    ) -> None:
        data = {"url": url or receiver.url, "secret": SECRET, **(hook or {})}
        try:
            self.hook = Webhook(**data)
        except ValueError:  # a URL the config refuses: the deliverer must still cope with it
            self.hook = Webhook.model_construct(url=data["url"], secret=SecretStr(SECRET))
        self.box = box
        self.results: list[DeliveryResult] = []
        self.deliverer = WebhookDeliverer(
            self.hook, box, target="desk", clock=clock, on_result=self.results.append, **options
        )
        self.task: asyncio.Task[None] | None = None

    def put(self, key: str, group: str, body: bytes | None = b'{"x":1}', *, now: float = T,
            ttl: float = DAY, event: str = "call.ringing", say_group: bool = False,
            ) -> list[str]:  # fmt: skip
        new = self.box.put(["desk"], key, group, event, body, now=now, expires_at=now + ttl)
        self.deliverer.wake(group if say_group else None)  # as the agent does: its put's group
        return new

    def start(self) -> None:
        self.task = asyncio.create_task(self.deliverer.run())

    def outcomes(self) -> list[tuple[str, str]]:
        return [(r.key, r.outcome) for r in self.results]

    def outcome(self, key: str) -> str | None:
        return next((r.outcome for r in reversed(self.results) if r.key == key), None)

    async def done(self, *keys: str, timeout: float = 2.0) -> None:
        final = ("delivered", "dead", "expired")
        await until(lambda: all(self.outcome(k) in final for k in keys), timeout)

    async def close(self) -> None:
        self.deliverer.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)


# ---------------------------------------------------------------- signing


def test_sign_and_verify() -> None:
    body = '{"caller_name": "Иван"}'.encode()
    ts = str(int(T))
    signature = sign(SECRET, ts, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, ts, body, signature, now=T)
    assert verify(SECRET, ts, body, signature, now=T + 299)
    assert not verify(SECRET, ts, body + b" ", signature, now=T), "tampered body"
    assert not verify(SECRET, ts, body, signature, now=T + 301), "old timestamp"
    assert not verify(SECRET, ts, body, signature, now=T - 301), "timestamp from the future"
    assert not verify(SECRET, str(int(T) + 1), body, signature, now=T), "other timestamp"
    assert not verify("other", ts, body, signature, now=T), "other secret"
    assert not verify(SECRET, "17e8", body, signature, now=T)
    assert not verify(SECRET, ts, body, "sha256=" + "0" * 64, now=T)
    assert not verify(SECRET, ts, body, "sha256=нет", now=T)


# ---------------------------------------------------------------- delivery


@aio
async def test_headers_and_signature_verify_at_the_receiver(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock)
    h.start()
    h.put("pbx:1.0:ringing", "1.0", b'{"event":"call.ringing"}')
    await h.done("pbx:1.0:ringing")
    await h.close()
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"cti/{cti_cli.__version__}"
    assert request.headers["x-cti-event"] == "call.ringing"
    assert request.headers["x-cti-delivery"] == "pbx:1.0:ringing"
    assert request.headers["x-cti-timestamp"] == str(int(T))
    assert request.signature_ok is True
    sig, ts = request.headers["x-cti-signature"], request.headers["x-cti-timestamp"]
    assert not verify(SECRET, ts, request.body.replace(b"ringing", b"ended"), sig, now=T)
    assert not verify(SECRET, ts, request.body, sig, now=T + 600)
    [result] = h.results
    assert (result.target, result.outcome, result.status, result.error) == (
        "desk", "delivered", 200, None,
    )  # fmt: skip
    assert result.latency > 0
    assert box.stats()["delivered"] == 1 and box.depth() == 0


@aio
async def test_without_secret_no_signature(receiver: Receiver, box: Outbox, clock: Clock) -> None:
    h = Harness(receiver, box, clock, hook={"secret": SecretStr("")})
    h.start()
    h.put("k", "g")
    await h.done("k")
    await h.close()
    assert "x-cti-signature" not in receiver.requests[0].headers
    assert receiver.requests[0].signature_ok is None


@aio
async def test_cyrillic_body_arrives_byte_for_byte(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    body = json.dumps(
        {"caller_name": "Иван Петров", "queue": "Первая линия", "note": "ёЁ — «»"},
        ensure_ascii=False,
    ).encode("utf-8")
    h = Harness(receiver, box, clock)
    h.start()
    h.put("k", "g", body, event="screen_pop", ttl=60)
    await h.done("k")
    await h.close()
    assert receiver.requests[0].body == body
    assert receiver.requests[0].signature_ok is True


@aio
async def test_duplicate_key_is_delivered_once(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock)
    assert h.put("pop", "g", event="screen_pop", ttl=60) == ["desk"]
    assert h.put("pop", "g", event="screen_pop", ttl=60) == []
    h.start()
    await h.done("pop")
    assert h.put("pop", "g", event="screen_pop", ttl=60) == [], "after delivery too"
    h.put("after", "g")
    await h.done("after")
    await h.close()
    assert receiver.keys() == ["pop", "after"]


@aio
async def test_order_within_a_group_while_another_group_proceeds(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    """a1 is held until b1 and b2 have arrived: B must not wait for A, a2 must wait for a1."""
    b2_arrived = threading.Event()

    def script(request: Request) -> Reply:
        if request.key == "b2":
            b2_arrived.set()
        return Reply(hold=b2_arrived) if request.key == "a1" else Reply()

    receiver.script = script
    h = Harness(receiver, box, clock)
    for key, group in (("a1", "A"), ("a2", "A"), ("b1", "B"), ("b2", "B")):
        h.put(key, group)
    h.start()
    await h.done("a1", "a2", "b1", "b2")
    await h.close()
    by_key = {request.key: request for request in receiver.requests}
    a1 = by_key["a1"]
    assert a1.answered_at is not None
    assert by_key["b1"].at < a1.answered_at and by_key["b2"].at < a1.answered_at
    assert by_key["a2"].at >= a1.answered_at
    assert receiver.keys().index("b1") < receiver.keys().index("b2")
    assert len(receiver.requests) == 4


@aio
async def test_a_calls_next_event_goes_out_when_the_one_before_is_answered(
    receiver: Receiver, box: Outbox
) -> None:
    """The agent wakes the deliverer with the group it put to. A row put while its group's
    request is in flight is not looked at then; it must go out as soon as that answer comes,
    not at the next poll (2 s), while other calls keep the target busy."""
    receiver.clock = time.time
    release, busy = threading.Event(), threading.Event()
    holds = {"a1": release, "c1": busy}  # c1 keeps the deliverer busy throughout
    receiver.script = lambda r: Reply(hold=holds[r.key]) if r.key in holds else Reply()
    h = Harness(receiver, box, time.time)
    h.start()
    h.put("c1", "C", now=time.time(), say_group=True)
    h.put("a1", "A", now=time.time(), say_group=True)
    await until(lambda: sorted(receiver.keys()) == ["a1", "c1"])
    h.put("a2", "A", now=time.time(), say_group=True)  # its group is in flight
    for n in range(3):  # other calls come and go meanwhile
        h.put(f"b{n}", f"B{n}", now=time.time(), say_group=True)
    await h.done("b0", "b1", "b2")
    await asyncio.sleep(0.1)
    sent = receiver.keys()
    assert "a2" not in sent
    release.set()
    await h.done("a1", "a2", timeout=1.5)
    busy.set()
    await h.done("c1")
    await h.close()
    by_key = {request.key: request for request in receiver.requests}
    answered = by_key["a1"].answered_at
    assert answered is not None and by_key["a2"].at - answered < 0.5, by_key["a2"].at - answered


@aio
async def test_a_retry_goes_out_at_its_time_while_another_request_hangs(
    receiver: Receiver, box: Outbox
) -> None:
    """A 503 for one call while another call's request hangs in flight: the retry goes out
    when its backoff ends, though the target's pause ended a little before it (jitter) and
    nothing else would look at that call until the next poll, 2 s later."""

    class Jitter:  # the retry's backoff draws no jitter, the target's pause the most
        draws = iter([0.0, 1.0])

        def random(self) -> float:
            return next(self.draws, 0.5)

    receiver.clock = time.time
    busy = threading.Event()
    receiver.script = lambda r: (Reply(503) if r.key == "k" and len(receiver.requests) <= 2
                                 else Reply(hold=busy) if r.key == "c" else Reply())  # fmt: skip
    h = Harness(receiver, box, time.time, backoff_initial=0.4)
    h.deliverer._rng = Jitter()  # type: ignore[assignment]
    h.start()
    h.put("c", "C", now=time.time(), say_group=True)
    await until(lambda: receiver.keys() == ["c"])
    h.put("k", "K", now=time.time(), say_group=True)
    await until(lambda: h.outcome("k") == "retry")
    failed_at = time.monotonic()  # retry due 0.4 s later, the pause ends after 0.3 s
    while h.outcome("k") != "delivered" and time.monotonic() - failed_at < 1.9:
        await asyncio.sleep(0.02)
    busy.set()
    await h.close()
    retried = [r.at for r in receiver.requests if r.key == "k"][1:]
    assert retried and retried[0] - failed_at < 0.9, "retried at its backoff, not at the poll"


@aio
async def test_503_then_200_is_delivered_with_the_same_delivery_key(
    receiver: Receiver, box: Outbox
) -> None:
    """Real time, short backoff: 503 four times, then 200."""
    receiver.clock = time.time
    receiver.script = lambda r: Reply(503, b"busy") if len(receiver.requests) <= 4 else Reply()
    h = Harness(receiver, box, time.time, backoff_initial=0.05)
    h.start()
    h.put("k", "g", now=time.time())
    await h.done("k")
    await h.close()
    assert len(receiver.requests) == 5
    assert {request.key for request in receiver.requests} == {"k"}
    assert all(request.signature_ok for request in receiver.requests)
    assert [r.outcome for r in h.results] == ["retry"] * 4 + ["delivered"]
    assert h.results[0].status == 503 and h.results[0].error == "HTTP 503: busy"
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    for n, gap in enumerate(gaps):  # backoff 0.05·2ⁿ, less up to a quarter of jitter
        assert gap >= 0.75 * 0.05 * 2**n - 0.005, gaps
    item_id = 1
    assert box.status(item_id) == ("delivered", "HTTP 503: busy", 5)


@aio
async def test_429_retry_after_is_honoured(receiver: Receiver, box: Outbox, clock: Clock) -> None:
    def script(request: Request) -> Reply:
        if len(receiver.requests) == 1:
            return Reply(429, b"slow down", {"Retry-After": "1"})
        return Reply()

    receiver.script = script
    h = Harness(receiver, box, clock)
    h.start()
    h.put("k", "g")
    await until(lambda: h.outcome("k") == "retry")
    assert h.results[0].status == 429
    assert box.next_due_at("desk") == T + 1
    clock.now = T + 0.9
    h.deliverer.wake()
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 1, "not before Retry-After"
    clock.now = T + 1
    h.deliverer.wake()
    await h.done("k")
    await h.close()
    assert receiver.keys() == ["k", "k"]


@aio
async def test_a_failing_target_is_paused_as_a_whole(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    """After a 503 other calls wait too (the desk is probed, not hammered), then proceed."""
    receiver.script = lambda r: Reply(503) if len(receiver.requests) == 1 else Reply()
    h = Harness(receiver, box, clock)
    h.start()
    h.put("a1", "A")
    await until(lambda: h.outcome("a1") == "retry")
    h.put("b1", "B")
    await asyncio.sleep(0.2)
    assert receiver.keys() == ["a1"], "B waits while the target is paused"
    clock.now = T + 0.5
    h.deliverer.wake()
    await h.done("a1", "b1")
    await h.close()
    assert sorted(receiver.keys()) == ["a1", "a1", "b1"]


def test_retry_after_values() -> None:
    assert parse_retry_after("1", now=T) == 1.0
    assert parse_retry_after(" 120 ", now=T) == 120.0
    assert parse_retry_after("99999", now=T) == 3600.0, "capped at an hour"
    date = "Fri, 15 Jan 2027 08:00:30 GMT"  # T + 30
    assert time.gmtime(T)[:6] == (2027, 1, 15, 8, 0, 0)
    assert parse_retry_after(date, now=T) == 30.0
    assert parse_retry_after(date, now=T + 60) == 0.0, "a date in the past: now"
    assert parse_retry_after("soon", now=T) is None
    assert parse_retry_after("-5", now=T) is None


@aio
async def test_404_is_dead_with_reason_and_the_group_continues(
    receiver: Receiver, box: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    answer = b"no such\x00 hook\r\n\tsee \x1b[31mdocs" + b" x" * 300

    def script(request: Request) -> Reply:
        return Reply(404, answer) if request.key == "k1" else Reply()

    receiver.script = script
    h = Harness(receiver, box, clock)
    h.put("k1", "g")
    h.put("k2", "g")
    h.start()
    with caplog.at_level(logging.WARNING, logger="cti.notify"):
        await h.done("k1", "k2")
    await h.close()
    assert h.outcomes() == [("k1", "dead"), ("k2", "delivered")]
    reason = h.results[0].error
    assert reason is not None
    assert reason.startswith("HTTP 404: no such hook see [31mdocs x x")
    assert len(reason) == len("HTTP 404: ") + 200
    assert box.status(1) == ("dead", reason, 1)
    assert "dead" in caplog.text


@aio
async def test_redirect_is_dead_and_not_followed(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    def script(request: Request) -> Reply:
        if request.path == "/hook":
            location = receiver.url.replace("//", "//user:pw@") + "/moved?token=t0p"
            return Reply(301, b"", {"Location": location})
        return Reply()

    receiver.script = script
    h = Harness(receiver, box, clock)
    h.start()
    h.put("k", "g")
    await h.done("k")
    await h.close()
    assert [request.path for request in receiver.requests] == ["/hook"]
    reason = h.results[0].error or ""
    assert h.results[0].outcome == "dead"
    assert "redirects are not followed" in reason and "final address" in reason
    assert reason.endswith(f"({receiver.url}/moved)")
    assert "pw" not in reason and "t0p" not in reason


@aio
async def test_expired_pop_is_not_sent_and_does_not_block(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock)
    h.put("pop", "g", event="screen_pop", ttl=60)
    h.put("ringing", "g")
    h.put("building-pop", "h", None, event="screen_pop", ttl=60)  # its rule never finished
    h.put("answered", "h")
    clock.now = T + 61
    h.start()
    await h.done("pop", "ringing", "building-pop", "answered")
    await h.close()
    assert sorted(receiver.keys()) == ["answered", "ringing"]
    assert sorted(h.outcomes()) == [
        ("answered", "delivered"),
        ("building-pop", "expired"),
        ("pop", "expired"),
        ("ringing", "delivered"),
    ]
    assert box.stats() == {"pending": 0, "delivered": 2, "dead": 0, "expired": 2}


@aio
async def test_expiry_is_checked_just_before_sending(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock)
    h.put("pop", "g", event="screen_pop", ttl=60)
    [item] = box.due("desk", now=T)
    clock.now = T + 60
    result = await h.deliverer.deliver(item)
    await h.deliverer.aclose()
    assert (result.outcome, result.status) == ("expired", None)
    assert receiver.requests == []
    assert box.status(item.id) == ("expired", None, 0)


@aio
async def test_building_message_blocks_its_group_until_finish(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock)
    h.start()
    h.put("pop", "A", None, event="screen_pop", ttl=60)
    h.put("ringing", "A")
    h.put("other", "B")
    await h.done("other")
    await asyncio.sleep(0.2)
    assert receiver.keys() == ["other"]
    box.finish("pop", "A", '{"card":"Иван"}'.encode())
    h.deliverer.wake()
    await h.done("pop", "ringing")
    await h.close()
    assert receiver.keys() == ["other", "pop", "ringing"]
    assert receiver.requests[1].body == '{"card":"Иван"}'.encode()


@aio
async def test_drain_returns_within_its_timeout_while_the_receiver_hangs(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    receiver.script = lambda request: Reply(hold=threading.Event())  # never answers
    h = Harness(receiver, box, clock, hook={"timeout": 60})
    h.start()
    h.put("k", "g")
    await until(lambda: len(receiver.requests) == 1)
    started = time.monotonic()
    draining = asyncio.create_task(h.deliverer.drain(0.5))
    await asyncio.sleep(0.05)
    h.put("late", "other")  # no new work once draining
    await draining
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.0, elapsed
    assert h.task is not None and h.task.done()
    assert receiver.keys() == ["k"]
    assert box.depth() == 2 and box.status(1) == ("pending", None, 0)
    assert h.results == []


@aio
async def test_connection_refused_is_retried(box: Outbox, clock: Clock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = Webhook(url=f"http://127.0.0.1:{port}/hook", secret=SecretStr(SECRET))
    results: list[DeliveryResult] = []
    deliverer = WebhookDeliverer(hook, box, target="desk", clock=clock, on_result=results.append)
    box.put(["desk"], "k", "g", "call.ringing", b"{}", now=T, expires_at=T + DAY)
    task = asyncio.create_task(deliverer.run())
    await until(lambda: bool(results))
    deliverer.stop()
    await task
    assert (results[0].outcome, results[0].status) == ("retry", None)
    assert results[0].error is not None and results[0].error.startswith("ConnectError")
    next_at = box.next_due_at("desk")
    assert next_at is not None and T + 0.375 <= next_at <= T + 0.5
    assert box.status(1) == ("pending", results[0].error, 1)


@aio
async def test_slow_receiver_times_out_and_is_retried(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    receiver.script = lambda request: Reply(delay=1.0)
    h = Harness(receiver, box, clock, hook={"timeout": 0.2})
    h.start()
    h.put("k", "g")
    await until(lambda: h.outcome("k") == "retry")
    await h.close()
    assert h.results[0].error is not None and "timed out" in h.results[0].error.lower()
    assert 0.15 < h.results[0].latency < 0.6


@aio
async def test_concurrency_is_bounded(receiver: Receiver, box: Outbox, clock: Clock) -> None:
    receiver.script = lambda request: Reply(delay=0.15)
    async with httpx.AsyncClient() as client:  # its own pool would allow 100 at once
        h = Harness(receiver, box, clock, concurrency=2, client=client)
        for n in range(5):
            h.put(f"k{n}", f"G{n}")
        h.start()
        await h.done(*(f"k{n}" for n in range(5)))
        await h.close()
        assert not client.is_closed, "a client passed in is the caller's to close"
    assert receiver.most_active == 2
    assert sorted(receiver.keys()) == [f"k{n}" for n in range(5)]


@aio
async def test_logs_name_the_url_without_credentials(
    receiver: Receiver, box: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = lambda request: Reply(410, b"gone")
    url = receiver.url.replace("//", "//user:pa55w0rd@") + "?token=t0k3n"
    h = Harness(receiver, box, clock, url=url)
    h.start()
    with caplog.at_level(logging.DEBUG, logger="cti.notify"):
        h.put("k", "g")
        await h.done("k")
    await h.close()
    text = caplog.text
    assert receiver.url in text and "HTTP 410: gone" in text
    assert "pa55w0rd" not in text and "t0k3n" not in text and SECRET not in text
    assert safe_url(url) == receiver.url


def test_clean_text() -> None:
    assert clean_text("a\x00b\r\n  c\u202ed\x7f") == "ab cd"
    assert clean_text(b"caf\xc3\xa9 \xff") == "caf\u00e9 \ufffd"
    assert clean_text("x" * 500) == "x" * 200


# ---------------------------------------------------------------- the HTTP/1.1 transport


class RawServer:
    """An asyncio HTTP 'server' whose connections a test scripts byte by byte."""

    def __init__(self, handle: Callable[[int, asyncio.StreamReader, asyncio.StreamWriter],
                                        Coroutine[Any, Any, None]]) -> None:  # fmt: skip
        self.handle = handle
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request head)
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handle(self.connections, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def read_request(self, number: int, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        await reader.readexactly(length)
        self.requests.append((number, head))
        return head

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@aio
async def test_a_keep_alive_connection_closed_while_idle_costs_no_retry(
    box: Outbox, clock: Clock
) -> None:
    # the first connection answers once and drops the next request unanswered (the server
    # closed it while idle, a race every client meets); later connections answer everything
    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        answered = 0
        while True:
            await server.read_request(number, reader)
            if number == 1 and answered == 1:
                return  # closed without an answer
            writer.write(OK)
            await writer.drain()
            answered += 1

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=1)
    h.start()
    h.put("k1", "g")
    await h.done("k1")
    h.put("k2", "g")
    await h.done("k2")
    h.put("k3", "g")
    await h.done("k3")
    await h.close()
    await server.close()
    assert h.outcomes() == [("k1", "delivered"), ("k2", "delivered"), ("k3", "delivered")]
    assert [n for n, _ in server.requests] == [1, 1, 2, 2], "k2 sent again on a new connection"
    assert server.connections == 2, "the new connection is kept alive for k3"


@aio
async def test_a_server_that_closes_without_answering_is_retried(box: Outbox, clock: Clock) -> None:
    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        await server.read_request(number, reader)

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url)
    h.start()
    h.put("k", "g")
    await until(lambda: h.outcome("k") == "retry")
    await h.close()
    await server.close()
    assert server.connections == 1, "a fresh connection is not tried twice"
    error = h.results[0].error or ""
    assert error.startswith("RemoteProtocolError") and "without an answer" in error
    assert box.status(1) == ("pending", error, 1)


@aio
async def test_a_long_answer_is_cut_and_its_connection_not_reused(
    box: Outbox, clock: Clock
) -> None:
    big = b"x" * 200_000

    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        while True:
            await server.read_request(number, reader)
            writer.write(b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
            await writer.drain()

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=1)
    h.start()
    h.put("k1", "g1")
    h.put("k2", "g2")
    await h.done("k1", "k2")
    await h.close()
    await server.close()
    assert h.outcomes() == [("k1", "dead"), ("k2", "dead")]
    assert h.results[0].error == "HTTP 410: " + "x" * 200
    assert server.connections == 2


@aio
async def test_url_credentials_are_sent_as_basic_auth(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    url = receiver.url.replace("//", "//desk%40corp:p%C3%A4ss@")
    h = Harness(receiver, box, clock, url=url)
    h.start()
    h.put("k", "g")
    await h.done("k")
    await h.close()
    import base64

    expected = "Basic " + base64.b64encode("desk@corp:päss".encode()).decode()
    assert receiver.requests[0].headers["authorization"] == expected
    assert receiver.requests[0].headers["host"] == receiver.url.split("/")[2]


@aio
async def test_lean_client_bounds_concurrency(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    receiver.script = lambda request: Reply(delay=0.15)
    h = Harness(receiver, box, clock, concurrency=2)
    for n in range(5):
        h.put(f"k{n}", f"G{n}")
    h.start()
    await h.done(*(f"k{n}" for n in range(5)))
    await h.close()
    assert receiver.most_active == 2
    assert sorted(receiver.keys()) == [f"k{n}" for n in range(5)]


@aio
async def test_a_proxy_in_the_environment_is_used(
    receiver: Receiver, box: Outbox, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the receiver plays the proxy: a request for desk.invalid arrives in absolute form
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", receiver.url.rsplit("/", 1)[0])
    h = Harness(receiver, box, clock, url="http://desk.invalid/cti/events")
    h.start()
    h.put("k", "g")
    await h.done("k")
    await h.close()
    assert h.outcomes() == [("k", "delivered")]
    assert receiver.requests[0].path == "http://desk.invalid/cti/events"


@aio
async def test_https_is_verified_against_the_trust_store(
    receiver: Receiver,
    box: Outbox,
    clock: Clock,
    tls_files: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    ca, cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    url = receiver.url.replace("http://127.0.0.1", "https://localhost")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    untrusted = Harness(receiver, box, clock, url=url)
    untrusted.start()
    untrusted.put("k1", "g1")
    await until(lambda: untrusted.outcome("k1") == "retry")
    await untrusted.close()
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.results[0].error or "")
    assert receiver.requests == []

    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the service desk's own CA
    trusted = Harness(receiver, box, clock, url=url)
    trusted.start()
    trusted.put("k2", "g2")
    await trusted.done("k2")
    await trusted.close()
    assert trusted.outcome("k2") == "delivered"
    assert receiver.requests[0].signature_ok is True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@aio
async def test_a_stray_answer_on_an_idle_connection_is_not_taken_for_the_next(
    box: Outbox, clock: Clock
) -> None:
    # the first connection answers k1, then sends an answer nobody asked for while idle
    stray_sent = asyncio.Event()

    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        await server.read_request(number, reader)
        writer.write(OK)
        await writer.drain()
        if number == 1:
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            stray_sent.set()
            await reader.read()  # a request sent here would read the stray 410
        else:
            while True:
                await server.read_request(number, reader)
                writer.write(OK)
                await writer.drain()

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=1)
    h.start()
    h.put("k1", "g")
    await h.done("k1")
    await stray_sent.wait()
    await asyncio.sleep(0.02)
    h.put("k2", "g")
    await h.done("k2")
    await h.close()
    await server.close()
    assert h.outcomes() == [("k1", "delivered"), ("k2", "delivered")]
    assert [n for n, _ in server.requests] == [1, 2]


@aio
async def test_the_late_answer_of_a_timed_out_request_is_never_read(
    box: Outbox, clock: Clock
) -> None:
    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        while True:
            await server.read_request(number, reader)
            if number == 1:
                await asyncio.sleep(0.2)  # after the client's timeout
                writer.write(OK)
            else:
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=1,
                hook={"timeout": 0.1})  # fmt: skip
    h.start()
    h.put("k", "g")
    await until(lambda: h.outcome("k") == "retry")
    await asyncio.sleep(0.15)  # the late answer has arrived at the cut connection
    clock.now = T + 1
    h.deliverer.wake()
    await h.done("k")
    await h.close()
    await server.close()
    assert [(r.outcome, r.status) for r in h.results] == [("retry", None), ("delivered", 202)]
    assert server.connections == 2


@aio
async def test_a_server_that_never_reads_leaves_no_socket_open(box: Outbox, clock: Clock) -> None:
    # accepted by the kernel, never read: a request bigger than the socket buffers never drains
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        h = Harness(Receiver.__new__(Receiver), box, clock, url=url, hook={"timeout": 0.2})
        h.put("k", "g", b"x" * 8_000_000)
        [item] = box.due("desk", now=T)
        before = open_fds()
        result = await h.deliverer.deliver(item)
        await asyncio.sleep(0.01)
        assert open_fds() == before, "the cut connection's socket is closed"
        await h.deliverer.aclose()
    assert (result.outcome, result.error) == ("retry", "timed out after 0.2 s")


@aio
async def test_an_answer_before_the_whole_request_was_sent_is_read(
    box: Outbox, clock: Clock
) -> None:
    # the server answers after the head and closes with the body unread (a reset)
    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 7\r\n\r\n"
                     b"too big")  # fmt: skip
        await writer.drain()

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url)
    h.start()
    h.put("k", "g", b"x" * 8_000_000)
    await h.done("k")
    await h.close()
    await server.close()
    assert [(r.outcome, r.error) for r in h.results] == [("dead", "HTTP 413: too big")]


@aio
async def test_a_url_with_non_ascii_path_and_query_is_sent_percent_encoded(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    h = Harness(receiver, box, clock, url=receiver.url + "/хук?name=Иван&x=%2F")
    h.start()
    h.put("k", "g")
    await h.done("k")
    await h.close()
    assert h.outcomes() == [("k", "delivered")]
    assert receiver.requests[0].path == (
        "/hook/%D1%85%D1%83%D0%BA?name=%D0%98%D0%B2%D0%B0%D0%BD&x=%2F"
    )


@aio
async def test_a_hostile_redirect_location_is_reported_printable_not_a_crash(
    receiver: Receiver, box: Outbox, clock: Clock
) -> None:
    def script(request: Request) -> Reply:
        where = "http://[oops/x" if request.key == "k1" else "/moved\x9b31m\x85on"
        return Reply(302, b"", {"Location": where})

    receiver.script = script
    h = Harness(receiver, box, clock, concurrency=1)
    h.start()
    h.put("k1", "g")
    h.put("k2", "g")
    await h.done("k1", "k2")
    await h.close()
    assert h.outcomes() == [("k1", "dead"), ("k2", "dead")]
    errors = [r.error or "" for r in h.results]
    assert errors[0].endswith("final address (<invalid URL>)")
    assert errors[1].endswith(f"final address ({receiver.url.rsplit('/', 1)[0]}/moved31m on)")


@aio
async def test_an_unencoded_password_never_shows_in_errors_or_logs(
    box: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # "/" in a password not written as %2F: the URL's port reads "pa55"
    h = Harness(Receiver.__new__(Receiver), box, clock, url="http://desk:pa55/w0rd@127.0.0.1/h")
    h.start()
    with caplog.at_level(logging.DEBUG, logger="cti.notify"):
        h.put("k", "g")
        await h.done("k")
    await h.close()
    [result] = h.results
    assert result.outcome == "dead" and (result.error or "").startswith("cannot send")
    assert "pa55" not in (result.error or "") and "pa55" not in caplog.text


@aio
async def test_many_deliveries_reuse_at_most_n_connections_and_leak_no_sockets(
    box: Outbox, clock: Clock
) -> None:
    # every connection is closed by the server after its second answer, without saying so
    open_now = most_open = 0

    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        nonlocal open_now, most_open
        open_now += 1
        most_open = max(most_open, open_now)
        try:
            for _ in range(2):
                await server.read_request(number, reader)
                writer.write(OK)
                await writer.drain()
        finally:
            open_now -= 1

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=4)
    before = open_fds()
    for n in range(200):
        h.put(f"k{n}", f"g{n}")
    h.start()
    await h.done(*(f"k{n}" for n in range(200)), timeout=10)
    await h.close()
    await server.close()
    await asyncio.sleep(0.01)
    assert {outcome for _, outcome in h.outcomes()} == {"delivered"}
    assert len(server.requests) == 200, "no request sent twice"
    assert most_open <= 4 and server.connections <= 110
    assert open_fds() <= before


# (answer bytes, whether the server closes after it) → outcome, reason start, connection kept
ANSWERS = {
    "100 Continue first": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        False, "delivered", None, True,
    ),
    "bare LF line ends": (
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False, "delivered", None, True,
    ),
    "HTTP/1.0, body ended by closing": (
        b"HTTP/1.0 200 OK\r\n\r\nthanks", True, "delivered", None, False,
    ),
    "Connection: close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True,
        "delivered", None, False,
    ),
    "chunked reason": (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\n\xd0\xbd\xd0\xb5\xd1\x82\r\n3\r\n: x\r\n0\r\n\r\n",
        False, "dead", "HTTP 400: нет: x", True,
    ),
    "body cut short by closing": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, "retry",
        "RemoteProtocolError: not an HTTP/1.1 answer: the server closed the connection before",
        False,
    ),
    "not HTTP": (
        b"SSH-2.0-OpenSSH_9.6\r\n", True, "retry", "RemoteProtocolError: not an HTTP/1.1", False,
    ),
    "bytes after the answer": (OK + b"HTTP/1.1 200 OK\r\n", False, "delivered", None, False),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ANSWERS))
@aio
async def test_answers_as_servers_write_them(name: str, box: Outbox, clock: Clock) -> None:
    answer, closes, outcome, reason, kept = ANSWERS[name]

    async def handle(number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
        first = True
        while True:
            await server.read_request(number, reader)
            writer.write(answer if first and number == 1 else OK)
            await writer.drain()
            if first and number == 1 and closes:
                return
            first = False

    server = RawServer(handle)
    url = await server.start()
    h = Harness(Receiver.__new__(Receiver), box, clock, url=url, concurrency=1)
    h.start()
    h.put("k1", "g1")
    await until(lambda: h.outcome("k1") is not None)
    if outcome != "retry":  # (a retry pauses the target until its backoff, on a test clock)
        h.put("k2", "g2")
        await h.done("k2")
    await h.close()
    await server.close()
    first = h.results[0]
    assert (first.key, first.outcome) == ("k1", outcome)
    if reason is None:
        assert first.error is None
    else:
        assert (first.error or "").startswith(reason), first.error
    if outcome != "retry":
        assert h.outcome("k2") == "delivered"
        # the next request went over the same connection only when the answer left it clean
        assert [n for n, _ in server.requests] == ([1, 1] if kept else [1, 2])


@aio
async def test_a_header_http_forbids_is_never_sent_and_its_value_never_shown() -> None:
    from cti_cli.notify.http1 import CannotSend, PostClient

    client = PostClient("http://127.0.0.1:9/hook", max_connections=1, user_agent="cti/test")
    with pytest.raises(CannotSend) as caught:
        await client.post(b"{}", [(b"X-Token", b"s3cret\r\nX-Injected: 1")])
    assert str(caught.value) == "the value of header 'X-Token' has characters HTTP forbids"
    with pytest.raises(CannotSend, match="invalid header name"):
        await client.post(b"{}", [(b"X Token", b"ok")])
    await client.aclose()


@pytest.mark.parametrize(
    ("answer", "action"),
    [(b'{"action":"reject","reason":"busy"}', "reject"), (b"{}", None), (b"", None),
     (b"[" * 3000, None), (b'{"a":' * 1500 + b"1" + b"}" * 1500, None), (b"\xff", None)],
)  # fmt: skip
def test_a_zammad_answer_nested_thousands_deep_is_no_action(answer: bytes, action: str) -> None:
    # the desk's 2xx answer (up to 4 KB is read): deep nesting raised RecursionError into the
    # delivery, which no HTTP answer may do
    from cti_cli.notify.zammad import zammad_action

    assert zammad_action(answer) == action
