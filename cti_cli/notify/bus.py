"""Call events and screen pops on an event bus: NATS JetStream or RabbitMQ (`[[publish]]`).

A bus is one more outbox target, next to the webhooks: ``bus_target(publish)`` names it without
credentials (``nats://127.0.0.1:4222#CTI/cti``) and ``BusDeliverer`` delivers its rows with the
same loop, order per call and retry rules as webhooks (``OutboxDeliverer``). The message body is
the webhook body, byte for byte; the subject (NATS) or routing key (AMQP) is

    <subject>.<pbx>.call.<ringing|answered|transferred|ended>
    <subject>.<pbx>.pop.<login>

with every token reduced to letters, digits, ``_`` and ``-`` (anything else becomes ``_``: a
``.`` would split a token, ``*``/``>``/``#`` are wildcards). The delivery key is the message id:

* NATS: ``Nats-Msg-Id`` — JetStream drops a second message with the same id within the stream's
  duplicate window (2 minutes unless the stream says otherwise), so a resend after a crash between
  the broker's ack and the outbox commit is not stored twice. Each publish waits for the
  JetStream ack. The stream is created when missing (subjects ``<subject>.>``), or given that
  subject when it exists without it.
* AMQP: a durable topic exchange (created when missing), ``message_id`` = the key, persistent
  delivery mode, publisher confirms (a nack or a lost confirm is retried). RabbitMQ does not
  deduplicate: a consumer drops repeats by ``message_id``.

Every broker failure (connection refused, timeout, nack) is retried with the outbox's backoff;
only a row that cannot become a message at all (not JSON) is a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from cti_cli.config import Publish
from cti_cli.notify.outbox import Item, Outbox
from cti_cli.notify.webhook import DeliveryResult, OutboxDeliverer

log = logging.getLogger("cti.notify")

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
FAULT_ENV = "CTI_TEST_FAULT"  # tests only: "kill-after-publish" SIGKILLs after the broker's ack


def token(value: str) -> str:
    """One subject token: letters, digits, `_`, `-`; anything else → `_`."""
    return _NOT_TOKEN.sub("_", value) or "_"


def subject_for(prefix: str, pbx: str, event: str, body: Any) -> str | None:
    """The subject of one message, or None for an event that is not published."""
    if event.startswith("call."):
        return f"{prefix}.{token(pbx)}.call.{token(event[5:])}"
    if event == "screen_pop":
        operator = body.get("operator") if isinstance(body, dict) else None
        login = operator.get("login") if isinstance(operator, dict) else None
        return f"{prefix}.{token(pbx)}.pop.{token(str(login or ''))}"
    return None


def bus_target(publish: Publish) -> str:
    """The outbox target of a `[[publish]]`: where it goes, without user or password."""
    parts = urlsplit(publish.url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    where = host + (f":{port}" if port else "")
    path = parts.path if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{where}{path}#{publish.stream}/{publish.subject}"


def subscription(publish: Publish, pattern: str | None) -> str:
    """What `cti events tail` listens to: the given pattern, else everything under the prefix."""
    return pattern or f"{publish.subject}.>"


class Publisher(Protocol):
    async def publish(self, subject: str, key: str, event: str, body: bytes) -> bool:
        """Publish and wait for the broker's ack; True when the broker says it is a duplicate."""

    async def close(self) -> None: ...


class NatsPublisher:
    """JetStream: `Nats-Msg-Id` = delivery key, the stream created when missing."""

    def __init__(self, publish: Publish) -> None:
        self.url = publish.url
        self.stream = publish.stream
        self.subjects = f"{publish.subject}.>"
        self.timeout = publish.timeout
        self._nc: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                return self._js
            import nats
            from nats.js.errors import NotFoundError

            async def quiet(exc: Exception) -> None:
                log.debug("nats: %s", exc)

            # one connection attempt (and one quick retry): the outbox does the retrying
            nc = await nats.connect(
                self.url, name="cti agent", allow_reconnect=False, max_reconnect_attempts=1,
                reconnect_time_wait=0.2, connect_timeout=max(1, round(self.timeout)),
                error_cb=quiet,
            )  # fmt: skip
            try:
                js = nc.jetstream(timeout=self.timeout)
                try:
                    info = await js.stream_info(self.stream)
                except NotFoundError:
                    await js.add_stream(name=self.stream, subjects=[self.subjects])
                    log.info("nats: created stream %s for %s", self.stream, self.subjects)
                else:
                    subjects = list(info.config.subjects or [])
                    if self.subjects not in subjects:
                        info.config.subjects = [*subjects, self.subjects]
                        await js.update_stream(info.config)
                        log.info("nats: stream %s now also takes %s", self.stream, self.subjects)
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, js
            return js

    async def publish(self, subject: str, key: str, event: str, body: bytes) -> bool:
        js = await self._connection()
        headers = {"Nats-Msg-Id": key, "Cti-Event": event, "Content-Type": "application/json"}
        ack = await js.publish(
            subject, body, timeout=self.timeout, stream=self.stream, headers=headers
        )
        return bool(ack.duplicate)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


class AmqpPublisher:
    """RabbitMQ: a durable topic exchange, persistent messages, publisher confirms."""

    def __init__(self, publish: Publish) -> None:
        self.url = publish.url
        self.exchange_name = publish.stream
        self.timeout = publish.timeout
        self._connection_: Any = None
        self._exchange: Any = None
        self._lock = asyncio.Lock()

    async def _exchange_now(self) -> Any:
        async with self._lock:
            conn, exchange = self._connection_, self._exchange
            alive = conn is not None and not conn.is_closed and exchange is not None
            if alive and not exchange.channel.is_closed:
                return exchange
            await self._drop()
            import aio_pika

            conn = await aio_pika.connect(self.url, timeout=self.timeout)
            try:
                channel = await conn.channel(publisher_confirms=True)
                exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True,
                    timeout=self.timeout,
                )  # fmt: skip
            except BaseException:
                await conn.close()
                raise
            self._connection_, self._exchange = conn, exchange
            return exchange

    async def publish(self, subject: str, key: str, event: str, body: bytes) -> bool:
        import aio_pika

        exchange = await self._exchange_now()
        message = aio_pika.Message(
            body, message_id=key, type=event, app_id="cti", content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={"cti-event": event},
        )  # fmt: skip
        # mandatory=False: a topic nobody is bound to is not an error (the broker acks it)
        await exchange.publish(message, subject, mandatory=False, timeout=self.timeout)
        return False

    async def _drop(self) -> None:
        conn, self._connection_, self._exchange = self._connection_, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self._drop()


def make_publisher(publish: Publish) -> Publisher:
    return AmqpPublisher(publish) if publish.kind == "amqp" else NatsPublisher(publish)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BusDeliverer(OutboxDeliverer):
    """Publishes one bus target's outbox rows (see the module docstring)."""

    def __init__(
        self,
        publish: Publish,
        outbox: Outbox,
        *,
        target: str,
        pbx: str,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        on_result: Callable[[DeliveryResult], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 300.0,
        gate: Callable[[], bool] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        super().__init__(
            outbox, target=target, shown=target, clock=clock, concurrency=concurrency,
            on_result=on_result, backoff_initial=backoff_initial, backoff_max=backoff_max,
            gate=gate,
        )  # fmt: skip
        self.publish = publish
        self.pbx = pbx
        self.publisher = publisher or make_publisher(publish)
        self._fault = os.environ.get(FAULT_ENV)

    async def aclose(self) -> None:
        await self.publisher.close()

    async def deliver(self, item: Item) -> DeliveryResult:
        """Publish one row now and record the outcome in the outbox (``run`` calls this)."""
        wave = self._wave
        now = self._clock()
        if now >= item.expires_at:
            self._left(item, self.outbox.expired(item.id, now=now))
            return self._report(item, "expired", None, 0.0, "expired before delivery")
        try:
            data = json.loads(item.body)
        except ValueError as exc:
            return self._dead(item, None, 0.0, f"not a JSON message: {exc}")
        pbx = data.get("pbx") if isinstance(data, dict) else None
        subject = subject_for(self.publish.subject, str(pbx or self.pbx), item.event, data)
        if subject is None:
            return self._dead(item, None, 0.0, f"event {item.event} is not published")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.publish.timeout * 2):
                duplicate = await self.publisher.publish(subject, item.key, item.event, item.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            latency = time.perf_counter() - started
            await self.publisher.close()  # the next attempt connects afresh
            error = (
                f"timed out after {self.publish.timeout:g} s"
                if isinstance(exc, TimeoutError)
                else _describe(exc)
            )
            return self._retry(item, wave, None, latency, error, None)
        latency = time.perf_counter() - started
        if self._fault == "kill-after-publish":  # the crash between ack and outbox commit
            os.kill(os.getpid(), signal.SIGKILL)
        if duplicate:
            log.info("%s %s %s: already in the stream (JetStream dropped the duplicate)",
                     self.target, item.event, item.key)  # fmt: skip
        self._failures = 0
        self._left(item, self.outbox.delivered(item.id, now=self._clock()))
        return self._report(
            item, "delivered", None, latency, None, b"duplicate" if duplicate else b""
        )


# ---------------------------------------------------------------- reading back (`cti events tail`)


@dataclass(frozen=True)
class BusMessage:
    subject: str  # the NATS subject or AMQP routing key
    key: str | None  # the delivery key (Nats-Msg-Id / message_id)
    event: str | None
    body: bytes


def amqp_pattern(pattern: str) -> str:
    """A NATS-style pattern (`cti.>`, `cti.*.pop.*`) as an AMQP binding key (`cti.#`)."""
    return ".".join("#" if part == ">" else part for part in pattern.split("."))


async def read_bus(
    publish: Publish,
    pattern: str | None = None,
    *,
    history: bool = False,
    ready: Callable[[], None] | None = None,
) -> AsyncIterator[BusMessage]:
    """Messages on the bus under `pattern` (default: everything under the subject prefix), from
    now on; with `history` (NATS only), everything the stream still holds first."""
    subject = subscription(publish, pattern)
    if publish.kind == "amqp":
        if history:
            raise ValueError("RabbitMQ keeps no history for a topic exchange; drop --all")
        async for message in _read_amqp(publish, subject, ready):
            yield message
        return
    import nats

    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def quiet(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    async def closed() -> None:
        await queue.put(None)

    nc = await nats.connect(
        publish.url, name="cti events tail", max_reconnect_attempts=1, reconnect_time_wait=0.5,
        connect_timeout=max(1, round(publish.timeout)), error_cb=quiet, closed_cb=closed,
    )  # fmt: skip
    try:

        async def take(msg: Any) -> None:
            await queue.put(msg)

        if history:
            from nats.js.api import DeliverPolicy

            js = nc.jetstream(timeout=publish.timeout)
            await js.subscribe(subject, stream=publish.stream, ordered_consumer=True,
                               deliver_policy=DeliverPolicy.ALL, cb=take)  # fmt: skip
        else:
            await nc.subscribe(subject, cb=take)
        await nc.flush(timeout=max(1, round(publish.timeout)))
        if ready is not None:
            ready()
        while True:
            msg = await queue.get()
            if msg is None:
                raise ConnectionError("the connection to the bus was lost")
            headers = msg.headers or {}
            yield BusMessage(msg.subject, headers.get("Nats-Msg-Id"), headers.get("Cti-Event"),
                             bytes(msg.data))  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _read_amqp(
    publish: Publish, pattern: str, ready: Callable[[], None] | None
) -> AsyncIterator[BusMessage]:
    import aio_pika

    conn = await aio_pika.connect(publish.url, timeout=publish.timeout)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            publish.stream, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, amqp_pattern(pattern))
        if ready is not None:
            ready()
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                yield BusMessage(message.routing_key or "", message.message_id, message.type,
                                 message.body)  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
