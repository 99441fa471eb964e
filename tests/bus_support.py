"""Real brokers for bus and lease tests: NATS JetStream, RabbitMQ and Redis on this machine
(127.0.0.1:4222 / :5672 / :6379, overridable with CTI_TEST_NATS / CTI_TEST_AMQP / CTI_TEST_REDIS),
readers that take back what the agent published, and a TCP proxy a test can cut (a broker
outage while the broker itself carries on).

A service that is not there skips the test; with CTI_REQUIRE_LAB=1 (CI) it fails it, like the
lab fixtures in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

NATS_URL = os.environ.get("CTI_TEST_NATS", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("CTI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CTI_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(what: str, reason: str) -> NoReturn:
    if os.environ.get("CTI_REQUIRE_LAB") == "1":
        pytest.fail(f"{what} required (CTI_REQUIRE_LAB=1) but unavailable: {reason}",
                    pytrace=False)  # fmt: skip
    pytest.skip(f"{what} unavailable: {reason}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def need_nats() -> str:
    async def probe() -> None:
        import nats

        nc = await nats.connect(NATS_URL, allow_reconnect=False, connect_timeout=2)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 5))
    except Exception as exc:
        unavailable(f"NATS JetStream at {NATS_URL}", _describe(exc))
    return NATS_URL


def need_amqp() -> str:
    async def probe() -> None:
        import aio_pika

        conn = await aio_pika.connect(AMQP_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 5))
    except Exception as exc:
        unavailable(f"RabbitMQ at {AMQP_URL}", _describe(exc))
    return AMQP_URL


def need_redis() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", _describe(exc))
    return REDIS_URL


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Got:
    subject: str
    key: str | None
    event: str | None
    body: bytes
    headers: dict[str, Any]


def read_stream(url: str, stream: str) -> list[Got]:
    """Everything a JetStream stream holds, in order."""

    async def read() -> list[Got]:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return []
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                headers = dict(msg.headers or {})
                key, event = headers.get("Nats-Msg-Id"), headers.get("Cti-Event")
                out.append(Got(msg.subject or "", key, event, bytes(msg.data or b""), headers))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def drop_stream(url: str, stream: str) -> None:
    async def drop() -> None:
        import nats

        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:
            pass
        finally:
            await nc.close()

    asyncio.run(drop())


class AmqpTap:
    """A queue bound to a topic exchange before the test, drained afterwards."""

    def __init__(self, url: str, exchange: str, pattern: str) -> None:
        self.url, self.exchange, self.pattern = url, exchange, pattern
        self.queue = unique("cti-test-")
        asyncio.run(self._setup())

    async def _setup(self) -> None:
        import aio_pika

        conn = await aio_pika.connect(self.url, timeout=5)
        try:
            channel = await conn.channel()
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(self.queue, durable=False, auto_delete=False)
            await queue.bind(exchange, self.pattern)
        finally:
            await conn.close()

    def take(self) -> list[Got]:
        """What arrived so far (removed from the queue)."""

        async def take() -> list[Got]:
            import aio_pika

            conn = await aio_pika.connect(self.url, timeout=5)
            out = []
            try:
                channel = await conn.channel()
                queue = await channel.get_queue(self.queue, ensure=False)
                while (msg := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
                    headers = {
                        "delivery_mode": int(msg.delivery_mode or 0),
                        "content_type": msg.content_type,
                        **(msg.headers or {}),
                    }
                    out.append(Got(msg.routing_key or "", msg.message_id, msg.type,
                                   msg.body, headers))  # fmt: skip
            finally:
                await conn.close()
            return out

        return asyncio.run(take())

    def close(self) -> None:
        async def close() -> None:
            import aio_pika

            conn = await aio_pika.connect(self.url, timeout=5)
            try:
                channel = await conn.channel()
                await channel.queue_delete(self.queue)
                await channel.exchange_delete(self.exchange)
            finally:
                await conn.close()

        with contextlib.suppress(Exception):
            asyncio.run(close())


class Proxy:
    """A TCP proxy in front of a real service on 127.0.0.1 that the test can cut: open
    connections are closed and new ones refused until `restore`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = True
        self._conns: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns += [writer, up_w]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def url(self, url: str) -> str:
        """`url` with its port replaced by the proxy's."""
        return url.replace(f":{self.target_port}", f":{self.port}", 1)

    def cut(self) -> None:
        async def do() -> None:
            self.open = False
            for conn in self._conns:
                conn.close()
            self._conns.clear()

        asyncio.run_coroutine_threadsafe(do(), self._loop).result(5)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
