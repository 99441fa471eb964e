"""The event bus (`[[publish]]`, cti_cli/notify/bus.py) against the real NATS JetStream and
RabbitMQ of this machine: subjects, message ids, dedupe, confirms, `cti events tail`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cti_cli.cli.show import page_data
from cti_cli.config import Config, ConfigError, Publish
from cti_cli.notify.bus import BusDeliverer, amqp_pattern, bus_target, subject_for, token
from cti_cli.notify.outbox import Outbox
from cti_cli.notify.webhook import DeliveryResult
from tests.agent_support import write_config
from tests.bus_support import (
    AmqpTap,
    drop_stream,
    need_amqp,
    need_nats,
    read_stream,
    unique,
)

pytestmark = pytest.mark.timeout(60)


def test_subjects_are_the_pbx_the_event_and_the_login_as_safe_tokens() -> None:
    pop = {"event": "screen_pop", "operator": {"login": "i.ivanov@corp"}}
    assert subject_for("cti", "pbx1", "call.ringing", {}) == "cti.pbx1.call.ringing"
    assert subject_for("acme.cti", "10.0.0.5", "call.ended", {}) == "acme.cti.10_0_0_5.call.ended"
    assert subject_for("cti", "main", "screen_pop", pop) == "cti.main.pop.i_ivanov_corp"
    assert subject_for("cti", "main", "zammad.newCall", {}) is None
    assert [token(t) for t in ("a b", "x>", "*", "", "иван", "ok-1_2")] == [
        "a_b", "x_", "_", "_", "____", "ok-1_2",
    ]  # fmt: skip
    assert amqp_pattern("cti.>") == "cti.#" and amqp_pattern("cti.*.pop.*") == "cti.*.pop.*"


def test_a_bus_target_names_no_credentials_and_show_masks_the_url(tmp_path: Path) -> None:
    amqp = Publish(url="amqp://cti:pa55w0rd@mq.example.org:5672/prod", subject="acme.cti")
    nats = Publish(url="nats://tok:s3cret@127.0.0.1:4222")
    assert bus_target(amqp) == "amqp://mq.example.org:5672/prod#CTI/acme.cti"
    assert bus_target(nats) == "nats://127.0.0.1:4222#CTI/cti"
    config = Config.model_validate(
        {
            "publish": [amqp.model_dump(), nats.model_dump()],
            "agent": {"lease": "redis://:r3dispass@127.0.0.1:6379/0"},
        }
    )
    shown = json.dumps(page_data(config, tmp_path / "cti.toml"), ensure_ascii=False)
    for secret in ("pa55w0rd", "s3cret", "r3dispass"):
        assert secret not in shown
    assert "amqp://cti:••••••@mq.example.org:5672/prod" in shown
    # `cti show` itself, from a real config file
    path = tmp_path / "cti.toml"
    write_config(path, {"publish": [amqp.model_dump(exclude_none=True)],
                        "agent": {"lease": config.agent.lease}})  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "cti_cli", "-c", str(path), "show"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Event bus" in out.stdout and "acme.cti" in out.stdout
    assert "pa55w0rd" not in out.stdout and "r3dispass" not in out.stdout


def test_a_bad_publish_block_is_one_line_naming_the_key_without_the_password(
    tmp_path: Path,
) -> None:
    from cti_cli import config as cfg

    path = tmp_path / "cti.toml"
    write_config(path, {"publish": [{"url": "kafka://u:hunter2@h:9092", "subject": "a..b"}]})
    with pytest.raises(ConfigError) as caught:
        cfg.load(path)
    text = "\n".join(caught.value.problems)
    assert "publish[0].url: must be a nats://" in text
    assert "publish[0].subject: must be dot-separated words" in text
    assert "hunter2" not in text


# ---------------------------------------------------------------- real brokers


T0 = time.time()


def _rows(box: Outbox, target: str, call: str = "1795644810.0") -> list[tuple[str, str, bytes]]:
    """A call's ringing, pop and end in the outbox, as the agent writes them."""
    now = time.time()
    rows = [
        ("k-ring-" + call, "call.ringing",
         {"event": "call.ringing", "pbx": "lab", "call_id": call, "caller": "+79161234567",
          "caller_name": "Иван Петров", "extension": "101"}),
        ("k-pop-" + call, "screen_pop",
         {"event": "screen_pop", "pbx": "lab", "id": "k-pop-" + call,
          "call": {"call_id": call}, "operator": {"login": "ivanov", "extension": "101"},
          "open": []}),
        ("k-end-" + call, "call.ended",
         {"event": "call.ended", "pbx": "lab", "call_id": call, "reason": "completed"}),
    ]  # fmt: skip
    out = []
    for key, event, body in rows:
        raw = json.dumps(body, ensure_ascii=False).encode()
        box.put([target], key, call, event, raw, now=now, expires_at=now + 600)
        out.append((key, event, raw))
    return out


async def _deliver(
    publish: Publish, box: Outbox, target: str, want: int, timeout: float = 15.0
) -> list[DeliveryResult]:
    results: list[DeliveryResult] = []
    deliverer = BusDeliverer(publish, box, target=target, pbx="lab", on_result=results.append)
    task = asyncio.create_task(deliverer.run())
    deadline = time.monotonic() + timeout
    while sum(r.outcome == "delivered" for r in results) < want:
        assert time.monotonic() < deadline, results
        await asyncio.sleep(0.02)
    await deliverer.drain(2.0)
    await task
    return results


def test_nats_jetstream_gets_each_message_once_with_its_key_as_msg_id(tmp_path: Path) -> None:
    url = need_nats()
    stream, prefix = unique("CTIT"), unique("t")
    publish = Publish(url=url, stream=stream, subject=prefix)
    target = bus_target(publish)
    try:
        box = Outbox(tmp_path / "a.sqlite3")
        sent = _rows(box, target)
        results = asyncio.run(_deliver(publish, box, target, 3))
        assert [r.answer for r in results] == [b"", b"", b""]
        assert box.depth() == 0, "every row marked delivered"
        got = read_stream(url, stream)  # the stream was created by the deliverer
        assert [(g.key, g.subject, g.body) for g in got] == [
            ("k-ring-1795644810.0", f"{prefix}.lab.call.ringing", sent[0][2]),
            ("k-pop-1795644810.0", f"{prefix}.lab.pop.ivanov", sent[1][2]),
            ("k-end-1795644810.0", f"{prefix}.lab.call.ended", sent[2][2]),
        ], "in order, the body byte for byte"
        assert [g.event for g in got] == ["call.ringing", "screen_pop", "call.ended"]
        # the same keys again (another agent, or one killed before it marked them delivered):
        # JetStream acks them as duplicates and stores nothing new
        again = Outbox(tmp_path / "b.sqlite3")
        _rows(again, target)
        results = asyncio.run(_deliver(publish, again, target, 3))
        assert [r.answer for r in results] == [b"duplicate"] * 3
        assert len(read_stream(url, stream)) == 3
    finally:
        drop_stream(url, stream)


def test_rabbitmq_gets_persistent_confirmed_messages_with_the_key_as_message_id(
    tmp_path: Path,
) -> None:
    url = need_amqp()
    exchange, prefix = unique("cti-test-x-"), unique("t")
    publish = Publish(url=url, stream=exchange, subject=prefix)
    target = bus_target(publish)
    assert "guest" not in target
    tap = AmqpTap(url, exchange, f"{prefix}.#")
    try:
        box = Outbox(tmp_path / "a.sqlite3")
        sent = _rows(box, target)
        asyncio.run(_deliver(publish, box, target, 3))
        got = tap.take()
        assert [(g.key, g.subject, g.body, g.event) for g in got] == [
            ("k-ring-1795644810.0", f"{prefix}.lab.call.ringing", sent[0][2], "call.ringing"),
            ("k-pop-1795644810.0", f"{prefix}.lab.pop.ivanov", sent[1][2], "screen_pop"),
            ("k-end-1795644810.0", f"{prefix}.lab.call.ended", sent[2][2], "call.ended"),
        ]
        assert all(g.headers["delivery_mode"] == 2 for g in got), "persistent"
        assert all(g.headers["content_type"] == "application/json" for g in got)
    finally:
        tap.close()


def test_an_unreachable_broker_is_retried_with_backoff_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    from tests.bus_support import Proxy

    url = need_nats()
    proxy = Proxy(int(url.rsplit(":", 1)[1]))
    proxy.cut()
    stream, prefix = unique("CTIT"), unique("t")
    publish = Publish(url=proxy.url(url), stream=stream, subject=prefix, timeout=1.0)
    target = bus_target(publish)

    async def scenario() -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        deliverer = BusDeliverer(publish, box, target=target, pbx="lab",
                                 on_result=results.append, backoff_initial=0.2)  # fmt: skip
        task = asyncio.create_task(deliverer.run())
        while not any(r.outcome == "retry" for r in results):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert box.depth(target) == 3, "all still waiting in the outbox"
        proxy.restore()
        deadline = time.monotonic() + 20
        while sum(r.outcome == "delivered" for r in results) < 3:
            assert time.monotonic() < deadline, results
            await asyncio.sleep(0.05)
        await deliverer.drain(1.0)
        await task
        return results

    try:
        box = Outbox(tmp_path / "a.sqlite3")
        _rows(box, target)
        results = asyncio.run(scenario())
        retries = [r for r in results if r.outcome == "retry"]
        assert retries and all(r.error for r in retries)
        assert len(retries) < 15, "backed off, not hammered"
        assert [g.key for g in read_stream(url, stream)] == [
            "k-ring-1795644810.0", "k-pop-1795644810.0", "k-end-1795644810.0",
        ]  # fmt: skip
    finally:
        proxy.close()
        drop_stream(url, stream)


@pytest.mark.parametrize("kind", ["nats", "amqp"])
def test_cti_events_tail_reads_the_bus_back(tmp_path: Path, kind: str) -> None:
    url = need_nats() if kind == "nats" else need_amqp()
    stream, prefix = unique("CTIT" if kind == "nats" else "cti-test-x-"), unique("t")
    publish = Publish(url=url, stream=stream, subject=prefix)
    target = bus_target(publish)
    path = tmp_path / "cti.toml"
    write_config(path, {"publish": [publish.model_dump(exclude_none=True)]})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail = subprocess.Popen(
        [sys.executable, "-m", "cti_cli", "-c", str(path), "events", "tail", "--json",
         "--subject", f"{prefix}.*.pop.*", "--count", "1", "--for", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert tail.stderr is not None
        first = tail.stderr.readline()
        assert first.startswith(f"listening on {kind}"), first + tail.stderr.read()
        box = Outbox(tmp_path / "a.sqlite3")
        sent = _rows(box, target)
        asyncio.run(_deliver(publish, box, target, 3))
        out, err = tail.communicate(timeout=30)
        assert tail.returncode == 0, err
        lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == 1, "only the pop matches the pattern"
        assert lines[0]["subject"] == f"{prefix}.lab.pop.ivanov"
        assert lines[0]["id"] == "k-pop-1795644810.0"
        assert lines[0]["event"] == "screen_pop"
        assert lines[0]["body"] == json.loads(sent[1][2])
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait(5)
        if kind == "nats":
            drop_stream(url, stream)
        else:
            AmqpTap(url, stream, "#").close()
