"""Plays the demo's traffic on the simulated PBX: calls start at the traffic's rate, each call's
recorded events go out at their (scaled) times, and at the end the calls in progress finish."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from random import Random

from cti_cli.demo import templates
from cti_cli.demo.pbx import SimPbx
from cti_cli.demo.scenarios import PlannedCall, Traffic
from cti_cli.demo.templates import Emission, Ids, Timing

__all__ = ["Player"]

RETRY_SECONDS = 0.5  # all the phones a call needs are busy: try again this much later
OPENING_GAP = 0.8  # seconds between the two opening calls


class Player:
    """`await player.generate(duration, stop)`, then `await player.finish(drain)`."""

    def __init__(
        self,
        pbx: SimPbx,
        traffic: Traffic,
        *,
        timing: Timing,
        rng: Random,
        clock: Callable[[], float] = time.time,
        on_call: Callable[[PlannedCall], None] | None = None,
    ) -> None:
        self.pbx = pbx
        self.traffic = traffic
        self.timing = timing
        self.ids = Ids(rng)
        self.clock = clock
        self.on_call = on_call
        self.busy: Counter[str] = Counter()
        self.started = 0
        self._fast = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()

    @property
    def in_progress(self) -> int:
        return len(self._calls)

    async def generate(self, duration: float | None, stop: asyncio.Event) -> None:
        """Start calls until `duration` seconds have passed (None: until `stop`)."""
        loop = asyncio.get_running_loop()
        end = None if duration is None else loop.time() + duration
        next_at = loop.time()
        if self.traffic.rate <= 0:  # no calls: just serve until the end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await stop.wait()
            return
        while not stop.is_set():
            now = loop.time()
            if end is not None and now >= end:
                return
            wake = next_at if end is None else min(next_at, end)
            if wake > now:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wake - now):
                        await stop.wait()
                continue
            call = self.traffic.next(frozenset(+self.busy))
            if call is None:
                next_at = loop.time() + RETRY_SECONDS
                continue
            self.start(call)
            gap = OPENING_GAP if self.started < 2 else self.traffic.gap()
            next_at = loop.time() + gap

    def start(self, call: PlannedCall, start: float | None = None) -> list[Emission]:
        """Render `call` from now and play it in the background; its events are returned."""
        emissions = templates.render(
            templates.load(call.kind.template), self.ids,
            start=self.clock() if start is None else start, ext_map=call.ext_map,
            caller=call.caller, caller_name=call.caller_name, timing=self.timing,
        )  # fmt: skip
        phones = call.phones
        self.busy.update(phones)
        self.started += 1
        if self.on_call is not None:
            self.on_call(call)
        task = asyncio.create_task(self._play(emissions, phones), name=call.kind.template)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return emissions

    async def _play(self, emissions: list[Emission], phones: frozenset[str]) -> None:
        try:
            for emission in emissions:
                delay = emission.at - self.clock()
                if delay > 0 and not self._fast.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._fast.wait()
                self.pbx.send(emission)
        finally:
            self.busy.subtract(phones)

    async def finish(self, drain: float) -> None:
        """Let the calls in progress end on their own for up to `drain` seconds, then play
        the rest of each at once: every call ends, as it would have."""
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=max(0.0, drain))
        self._fast.set()
        if self._calls:
            await asyncio.wait(set(self._calls))

    async def cancel(self) -> None:
        for task in list(self._calls):
            task.cancel()
        for task in list(self._calls):
            with contextlib.suppress(BaseException):
                await task
