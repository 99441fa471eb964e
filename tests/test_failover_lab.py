"""Active/standby on the real lab: two real `cti agent` processes with the same config (their
own state_dir and listen only, as on two machines) and a real Redis lease.

Who delivered what is read from each agent's own log (`-v` logs every delivery); what arrived
is what the receiver accepted (and, for one test, what JetStream stored).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_support import AgentProcess, Receiver, free_port, write_config
from tests.bus_support import Proxy, drop_stream, need_nats, need_redis, read_stream, unique
from tests.test_agent_lab import finish, lab_config, phones

pytestmark = pytest.mark.lab

TTL = 2.0
EVERY = {"call.ringing", "call.answered", "screen_pop", "call.ended"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def pair(
    lab: Any, tmp_path: Path, receiver: Receiver, lease: str, **extra: Any
) -> list[tuple[Path, dict[str, Any]]]:
    """Two configs that differ only where two machines would: state_dir and listen. (The PBX
    name is the test's own, so the lease and markers in the shared Redis are too.)"""
    out = []
    pbx = unique("lab-")
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        data = lab_config(
            lab, tmp_path, receiver.url, agent={"lease": lease, "lease_ttl": TTL, "pbx": pbx}
        )
        data["agent"]["state_dir"] = str(folder / "state")
        data["agent"]["listen"] = f"127.0.0.1:{free_port()}"
        data.update(extra)
        path = folder / "cti.toml"
        write_config(path, data)
        out.append((path, data))
    return out


def start(path: Path, data: dict[str, Any]) -> AgentProcess:
    agent = AgentProcess(path, data["agent"]["listen"], path.parent / "agent.log").start()
    agent.wait_healthy()
    return agent


def role(agent: AgentProcess) -> str:
    try:
        code, body = agent.health()
    except httpx.HTTPError:
        return "down"
    return str(body["role"]) if code == 200 else f"{body['role']} ({body['reason']})"


def wait_role(agent: AgentProcess, want: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (got := role(agent)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"role {got!r}, not {want!r}:\n{agent.text()[-3000:]}")
        time.sleep(0.02)
    return time.monotonic()


def delivered(agent: AgentProcess) -> int:
    return agent.text().count(" → delivered")


def by_caller(receiver: Receiver, caller: str) -> list[Any]:
    return [h for h in receiver.accepted if h.json.get("call", h.json).get("caller") == caller]


def check_once_per_key(receiver: Receiver) -> None:
    """Duplicates, if any, only with identical keys and bodies."""
    bodies: dict[str, set[bytes]] = {}
    for hit in receiver.accepted:
        bodies.setdefault(hit.headers["x-cti-delivery"], set()).add(hit.body)
    assert all(len(b) == 1 for b in bodies.values()), "one key, one content"


def test_only_the_holder_delivers_and_the_standby_takes_over_mid_call_when_it_is_killed(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    redis_url = need_redis()
    nats_url = need_nats()
    stream, prefix = unique("CTIF"), unique("f")
    (path_a, data_a), (path_b, data_b) = pair(
        lab, tmp_path, receiver, redis_url,
        publish=[{"url": nats_url, "stream": stream, "subject": prefix}],
    )  # fmt: skip
    phones(lab)
    a = start(path_a, data_a)
    b: AgentProcess | None = None
    try:
        wait_role(a, "active", 10)
        b = start(path_b, data_b)
        assert role(b) == "standby", "healthy (200) and standing by"
        assert b.health()[1]["lease"]["holder"] == a.health()[1]["lease"]["owner"]

        first = "+79165550301"
        lab.call("101", caller=first, caller_name="Иван Петров", talk=1.0)
        receiver.wait(lambda: receiver.of("call.ended", caller=first), 40, "first call.ended")
        finish(lab)
        assert {h.event for h in by_caller(receiver, first)} == EVERY
        time.sleep(2.0)  # the standby learns what the holder finished
        assert delivered(b) == 0, "the standby delivered nothing"
        assert b.health()[1]["outbox"]["pending"] == 0, "and knows the holder did it all"

        # mid-call: the pop is out, the call goes on; the holder dies
        second = "+79165550302"
        lab.call("101", caller=second, caller_name="Иван Петров", talk=6.0)
        receiver.wait(lambda: receiver.of("screen_pop", caller=second), 40, "second pop")
        a.kill()
        killed = time.monotonic()
        took = wait_role(b, "active", TTL + 3) - killed
        assert took <= TTL + 0.5, f"took over {took:.2f} s after the kill (ttl {TTL:g} s)"
        receiver.wait(lambda: receiver.of("call.ended", caller=second), 40, "second call.ended")
        finish(lab)
        assert delivered(b) >= 1, "the end of the call came from the new holder"

        third = "+79165550303"
        lab.call("101", caller=third, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("call.ended", caller=third), 40, "third call.ended")
        finish(lab)
        time.sleep(0.5)
        metrics = httpx.get(f"http://{b.listen}/metrics", timeout=5).text
    finally:
        if b is not None:
            b.terminate()
        a.close()
    for caller in (first, second, third):
        assert {h.event for h in by_caller(receiver, caller)} == EVERY, caller
    check_once_per_key(receiver)
    ended = receiver.of("call.ended", caller=second)[0].json
    assert ended["reason"] == "completed" and ended["answered_by"] == ["101"], "seen, not lost"
    assert "cti_lease_holder 1.0" in metrics
    assert "cti_lease_takeovers_total 1.0" in metrics
    # the bus: every key once (JetStream drops whatever the new holder sent again)
    try:
        got = read_stream(nats_url, stream)
    finally:
        drop_stream(nats_url, stream)
    keys = [g.key for g in got]
    assert len(keys) == len(set(keys))
    assert set(keys) == {h.headers["x-cti-delivery"] for h in receiver.accepted}
    assert {json.loads(g.body)["pbx"] for g in got} == {data_a["agent"]["pbx"]}


def test_a_holder_that_loses_redis_stops_delivering_and_the_other_takes_over(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    redis_url = need_redis()
    proxy = Proxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    (path_a, data_a), (path_b, data_b) = pair(lab, tmp_path, receiver, redis_url)
    data_a["agent"]["lease"] = proxy.url(redis_url)  # A reaches Redis through the proxy
    write_config(path_a, data_a)
    phones(lab)
    a = start(path_a, data_a)
    b: AgentProcess | None = None
    try:
        wait_role(a, "active", 10)
        b = start(path_b, data_b)
        assert role(b) == "standby"
        proxy.cut()
        cut = time.monotonic()
        deadline = time.monotonic() + TTL + 2
        while not role(a).startswith("standby (lease: cannot reach Redis"):
            assert time.monotonic() < deadline, role(a)
            time.sleep(0.02)
        stopped = time.monotonic()
        assert stopped - cut < TTL, "fenced before its lease could expire in Redis"
        assert a.health()[0] == 503
        wait_role(b, "active", TTL + 2)
        before = delivered(a)
        caller = "+79165550304"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        proxy.restore()  # Redis is back for A: the lease is B's now, A stays standby
        time.sleep(TTL)
        assert role(a) == "standby" and role(b) == "active"
    finally:
        if b is not None:
            b.terminate()
        a.terminate()
        proxy.close()
    assert delivered(a) == before, "the fenced agent sent nothing"
    assert {h.event for h in by_caller(receiver, caller)} == EVERY
    check_once_per_key(receiver)
    keys = [h.headers["x-cti-delivery"] for h in by_caller(receiver, caller)]
    assert len(keys) == len(set(keys))


def test_a_holder_that_loses_the_pbx_hands_the_lease_to_the_one_that_follows_it(
    lab: Any, tmp_path: Path, receiver: Receiver
) -> None:
    """A network cut between the active agent and Asterisk: it gives the lease up after the TTL
    (it can no longer see calls), and the standby, still following the PBX, delivers."""
    redis_url = need_redis()
    ami = Proxy(lab.info.ami_port)
    (path_a, data_a), (path_b, data_b) = pair(lab, tmp_path, receiver, redis_url)
    data_a["server"]["host"], data_a["server"]["port"] = "127.0.0.1", ami.port
    write_config(path_a, data_a)
    phones(lab)
    a = start(path_a, data_a)
    b: AgentProcess | None = None
    try:
        wait_role(a, "active", 10)
        b = start(path_b, data_b)
        assert role(b) == "standby"
        ami.cut()
        cut = time.monotonic()
        took = wait_role(b, "active", TTL * 3) - cut
        assert took < TTL * 2, f"{took:.2f} s"
        a.wait_log("giving it up", 5)
        before = delivered(a)
        caller = "+79165550305"
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 40, "call.ended")
        finish(lab)
        time.sleep(0.5)
    finally:
        if b is not None:
            b.terminate()
        a.terminate()
        ami.close()
    assert delivered(a) == before
    assert {h.event for h in by_caller(receiver, caller)} == EVERY
    keys = [h.headers["x-cti-delivery"] for h in by_caller(receiver, caller)]
    assert len(keys) == len(set(keys))
