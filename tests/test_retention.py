"""`[agent] retention` (issue 11, item 17): caller numbers do not pile up. Delivered outbox rows and
operator page history older than the retention are purged; the default is 7 days."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_operator_page import OWNERS, Clock

from cti_cli import config as cfg
from cti_cli.agent.pophub import DEFAULT_RETENTION, PopHub
from cti_cli.agent.service import Agent
from cti_cli.calls.events import Ended
from cti_cli.notify.outbox import Outbox

pytestmark = pytest.mark.timeout(30)

HOUR = 3600.0
CALLER = "+79161234567"


def test_default_retention_is_7_days() -> None:
    assert cfg.Config().agent.retention == 7 * 86400 == DEFAULT_RETENTION


def ended(call_id: str, at: float) -> Ended:
    base = (call_id, call_id, CALLER, "Иван", "200", "support")
    return Ended(*base, str(at), False, (), ("101",), "no-answer", 5)


def test_operator_history_older_than_retention_is_dropped_in_memory_and_on_disk(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "pages.json"
    hub = PopHub(path, clock=clock, retention=lambda: 2 * HOUR)
    hub.call_event(ended("old", clock.now), OWNERS)
    clock.now += 1.5 * HOUR
    hub.call_event(ended("new", clock.now), OWNERS)
    assert [h["call_id"] for h in hub.history("ivanov")] == ["new", "old"]

    clock.now += 1 * HOUR  # "old" ended 2.5 h ago, "new" 1 h ago
    assert [h["call_id"] for h in hub.history("ivanov")] == ["new"]
    assert hub.prune() >= 1
    saved = json.loads(path.read_text("utf-8"))
    assert [h["call_id"] for h in saved["operators"]["ivanov"]["history"]] == ["new"]
    # a restart does not bring it back, even from a file written before the purge
    again = PopHub(path, clock=clock, retention=lambda: 2 * HOUR)
    assert [h["call_id"] for h in again.history("ivanov")] == ["new"]

    clock.now += 2 * HOUR
    assert PopHub(path, clock=clock, retention=lambda: 2 * HOUR).history("ivanov") == []
    assert hub.prune() >= 1
    assert CALLER not in path.read_text("utf-8")


def test_agent_housekeeping_prunes_the_outbox_with_the_configured_retention(
    tmp_path: Path,
) -> None:
    now = 1_800_000_000.0
    config = cfg.Config.model_validate(
        {"agent": {"state_dir": str(tmp_path / "state"), "retention": 2 * HOUR}}
    )
    agent = Agent(tmp_path / "cti.toml", config, clock=lambda: now, install_signals=False)
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    for key, finished in (("3h-ago", now - 3 * HOUR), ("1h-ago", now - 1 * HOUR)):
        box.put(["a"], key, key, "screen_pop", b"{}", now=finished, expires_at=finished + 60)
        [item] = box.due("a", now=finished)
        box.delivered(item.id, now=finished)
    agent.outbox = box

    async def one_round() -> None:
        task = asyncio.create_task(agent._housekeeping())
        await asyncio.sleep(1.3)
        task.cancel()

    asyncio.run(one_round())
    assert box.stats()["delivered"] == 1  # 7 days would have kept both
    box.close()
