"""`CoreShowChannels` + `CallTracker.reconcile` against a real Asterisk 22: a call already talking
when cti connects is attached with its caller, then followed live to its end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_tracker_reconcile import entry

from cti_cli.ami.client import AMIClient
from cti_cli.ami.reconnect import snapshot_channels
from cti_cli.calls import Answered, CallEvent, CallTracker, Ended

pytestmark = pytest.mark.lab

CALLER = "+79160000031"
NAME = "Иван Петров"


async def _logged_in(lab: Any, events: bool) -> AMIClient:
    info = lab.info
    client = AMIClient()
    await client.connect(info.ami_host, info.ami_port, timeout=10)
    await client.login(info.ami_user, info.ami_secret, events=events)
    return client


async def _wait_until_101_talks(lab: Any) -> None:
    probe = await _logged_in(lab, events=False)
    try:
        for _ in range(150):
            await asyncio.sleep(0.1)
            for item in await snapshot_channels(probe):
                if item.get("Channel", "").startswith("PJSIP/101-") and (
                    item.get("ChannelStateDesc") == "Up"
                ):
                    return
        pytest.fail("operator 101 never picked up")
    finally:
        await probe.close()


async def _scenario(lab: Any) -> tuple[list[CallEvent], list[CallEvent], list[str]]:
    await asyncio.to_thread(lab.call, "101", caller=CALLER, caller_name=NAME, talk=6.0)
    await _wait_until_101_talks(lab)
    tracker = CallTracker()  # fresh: cti starts while the call is in progress
    client = await _logged_in(lab, events=True)
    try:
        channels = await snapshot_channels(client)
        device = [c for c in channels if c.get("Channel", "").startswith("PJSIP/101-")]
        headers = [name for name, _ in device[0].headers] if device else []
        attached = tracker.reconcile(channels, time=time.time())
        mine = [e for e in attached if e.caller == CALLER]
        assert mine, f"the call was not attached: {attached!r}"
        live: list[CallEvent] = []

        async def follow() -> None:
            async for message in client.events():
                for event in tracker.feed(message):
                    if event.call_id == mine[0].call_id:
                        live.append(event)
                        if isinstance(event, Ended):
                            return

        await asyncio.wait_for(follow(), 40)
    finally:
        await client.close()
        await asyncio.to_thread(lab.wait_idle, 30)
    return mine, live, headers


def test_call_in_progress_at_connect_is_attached_then_followed(lab: Any) -> None:
    lab.phone("101", "answer")
    attached, live, headers = asyncio.run(_scenario(lab))
    # the entry has the shape the unit tests build (main/manager.c, Asterisk 22)
    assert headers == list(entry("PJSIP/101-1", "1", "6"))
    answered = [e for e in attached if isinstance(e, Answered)]
    assert [e.extension for e in answered] == ["101"]
    assert [(e.kind, getattr(e, "extension", None)) for e in attached] == [
        ("ringing", "101"),
        ("answered", "101"),
    ]
    for e in attached + live:
        assert (e.caller, e.caller_name, e.dialed) == (CALLER, NAME, "101")
        assert e.uniqueid == e.call_id == attached[0].call_id
    assert [e.kind for e in live] == ["ended"]  # no second ringing/answered from live events
    end = live[-1]
    assert isinstance(end, Ended)
    assert (end.reason, end.answered, end.answered_by, end.rang) == (
        "completed",
        True,
        ("101",),
        ("101",),
    )
    assert end.duration is not None and end.duration >= 6
