"""Active/standby: one lease per PBX in Redis; only the agent holding it delivers.

``[agent] lease = "redis://host:6379/0"``. Every agent of a pair (same config, own state_dir)
follows AMI, tracks calls and fills its own outbox; the holder of ``cti:lease:<pbx>`` — named
after the PBX, never after the config, which differs between the machines — delivers, the
others keep their deliverers gated.

* Acquire: ``SET cti:lease:<pbx> <owner> NX PX <ttl>``, tried every ``ttl / 10`` by a standby.
  ``owner`` is unique per process (host, pid, random), so a restarted agent is a new owner.
* Renew: every ``ttl / 3`` with a compare-and-set script (``PEXPIRE`` only if the value is still
  ours), so a holder that was paused past its expiry cannot extend a lease someone else took.
* Fencing: a renewal sent at ``t`` makes the lease ours until ``t + 0.8·ttl`` by our own
  monotonic clock — before Redis can let it expire (Redis counts ``ttl`` from when it received
  the command, after ``t``). A holder that cannot reach Redis stops handing out deliveries when
  that moment passes, whatever the network does; a request already in flight may still finish.
* Release: on a clean stop, deleted if still ours (compare-and-delete), so the standby takes
  over at its next try instead of after the TTL.

What the standby's outbox holds when it takes over: everything since it started that the old
holder also delivered, with the same deterministic keys. To keep that small, the holder writes
a marker per final outcome (``cti:sent:<pbx>:<target hash>:<key>`` = delivered | dead, 26 h) and
a standby marks those rows done in its own outbox as it goes (``peer_outcomes``), once more right
after taking over before it delivers. Anything delivered in the last moments before the holder
died (no marker yet) is delivered again, with the same key: at least once, never under two keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("cti.agent")

SAFETY = 0.8  # of the TTL: how long a successful renewal lets us deliver
MARK_TTL_MS = 26 * 3600 * 1000  # outlives any row (lifecycle rows live 24 h)
MARK_EVERY = 0.25

# PEXPIRE only while the lease is still ours
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# DEL only while the lease is still ours
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_name(pbx: str) -> str:
    return f"cti:lease:{pbx}"


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Lease:
    """One agent's view of its PBX's lease; ``held`` is what deliverers are gated on."""

    def __init__(
        self,
        url: str,
        pbx: str,
        ttl: float,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        eligible: Callable[[], bool] | None = None,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.pbx = pbx
        self.key = lease_name(pbx)
        self.ttl = ttl
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self.on_change = on_change
        self.eligible = eligible  # False: may not hold it (e.g. not following the PBX)
        self.error: str | None = None  # the last Redis problem, None once it answers again
        self.holder: str | None = None  # who holds it, as last seen
        self.takeovers = 0
        self._clock = clock
        self._valid_until = 0.0
        self._was_held = False
        self._seen_other = False
        self._released = False
        self._marks: list[tuple[str, str, str]] = []  # (target, key, outcome) to write
        wait = max(0.05, ttl / 4)
        self._redis: Any = Redis.from_url(
            url, socket_timeout=wait, socket_connect_timeout=wait, retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )  # fmt: skip
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)
        self._wait = wait

    @property
    def held(self) -> bool:
        """True only while a renewal we know succeeded is recent enough (fencing)."""
        return self._clock() < self._valid_until

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Acquire, renew, watch; until cancelled."""
        while True:
            await self.step()
            self._notice()
            held = self.held
            await asyncio.sleep(self.ttl / 3 if held else max(0.05, self.ttl / 10))

    async def step(self) -> bool:
        """One try: renew if we hold it, else acquire if free. Returns `held` afterwards."""
        started = self._clock()
        eligible = self.eligible is None or self.eligible()
        if not eligible:
            if self._valid_until > 0.0:
                log.warning("lease %s: giving it up (this agent cannot serve the PBX now)",
                            self.key)  # fmt: skip
            await self._give_up()
        try:
            async with asyncio.timeout(self._wait):
                ok = False
                if eligible and self._valid_until > 0.0:
                    ok = bool(await self._renew(keys=[self.key], args=[self.owner, self._ms]))
                if eligible and not ok:
                    ok = bool(await self._redis.set(self.key, self.owner, nx=True, px=self._ms))
                holder = self.owner if ok else await self._redis.get(self.key)
        except Exception as exc:  # Redis unreachable, slow, refusing: the lease lapses by itself
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # stopped meanwhile: a cancel that the Redis client or a timeout expiring at the
                # same moment turned into an error must still stop `run` (else it loops on)
                raise asyncio.CancelledError from exc
            if self.error is None:
                log.warning("lease %s: cannot reach Redis: %s", self.key, _describe(exc))
            self.error = _describe(exc)
            self._notice()
            return self.held
        if self.error is not None:
            log.info("lease %s: Redis answers again", self.key)
        self.error = None
        self.holder = holder
        if ok:
            self._valid_until = started + self.ttl * SAFETY
        else:
            self._valid_until = 0.0
            if holder:
                self._seen_other = True
        self._notice()
        return self.held

    @property
    def _ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def _notice(self) -> None:
        """Report a change of role (a lapse is noticed here too, after the fact)."""
        held = self.held
        if held == self._was_held:
            return
        self._was_held = held
        if held:
            if self._seen_other:
                self.takeovers += 1
            log.info("lease %s: this agent is active (%s)%s", self.key, self.owner,
                     ", took over" if self._seen_other else "")  # fmt: skip
        elif self._released:
            log.info("lease %s: released", self.key)
        else:
            why = f"Redis unreachable: {self.error}" if self.error else f"held by {self.holder}"
            log.warning("lease %s: standby, delivering nothing (%s)", self.key, why)
        if self.on_change is not None:
            self.on_change(held)

    async def release(self) -> None:
        """Give the lease up if it is still ours (a clean stop): the standby need not wait."""
        self._released = True
        await self._give_up()

    async def _give_up(self) -> None:
        had = self._valid_until > 0.0
        self._valid_until = 0.0
        if had:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._wait):
                    await self._release(keys=[self.key], args=[self.owner])
        self._notice()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    # ------------------------------------------------------------ outcome markers

    def _mark_key(self, target: str, key: str) -> str:
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]  # a URL may hold a token
        return f"cti:sent:{self.pbx}:{digest}:{key}"

    def mark(self, target: str, key: str, outcome: str) -> None:
        """Remember a final outcome for the standby (written by ``flush_marks``)."""
        self._marks.append((target, key, outcome))

    async def flush_marks(self) -> None:
        marks, self._marks = self._marks, []
        if not marks:
            return
        try:
            async with asyncio.timeout(self._wait * 2):
                pipe = self._redis.pipeline(transaction=False)
                for target, key, outcome in marks:
                    pipe.set(self._mark_key(target, key), outcome, px=MARK_TTL_MS)
                await pipe.execute()
        except Exception as exc:
            log.debug("lease %s: could not write %d markers: %s", self.key, len(marks),
                      _describe(exc))  # fmt: skip

    async def run_marks(self) -> None:
        while True:
            await asyncio.sleep(MARK_EVERY)
            await self.flush_marks()

    async def peer_outcomes(
        self, rows: Sequence[tuple[int, str, str]]
    ) -> list[tuple[int, str]]:
        """For (id, target, key) rows: (id, outcome) of those the holder already finished."""
        if not rows:
            return []
        async with asyncio.timeout(self._wait * 4):
            values = await self._redis.mget([self._mark_key(t, k) for _i, t, k in rows])
        return [(row[0], value) for row, value in zip(rows, values, strict=True) if value]
