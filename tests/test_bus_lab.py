"""`[[publish]]` end to end: real lab calls through a real `cti agent` process onto the real
NATS JetStream and RabbitMQ of this machine, read back by test consumers.

The webhook receiver is the oracle: whatever keys the agent delivered there, the bus must carry
too, with the same body byte for byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent_support import AgentProcess, Receiver
from tests.bus_support import (
    AmqpTap,
    Got,
    Proxy,
    drop_stream,
    need_amqp,
    need_nats,
    read_stream,
    unique,
)
from tests.test_agent_lab import finish, lab_config, phones, start_agent

pytestmark = pytest.mark.lab


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def webhook_bodies(receiver: Receiver, caller: str) -> dict[str, bytes]:
    """Delivery key → body, for every webhook the receiver accepted for this caller's call."""
    out: dict[str, bytes] = {}
    for hit in receiver.accepted:
        if hit.json.get("call", hit.json).get("caller") == caller:
            out[hit.headers["x-cti-delivery"]] = hit.body
    return out


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Bus:
    """One `[[publish]]` block of a test, with its reader."""

    def __init__(self, kind: str, url: str | None = None) -> None:
        self.kind = kind
        self.real_url = need_nats() if kind == "nats" else need_amqp()
        self.url = url or self.real_url
        self.stream = unique("CTIL" if kind == "nats" else "cti-test-x-")
        self.prefix = unique("l")
        pattern = f"{self.prefix}.#"
        self.tap = AmqpTap(self.real_url, self.stream, pattern) if kind == "amqp" else None
        self.got: list[Got] = []

    def block(self) -> dict[str, Any]:
        return {"url": self.url, "stream": self.stream, "subject": self.prefix}

    def read(self) -> list[Got]:
        if self.tap is None:
            self.got = read_stream(self.real_url, self.stream)
        else:
            self.got += self.tap.take()
        return self.got

    def keys(self) -> set[str]:
        return {g.key for g in self.read() if g.key}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
        else:
            drop_stream(self.real_url, self.stream)


def test_a_lab_call_arrives_on_nats_and_rabbitmq_once_per_key_with_the_webhook_body(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    buses = [Bus("nats"), Bus("amqp")]
    data = lab_config(lab, tmp_path, receiver.url)
    data["publish"] = [bus.block() for bus in buses]
    phones(lab)
    agent = start_agent(tmp_path, data)
    caller = "+79165550201"
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        expected = webhook_bodies(receiver, caller)
        for bus in buses:
            wait_for(lambda b=bus: b.keys() >= set(expected), 20, f"{bus.kind} messages")
        time.sleep(0.5)  # anything late (a duplicate) would arrive now
    finally:
        agent.terminate()
        for bus in buses:
            bus.read()
            bus.close()
    assert len(expected) >= 4, expected  # ringing, answered, the pop, ended
    for bus in buses:
        keys = [g.key for g in bus.got]
        assert len(keys) == len(set(keys)), f"{bus.kind}: each key once"
        assert {g.key: g.body for g in bus.got} == expected, f"{bus.kind}: the webhook bodies"
        subjects = {g.subject for g in bus.got}
        p = bus.prefix
        assert subjects == {f"{p}.lab.call.ringing", f"{p}.lab.call.answered",
                            f"{p}.lab.pop.ivanov", f"{p}.lab.call.ended"}, subjects  # fmt: skip
        order = [g.subject.rsplit(".", 1)[1] for g in bus.got if ".call." in g.subject]
        assert order == ["ringing", "answered", "ended"], "in call order"
        assert all(json.loads(g.body)["pbx"] == "lab" for g in bus.got)
        assert all(g.event == json.loads(g.body)["event"] for g in bus.got)
    amqp = buses[1].got
    assert all(g.headers["delivery_mode"] == 2 for g in amqp), "persistent messages"


@pytest.mark.parametrize("kind", ["nats", "amqp"])
def test_agent_killed_after_the_broker_ack_before_marking_delivered_resends_the_same_key(
    lab: Any, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """SIGKILL exactly between the broker's ack and the outbox commit (CTI_TEST_FAULT): the
    restarted agent publishes that message again with the same key. JetStream drops it (its
    duplicate window); RabbitMQ delivers it twice, identical, for the consumer to drop."""
    bus = Bus(kind)
    data = lab_config(lab, tmp_path, receiver.url)
    data["publish"] = [bus.block()]
    phones(lab)
    monkeypatch.setenv("CTI_TEST_FAULT", "kill-after-publish")
    agent = start_agent(tmp_path, data)
    monkeypatch.delenv("CTI_TEST_FAULT")
    caller = "+79165550202" if kind == "nats" else "+79165550203"
    again: AgentProcess | None = None
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=3.0)
        assert agent.proc is not None
        assert agent.proc.wait(30) == -9, "killed itself right after the first publish"
        assert len(bus.read()) == 1, "the broker had it"
        again = AgentProcess(agent.config, agent.listen, agent.log).start()
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        expected = webhook_bodies(receiver, caller)
        wait_for(lambda: bus.keys() >= set(expected), 20, "every key on the bus")
        time.sleep(0.5)
    finally:
        if again is not None:
            again.terminate()
        agent.close()
        bus.read()
        bus.close()
    first = bus.got[0]
    keys = [g.key for g in bus.got]
    assert set(keys) == set(expected)
    if kind == "nats":
        assert len(keys) == len(set(keys)), "JetStream stored each key once"
        assert "JetStream dropped the duplicate" in agent.text(), "the resend did happen"
    else:
        repeats = [g for g in bus.got if g.key == first.key]
        assert len(repeats) == 2, "at least once: the message published before the kill came again"
        assert {g.body for g in repeats} == {first.body}, "identical, same message_id"
        assert len(keys) == len(set(keys)) + 1, "and nothing else twice"


@pytest.mark.parametrize("kind", ["nats", "amqp"])
def test_broker_down_the_outbox_retries_and_delivers_everything_when_it_is_back(
    lab: Any, tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    real = need_nats() if kind == "nats" else need_amqp()
    proxy = Proxy(int(real.rstrip("/").rsplit(":", 1)[1]))
    bus = Bus(kind, url=proxy.url(real))
    data = lab_config(lab, tmp_path, receiver.url)
    data["publish"] = [{**bus.block(), "timeout": 2.0}]
    phones(lab)
    agent = start_agent(tmp_path, data)
    caller = "+79165550204" if kind == "nats" else "+79165550205"
    try:
        proxy.cut()  # the broker is gone: connections refused
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        agent.wait_log("will retry", 20)
        code, health = agent.health()
        assert code == 503 and "event bus" in health["reason"], health
        assert bus.read() == []
        proxy.restore()
        expected = webhook_bodies(receiver, caller)
        wait_for(lambda: bus.keys() >= set(expected), 40, "every key on the bus")
        time.sleep(0.5)
        agent.wait_healthy(10)
    finally:
        agent.terminate()
        proxy.close()
        bus.read()
        bus.close()
    keys = [g.key for g in bus.got]
    assert len(keys) == len(set(keys)) and set(keys) == set(expected)
    assert {g.key: g.body for g in bus.got} == expected
    order = [g.subject.rsplit(".", 1)[1] for g in bus.got if ".call." in g.subject]
    assert order == ["ringing", "answered", "ended"], "still in call order"


def test_two_agents_for_two_pbx_names_publish_distinct_keys_and_subjects(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """Several PBXs, the supported way: one agent per PBX, each its own `[agent] pbx`, state_dir
    and listen, all on one bus. (Both follow the one lab PBX here, so the same call is seen
    twice — under two names, with keys that cannot collide.)"""
    bus = Bus("nats")
    agents = []
    phones(lab)
    try:
        for name in ("east", "west"):
            folder = tmp_path / name
            folder.mkdir()
            data = lab_config(lab, folder, receiver.url, agent={"pbx": name})
            data["publish"] = [bus.block()]
            agents.append(start_agent(folder, data))
        caller = "+79165550206"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: len(receiver.of("call.ended", caller=caller)) == 2, 40, "2 ends")
        finish(lab)
        wait_for(lambda: len(bus.keys()) >= len(webhook_bodies(receiver, caller)), 20, "bus")
        time.sleep(0.5)
    finally:
        for agent in agents:
            agent.terminate()
        bus.read()
        bus.close()
    by_pbx: dict[str, set[str]] = {"east": set(), "west": set()}
    for got in bus.got:
        pbx = got.subject.split(".")[1]
        assert json.loads(got.body)["pbx"] == pbx
        assert got.key is not None
        by_pbx[pbx].add(got.key)
    assert by_pbx["east"] and by_pbx["west"]
    assert not by_pbx["east"] & by_pbx["west"], "no key shared between the PBXs"
    assert len(by_pbx["east"]) == len(by_pbx["west"]), "the same events, under each name"
    assert set(webhook_bodies(receiver, caller)) == by_pbx["east"] | by_pbx["west"]
