"""Deliver one webhook's outbox rows: signed POSTs, at least once, in order per call.

``WebhookDeliverer.run`` takes each group's head from the outbox (``Outbox.due``) and sends up to
``concurrency`` requests at once, never two of one group, so calls proceed independently while
the events of one call arrive in order. Outcomes:

* 2xx → delivered.
* no answer (connection, TLS, timeout), 5xx, 408, 429 → retried later: exponential backoff with
  jitter (``backoff_initial`` doubling up to ``backoff_max``) or the server's ``Retry-After``
  (seconds or an HTTP date, at most an hour). These failures also pause the whole target for
  the same backoff (counted once per wave of parallel requests), so a service desk that is down
  is probed, not hammered, however many calls are waiting.
* 3xx → dead: redirects are not followed (set the URL to the final address).
* any other 4xx → dead, with ``"HTTP 404: <start of the answer>"`` as the reason.
* past ``expires_at`` (a pop nobody would see any more) → expired, never sent.

The request body is the row's body verbatim, with ``X-CTI-Event``, ``X-CTI-Delivery`` (the
delivery key: the same on every attempt, so receivers can drop repeats), ``X-CTI-Timestamp`` and,
with a secret, ``X-CTI-Signature`` (see ``cti_cli.notify.signing``).

Logs go to ``cti.notify`` (debug; warning for dead rows) with the URL stripped of credentials
and query; secrets are never logged. The deliverer is driven from one asyncio loop: call
``wake``/``stop`` from that loop (from another thread use ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import logging
import random
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

import cti_cli
from cti_cli.config import Webhook
from cti_cli.notify import http1
from cti_cli.notify.outbox import Item, Outbox, OutboxError
from cti_cli.notify.signing import sign

log = logging.getLogger("cti.notify")

Outcome = Literal["delivered", "retry", "dead", "expired"]
RETRY_AFTER_MAX = 3600.0
REASON_CHARS = 200
_READ_LIMIT = 4096
_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]*)?")


@dataclass(frozen=True)
class DeliveryResult:
    target: str
    key: str
    event: str
    outcome: Outcome
    status: int | None
    latency: float  # seconds, request sent → answer (0 when nothing was sent)
    error: str | None
    answer: bytes = b""  # the start of a 2xx answer's body (Zammad may say "reject")


def safe_url(url: str) -> str:
    """``url`` without user:password, query and fragment: fit for logs."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port is often a password with an unencoded "/" or "?"
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def send_ping(hook: Webhook, *, delivery: str = "ping") -> httpx.Response:
    """POST a signed `ping` event to a webhook now (`cti webhooks test`, `cti doctor`): the same
    headers and signature as a real delivery, so a receiver's verification is exercised too."""
    now = time.time()
    agent = f"cti/{cti_cli.__version__}"
    body = json.dumps({"event": "ping", "time": f"{now:.6f}", "agent": agent})
    stamp = str(int(now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": agent,
        "X-CTI-Event": "ping",
        "X-CTI-Delivery": f"{delivery}-{stamp}",
        "X-CTI-Timestamp": stamp,
    }
    secret = hook.secret.get_secret_value()
    if secret:
        headers["X-CTI-Signature"] = sign(secret, stamp, body.encode())
    return httpx.post(hook.url, content=body.encode(), headers=headers, timeout=hook.timeout,
                      follow_redirects=False)  # fmt: skip


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: for logs and labels where even the path is secret."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def clean_text(raw: bytes | str, limit: int = REASON_CHARS) -> str:
    """Printable one-line text: whitespace runs → one space, control characters removed."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    kept = (
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    return " ".join("".join(kept).split())[:limit]


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), capped at an
    hour; None when it cannot be read."""
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _describe(exc: BaseException) -> str:
    text = clean_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _read_some(response: httpx.Response) -> bytes:
    """The start of the answer (enough for a reason); small answers are read whole, which
    keeps the connection reusable."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _READ_LIMIT:
            break
    return b"".join(chunks)[:_READ_LIMIT]


POLL_SECONDS = 2.0


HOLD_SECONDS = 0.2  # how often a gated (standby) deliverer looks whether it may deliver


class OutboxDeliverer:
    """The delivery loop shared by every kind of target (webhooks, event buses): one target's
    outbox rows, in order per call, ``concurrency`` calls at once, retries with backoff.
    Subclasses implement ``deliver(item)`` and report through ``_delivered_ok``/``_retry``/
    ``_dead``/``_report``.

    ``gate``: when set and it returns False (a standby agent not holding the lease), nothing is
    handed out, expired or sent; rows wait in the outbox until it returns True."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        target: str,
        shown: str,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        on_result: Callable[[DeliveryResult], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 300.0,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.outbox = outbox
        self.target = target
        self.shown_url = shown
        self.gate = gate
        self._clock = clock
        self._concurrency = concurrency
        self._on_result = on_result
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = random.Random()
        self._inflight: dict[str, asyncio.Task[DeliveryResult]] = {}
        self._kick = asyncio.Event()
        self._alarm: asyncio.TimerHandle | None = None  # wakes `run` when a wait runs out
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._deadline: float | None = None  # loop time by which in-flight requests must end
        # the whole target's backoff, in memory
        self._failures = 0
        self._wave = 0
        self._paused_until = 0.0
        self._expired_at = float("-inf")
        # What may have become due since the last `due` query. Under load half of those queries
        # found nothing: every group they could return was in flight. Now a step queries only
        # when a group not in flight was touched (a put, a request that ended) or when anything
        # may have changed (`_look_all`: start, a timer, an unknown wake, a sweep).
        self._look_all = True
        self._touched: set[str] = set()
        self._ask_next = True  # `next_due_at` must be asked again (else `_next_known` holds)
        self._next_known: float | None = None
        self._retry_due: float | None = None  # the soonest retry this deliverer scheduled

    # ------------------------------------------------------------ control

    def wake(self, group: str | None = None) -> None:
        """Look at the outbox now (call after each put; ``group``: the only group the put
        touched, when the caller knows it)."""
        if group is None:
            self._look_all = True
        else:
            self._touched.add(group)
        self._kick.set()

    def _rouse(self) -> None:
        """A wait ran out: anything may be due now (a retry's time, another process's write)."""
        self._look_all = self._ask_next = True
        self._kick.set()

    def _ended_task(self, _task: asyncio.Task[DeliveryResult]) -> None:
        """A request ended: a slot is free (its group is touched by `_left` if it has a next
        row)."""
        self._kick.set()

    def _left(self, item: Item, promoted: bool) -> None:
        """``item`` left pending (delivered, dead, expired); ``promoted``: the outbox made its
        group's next row the head, which may be due now."""
        if promoted:
            self._touched.add(item.group)

    def stop(self) -> None:
        """Stop now: in-flight requests are abandoned and their rows stay pending."""
        self._stopping = True
        self._deadline = None
        self._kick.set()

    async def drain(self, timeout: float) -> None:
        """Take no new work, give in-flight requests up to ``timeout`` s, then return; what is
        left stays pending in the outbox for the next start."""
        self._stopping = True
        self._deadline = asyncio.get_running_loop().time() + max(0.0, timeout)
        self._kick.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout) + 1.0):
                    await self._done.wait()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def aclose(self) -> None:
        """Release the connection (``run`` does this on its way out)."""

    async def deliver(self, item: Item) -> DeliveryResult:
        """Send one row now and record the outcome in the outbox (``run`` calls this)."""
        raise NotImplementedError

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        if self._running:
            raise RuntimeError("this deliverer is already running")
        self._running = True
        self._done.clear()
        try:
            while not self._stopping:
                self._kick.clear()
                try:
                    self._reap()
                    timeout = self._step()
                except OutboxError as exc:  # a full or failing disk: the owner reports it
                    log.debug("%s: outbox: %s; trying again in 1 s", self.shown_url, exc)
                    timeout = 1.0
                if timeout is not None and timeout <= 0:
                    await asyncio.sleep(0)
                    continue
                if timeout is not None:
                    self._arm(timeout)
                await self._kick.wait()
        finally:
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None
            await self._shutdown()
            await self.aclose()
            self._running = False
            self._done.set()

    def _arm(self, timeout: float) -> None:
        """Be woken within ``timeout`` s. One timer serves many steps: a pending one that
        rings sooner is kept (an early wake-up only means one more look at the outbox), so the
        steps under load (most wait POLL_SECONDS) schedule no timer of their own."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        when = now + timeout
        alarm = self._alarm
        if alarm is not None:
            if now < alarm.when() <= when:
                return
            alarm.cancel()
        self._alarm = loop.call_at(when, self._rouse)

    def _step(self) -> float | None:
        """Expire, start what is due; how long to sleep (None: until woken)."""
        if self.gate is not None and not self.gate():
            self._look_all = self._ask_next = True  # when the gate opens, anything may be due
            return HOLD_SECONDS
        now = self._clock()
        if now - self._expired_at >= 1.0:  # a write transaction: not on every wake-up
            self._expired_at = now
            expired = self.outbox.expire(now=now, target=self.target)
            if expired:  # their groups' next rows are heads now
                self._look_all = self._ask_next = True
            for item in expired:
                self._report(item, "expired", None, 0.0, "expired before delivery")
        if now < self._paused_until:
            self._look_all = True
            return self._paused_until - now
        if self._retry_due is not None and now >= self._retry_due:
            self._retry_due, self._look_all = None, True
        inflight = self._inflight
        free = self._concurrency - len(inflight)
        if free > 0 and (self._look_all or not self._touched.issubset(inflight.keys())):
            self._look_all = False
            self._touched.clear()  # in-flight ones are touched again when their request ends
            items = self.outbox.due(
                self.target, now=now, limit=free, exclude_groups=inflight.keys()
            )
            if len(items) == free:  # maybe more than could be taken
                self._look_all = True
            for item in items:
                task = asyncio.create_task(self.deliver(item), name=f"webhook {item.key}")
                task.add_done_callback(self._ended_task)
                inflight[item.group] = task
        if len(inflight) >= self._concurrency:
            return None
        if inflight:
            # each request in flight wakes this loop when it ends: look again then (at most
            # POLL_SECONDS later, should they all hang) rather than query the next due time on
            # every step; under load that query was a tenth of the deliverer's work
            if self._retry_due is not None:  # a retry's time comes sooner: look then
                return min(POLL_SECONDS, self._retry_due - now)
            return POLL_SECONDS
        # idle: when is something next due? Asked again only after a retry, a timer or a sweep,
        # or once the time it gave has come (between them only puts happen, due at once)
        if self._ask_next or (self._next_known is not None and self._next_known <= now):
            self._ask_next = False
            self._next_known = self.outbox.next_due_at(self.target)
        next_at = self._next_known
        # look again at least every POLL_SECONDS: `cti outbox retry` writes from another process
        wait = POLL_SECONDS if next_at is None else next_at - self._clock()
        if wait <= 0:  # due now, or a building row past its time: look and sweep at once
            self._look_all = True
            self._expired_at = float("-inf")
        return min(wait, POLL_SECONDS)

    def _reap(self) -> None:
        for group, task in list(self._inflight.items()):
            if task.done():
                del self._inflight[group]
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc

    async def _shutdown(self) -> None:
        tasks = list(self._inflight.values())
        self._inflight.clear()
        if not tasks:
            return
        if self._deadline is not None:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining > 0:
                await asyncio.wait(tasks, timeout=remaining)
        left = [task for task in tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            log.debug("%s: %d request(s) abandoned, left pending", self.shown_url, len(left))
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("%s: delivery failed: %s", self.shown_url, _describe(outcome))

    # ------------------------------------------------------------ outcomes

    def _retry(
        self,
        item: Item,
        wave: int,
        status: int | None,
        latency: float,
        error: str,
        wait: float | None,
    ) -> DeliveryResult:
        now = self._clock()
        delay = wait if wait is not None else self._backoff(item.attempts)
        self.outbox.retry(item.id, next_at=now + delay, error=error)
        self._ask_next = True  # a time later than any put's: `next_due_at` must know it
        if self._retry_due is None or now + delay < self._retry_due:
            self._retry_due = now + delay  # and `_step` looks then, however busy the target
        if wave == self._wave:  # the first failure of this wave of requests
            self._wave += 1
            self._failures += 1
        pause = wait if wait is not None else self._backoff(self._failures - 1)
        self._paused_until = max(self._paused_until, now + pause)
        return self._report(item, "retry", status, latency, error)

    def _dead(self, item: Item, status: int | None, latency: float, reason: str) -> DeliveryResult:
        self._failures = 0
        self._left(item, self.outbox.dead(item.id, reason=reason, now=self._clock()))
        return self._report(item, "dead", status, latency, reason)

    def _backoff(self, attempt: int) -> float:
        """``backoff_initial · 2^attempt``, capped, minus up to a quarter at random."""
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** min(max(attempt, 0), 60))
        return base * (1.0 - 0.25 * self._rng.random())

    def _report(
        self,
        item: Item,
        outcome: Outcome,
        status: int | None,
        latency: float,
        error: str | None,
        answer: bytes = b"",
    ) -> DeliveryResult:
        result = DeliveryResult(
            self.target, item.key, item.event, outcome, status, latency, error, answer
        )
        level = logging.WARNING if outcome == "dead" else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s %s → %s%s%s",
                self.shown_url,
                item.event,
                item.key,
                outcome,
                f" (HTTP {status})" if status is not None else "",
                f": {error}" if error else "",
            )
        if self._on_result is not None:
            try:
                self._on_result(result)
            except Exception:
                log.exception("on_result callback failed for %s", item.key)
        return result


class WebhookDeliverer(OutboxDeliverer):
    """Signed HTTP POSTs to one webhook."""

    def __init__(
        self,
        webhook: Webhook,
        outbox: Outbox,
        *,
        target: str,
        pbx_agent_version: str = cti_cli.__version__,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 8,
        on_result: Callable[[DeliveryResult], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 300.0,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        # Zammad's endpoint carries its token in the path: show only where it goes
        shown = safe_url(webhook.url) if webhook.format == "json" else host_of(webhook.url)
        super().__init__(
            outbox, target=target, shown=shown, clock=clock, concurrency=concurrency,
            on_result=on_result, backoff_initial=backoff_initial, backoff_max=backoff_max,
            gate=gate,
        )  # fmt: skip
        self.webhook = webhook
        self.url = webhook.url
        self._user_agent = f"cti/{pbx_agent_version}"
        self._client = client
        self._own_client = client is None
        self._lean: http1.PostClient | None = None
        self._timeout = httpx.Timeout(webhook.timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if the deliverer made it (``run`` does this on its way out)."""
        if self._lean is not None:
            lean, self._lean = self._lean, None
            await lean.aclose()
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ------------------------------------------------------------ one request

    async def deliver(self, item: Item) -> DeliveryResult:
        """Send one row now and record the outcome in the outbox (``run`` calls this)."""
        wave = self._wave
        now = self._clock()
        if now >= item.expires_at:
            self._left(item, self.outbox.expired(item.id, now=now))
            return self._report(item, "expired", None, 0.0, "expired before delivery")
        timestamp = str(int(now))
        headers = [
            (b"Content-Type", b"application/json"),
            (b"User-Agent", self._user_agent.encode()),
            (b"X-CTI-Event", item.event.encode()),
            (b"X-CTI-Delivery", item.key.encode()),
            (b"X-CTI-Timestamp", timestamp.encode()),
        ]
        secret = self.webhook.secret.get_secret_value()
        if secret:
            headers.append((b"X-CTI-Signature", sign(secret, timestamp, item.body).encode()))

        status: int | None = None
        answer = b""
        location = retry_after = None
        phrase = ""
        error: str | None = None
        permanent = False
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.webhook.timeout):
                reply = await self._post(item.body, headers)
            status, phrase, answer = reply.status, reply.reason, reply.body
            location, retry_after = reply.location, reply.retry_after
        except TimeoutError:
            error = f"timed out after {self.webhook.timeout:g} s"
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, http1.CannotSend, ValueError) as exc:
            error, permanent = f"cannot send: {_describe(exc)}", True
        except (httpx.HTTPError, http1.HttpError) as exc:
            error = _describe(exc)
        latency = time.perf_counter() - started

        if status is None:
            if permanent:
                return self._dead(item, None, latency, error or "cannot send")
            return self._retry(item, wave, None, latency, error or "no answer", None)
        if 200 <= status < 300:
            self._failures = 0
            self._left(item, self.outbox.delivered(item.id, now=self._clock()))
            return self._report(item, "delivered", status, latency, None, answer)
        reason = f"HTTP {status}: {clean_text(answer) or clean_text(phrase)}"
        if 300 <= status < 400:
            where = ""
            if location:  # the server's text: maybe unparsable, maybe with control characters
                try:
                    shown = safe_url(urljoin(self.url, location))
                except ValueError:
                    shown = "<invalid URL>"
                where = f" ({clean_text(shown)})"
            reason = (
                f"HTTP {status}: redirects are not followed; "
                f"set the webhook URL to the final address{where}"
            )
            return self._dead(item, status, latency, reason)
        if status in (408, 429) or status >= 500:
            wait = None
            if retry_after is not None:
                wait = parse_retry_after(retry_after, now=self._clock())
            return self._retry(item, wave, status, latency, reason, wait)
        return self._dead(item, status, latency, reason)

    async def _post(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> http1.Answer:
        """One POST through the lean client, or through httpx when a client was passed in or
        the environment names a proxy for this URL (the lean client speaks no proxy)."""
        if self._client is None and self._lean is None:
            if http1.proxy_for(self.url) is None:
                self._lean = http1.PostClient(
                    self.url, max_connections=self._concurrency, user_agent=self._user_agent
                )
            else:
                self._client = self._make_client()
        if self._lean is not None:
            return await self._lean.post(body, headers)
        assert self._client is not None
        async with self._client.stream(
            "POST", self.url, content=body, headers=headers, timeout=self._timeout,
            follow_redirects=False,
        ) as response:  # fmt: skip
            answer = b""
            with contextlib.suppress(httpx.HTTPError):
                answer = await _read_some(response)
            return http1.Answer(
                response.status_code,
                response.reason_phrase,
                response.headers.get("location"),
                response.headers.get("retry-after"),
                answer,
            )

    def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            http1=True,
            http2=False,
            verify=True,
            follow_redirects=False,
            timeout=self._timeout,
            limits=httpx.Limits(
                max_connections=self._concurrency,
                max_keepalive_connections=self._concurrency,
                keepalive_expiry=30.0,
            ),
        )
