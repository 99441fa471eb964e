"""The active/standby lease (cti_cli/agent/lease.py) against the real Redis of this machine."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from cti_cli.agent.lease import Lease, lease_name
from tests.bus_support import Proxy, need_redis, unique

pytestmark = pytest.mark.timeout(60)


def _redis(url: str) -> Any:
    return redis.Redis.from_url(url, decode_responses=True)


def test_one_holder_per_pbx_under_a_key_named_after_the_pbx() -> None:
    url = need_redis()
    pbx = unique("pbx-")

    async def scenario() -> tuple[bool, bool, str, str]:
        a, b = Lease(url, pbx, 2.0), Lease(url, pbx, 2.0)
        other = Lease(url, pbx + "-other", 2.0)
        try:
            held_a, held_b = await a.step(), await b.step()
            assert await other.step(), "another PBX has a lease of its own"
            assert await a.step() and not await b.step(), "renewed by the holder only"
            assert b.holder == a.owner
            return held_a, held_b, a.owner, b.owner
        finally:
            for lease in (a, b, other):
                await lease.release()
                await lease.close()

    held_a, held_b, owner_a, owner_b = asyncio.run(scenario())
    assert (held_a, held_b) == (True, False)
    assert owner_a != owner_b, "every process is an owner of its own"
    assert lease_name(pbx) == f"cti:lease:{pbx}"
    assert _redis(url).get(lease_name(pbx)) is None, "released"


def test_the_renewal_is_compare_and_set_and_never_extends_someone_elses_lease() -> None:
    url = need_redis()
    pbx = unique("pbx-")
    r = _redis(url)

    async def scenario() -> None:
        a = Lease(url, pbx, 2.0)
        try:
            assert await a.step()
            r.set(lease_name(pbx), "intruder", px=700)  # A's lease lapsed and someone took it
            assert not await a.step(), "A sees it is no longer the holder"
            assert not a.held
            assert r.get(lease_name(pbx)) == "intruder", "A did not overwrite it"
            assert r.pttl(lease_name(pbx)) <= 700, "nor extend it"
            await a.release()
            assert r.get(lease_name(pbx)) == "intruder", "nor delete it on release"
        finally:
            await a.close()

    asyncio.run(scenario())
    r.delete(lease_name(pbx))


def test_a_clean_release_hands_over_at_once_and_counts_as_a_takeover() -> None:
    url = need_redis()
    pbx = unique("pbx-")
    changes: list[bool] = []

    async def scenario() -> None:
        a, b = Lease(url, pbx, 5.0), Lease(url, pbx, 5.0, on_change=changes.append)
        try:
            assert await a.step() and not await b.step()
            await a.release()
            assert not a.held
            assert await b.step(), "no need to wait for the TTL"
            assert b.takeovers == 1 and changes == [True]
        finally:
            await b.release()
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_a_holder_cut_off_from_redis_stops_before_the_other_can_take_over() -> None:
    """Fencing: the holder stops delivering before Redis lets its lease expire, so the two
    never deliver at the same time, and the other takes over within the TTL after that."""
    url = need_redis()
    pbx = unique("pbx-")
    ttl = 1.5
    proxy = Proxy(int(url.rsplit(":", 1)[1].split("/")[0]))

    async def scenario() -> tuple[float, float, float]:
        a = Lease(proxy.url(url), pbx, ttl)
        b = Lease(url, pbx, ttl)
        runs = [asyncio.create_task(a.run())]
        try:
            deadline = time.monotonic() + 10
            while not a.held:
                assert time.monotonic() < deadline, a.error
                await asyncio.sleep(0.01)
            runs.append(asyncio.create_task(b.run()))  # B comes second: A is the holder
            await asyncio.sleep(ttl)  # a few renewals
            assert a.held and not b.held
            proxy.cut()
            cut = time.monotonic()
            overlap = False
            a_stopped = b_started = 0.0
            while time.monotonic() - cut < 3 * ttl:
                now = time.monotonic()
                if not a.held and not a_stopped:
                    a_stopped = now
                if b.held and not b_started:
                    b_started = now
                overlap = overlap or (a.held and b.held)
                await asyncio.sleep(0.005)
            assert not overlap, "never both delivering"
            assert a.error is not None, "it knows why"
            return cut, a_stopped, b_started
        finally:
            for task in runs:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await b.release()
            await a.close()
            await b.close()

    try:
        cut, a_stopped, b_started = asyncio.run(scenario())
    finally:
        proxy.close()
    assert 0 < a_stopped - cut < ttl, "stopped within the TTL of losing Redis"
    assert a_stopped < b_started, "stopped before the other started"
    assert b_started - cut < ttl * 1.5, "and the other took over soon after"


def test_outcome_markers_tell_the_standby_what_the_holder_finished() -> None:
    url = need_redis()
    pbx = unique("pbx-")

    async def scenario() -> list[tuple[int, str]]:
        a, b = Lease(url, pbx, 2.0), Lease(url, pbx, 2.0)
        try:
            a.mark("https://sd.example.org/cti?token=s3cret", "k1", "delivered")
            a.mark("nats://127.0.0.1:4222#CTI/cti", "k2", "dead")
            await a.flush_marks()
            rows = [
                (1, "https://sd.example.org/cti?token=s3cret", "k1"),
                (2, "nats://127.0.0.1:4222#CTI/cti", "k2"),
                (3, "nats://127.0.0.1:4222#CTI/cti", "k1"),  # another target: not finished
                (4, "https://sd.example.org/cti?token=s3cret", "k3"),
            ]
            return await b.peer_outcomes(rows)
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) == [(1, "delivered"), (2, "dead")]
    keys = _redis(url).keys(f"cti:sent:{pbx}:*")
    assert len(keys) == 2 and not any("s3cret" in k or "example" in k for k in keys)
    _redis(url).delete(*keys)


def test_an_agent_that_cannot_serve_the_pbx_gives_the_lease_up() -> None:
    url = need_redis()
    pbx = unique("pbx-")
    serving = {"a": True}

    async def scenario() -> None:
        a = Lease(url, pbx, 5.0, eligible=lambda: serving["a"])
        b = Lease(url, pbx, 5.0)
        try:
            assert await a.step() and not await b.step()
            serving["a"] = False  # e.g. lost its AMI connection
            assert not await a.step() and not a.held
            assert await b.step(), "released, not left to expire"
            serving["a"] = True
            assert not await a.step(), "B holds it now"
        finally:
            await b.release()
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_a_lease_cancelled_while_redis_fails_stops_at_once() -> None:
    """A cancel that arrives while a Redis call fails can reach `step` as that call's error
    (redis-py turns a cancelled read into ConnectionError; on Python 3.11 a timeout expiring at
    the same moment gives TimeoutError). `run` must stop all the same, not go on retrying: the
    agent's shutdown waits for it. Redis answering that way on cue is a fault the real one
    cannot be made to produce, hence the stand-in client."""

    class Failing:
        async def set(self, *args: Any, **kwargs: Any) -> Any:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise redis.ConnectionError("Connection closed by server.") from None

        async def get(self, *args: Any) -> Any:
            return None

        async def aclose(self) -> None:
            pass

    async def scenario() -> None:
        lease = Lease("redis://127.0.0.1:1/0", unique("pbx-"), 1.5)
        lease._redis = Failing()  # type: ignore[assignment]
        task = asyncio.create_task(lease.run())
        await asyncio.sleep(0.1)  # inside `set` now
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, "run() went on after it was cancelled"
        assert task.cancelled()

    asyncio.run(scenario())
