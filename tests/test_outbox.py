"""The SQLite outbox: dedup, order per group, building rows, expiry, schema versions, SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti_cli.notify import outbox as outbox_module
from cti_cli.notify.outbox import SCHEMA_VERSION, Item, Outbox, OutboxError

ROOT = Path(__file__).resolve().parent.parent
T = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield outbox
    outbox.close()


def keys(items: list[Item]) -> list[str]:
    return [item.key for item in items]


def put(
    box: Outbox,
    key: str,
    group: str,
    *,
    targets: tuple[str, ...] = ("a",),
    body: bytes | None = b"{}",
    now: float = T,
    ttl: float = DAY,
    event: str = "call.ringing",
) -> list[str]:
    return box.put(list(targets), key, group, event, body, now=now, expires_at=now + ttl)


def test_put_is_new_once_per_target(box: Outbox) -> None:
    assert put(box, "k1", "c1", targets=("a", "b")) == ["a", "b"]
    assert put(box, "k1", "c1", targets=("a", "b")) == []
    assert put(box, "k1", "c1", targets=("a", "b", "c")) == ["c"]
    assert box.depth() == 3 and box.depth("a") == 1
    [item] = box.due("a", now=T)
    box.delivered(item.id, now=T + 1)
    assert put(box, "k1", "c1", targets=("a",)) == [], "a delivered key is still known"
    assert box.stats() == {"pending": 2, "delivered": 1, "dead": 0, "expired": 0}
    with pytest.raises(TypeError):
        box.put("a", "k2", "c1", "call.ringing", b"{}", now=T, expires_at=T + 1)


def test_due_gives_each_groups_head_oldest_first(box: Outbox) -> None:
    put(box, "a1", "A")
    put(box, "b1", "B")
    put(box, "a2", "A")
    put(box, "c1", "C")
    assert keys(box.due("a", now=T)) == ["a1", "b1", "c1"]
    assert keys(box.due("a", now=T, limit=2)) == ["a1", "b1"]
    assert keys(box.due("a", now=T, exclude_groups={"A", "C"})) == ["b1"]
    assert box.due("other", now=T) == []
    a1 = box.due("a", now=T)[0]
    assert (a1.target, a1.group, a1.event, a1.body, a1.attempts) == (
        "a",
        "A",
        "call.ringing",
        b"{}",
        0,
    )

    box.retry(a1.id, next_at=T + 10, error="HTTP 503: busy")
    assert keys(box.due("a", now=T + 9)) == ["b1", "c1"], "a retried head still blocks A"
    assert box.next_due_at("a", exclude_groups={"B", "C"}) == T + 10
    assert keys(box.due("a", now=T + 10)) == ["a1", "b1", "c1"]
    assert box.due("a", now=T + 10)[0].attempts == 1
    assert box.status(a1.id) == ("pending", "HTTP 503: busy", 1)

    box.delivered(a1.id, now=T + 10)
    assert keys(box.due("a", now=T + 10)) == ["b1", "a2", "c1"]
    b1 = box.due("a", now=T + 10)[0]
    box.dead(b1.id, reason="HTTP 404: gone", now=T + 10)
    assert box.status(b1.id) == ("dead", "HTTP 404: gone", 1)
    assert box.stats() == {"pending": 2, "delivered": 1, "dead": 1, "expired": 0}


def test_building_blocks_its_group_until_finish(box: Outbox) -> None:
    put(box, "pop", "A", body=None, event="screen_pop", ttl=60, targets=("a", "b"))
    box.put(["a"], "pop2", "B", "screen_pop", None, now=T, expires_at=T + 60, intent=b"rebuild")
    put(box, "ring", "A")
    put(box, "other", "C")
    assert keys(box.due("a", now=T)) == ["other"]
    assert box.building() == [
        ("pop", "A", "screen_pop", None),
        ("pop2", "B", "screen_pop", b"rebuild"),
    ]
    assert box.next_due_at("a", exclude_groups={"C"}) == T + 60, "a building head: its expiry"

    box.finish("pop", "A", b'{"card": 1}')
    assert keys(box.due("a", now=T)) == ["pop", "other"]
    assert keys(box.due("b", now=T)) == ["pop"]
    assert box.due("b", now=T)[0].body == b'{"card": 1}'
    assert box.building() == [("pop2", "B", "screen_pop", b"rebuild")]


def test_expired_head_does_not_block_its_group(box: Outbox) -> None:
    put(box, "pop", "A", ttl=60, event="screen_pop")
    put(box, "building", "B", ttl=60, body=None, event="screen_pop")
    put(box, "ring-a", "A")
    put(box, "ring-b", "B")
    assert box.next_due_at("a") == T
    assert box.expire(now=T + 59) == []
    gone = box.expire(now=T + 61)
    assert keys(gone) == ["pop", "building"]
    assert gone[1].body == b"", "a row that expired while building has an empty body"
    assert keys(box.due("a", now=T + 61)) == ["ring-a", "ring-b"]
    assert box.stats()["expired"] == 2
    assert box.building() == []
    box.finish("building", "B", b"late")  # too late: stays expired, nothing to send
    assert keys(box.due("a", now=T + 61)) == ["ring-a", "ring-b"]


def test_expire_by_target_and_one_row(box: Outbox) -> None:
    put(box, "k1", "A", targets=("a", "b"), ttl=5)
    put(box, "k2", "A", targets=("a",))
    assert [(i.target, i.key) for i in box.expire(now=T + 5, target="b")] == [("b", "k1")]
    assert keys(box.due("a", now=T + 5)) == ["k1"]
    box.expired(box.due("a", now=T + 5)[0].id, now=T + 5)
    assert keys(box.due("a", now=T + 5)) == ["k2"]


def test_delivered_after_the_sweep_expired_it_is_recorded(box: Outbox) -> None:
    put(box, "k1", "A", ttl=5)
    put(box, "k2", "A")
    [item] = box.due("a", now=T)
    box.expire(now=T + 6)  # the agent's sweep, while the request is in flight
    box.delivered(item.id, now=T + 6)
    assert box.status(item.id) == ("delivered", None, 1)
    assert keys(box.due("a", now=T + 6)) == ["k2"]


def test_prune_keeps_pending_and_recent(box: Outbox) -> None:
    for n in range(4):
        put(box, f"k{n}", f"G{n}")
    items = box.due("a", now=T)
    box.delivered(items[0].id, now=T)
    box.dead(items[1].id, reason="x", now=T + 100)
    box.expired(items[2].id, now=T)
    assert box.prune(now=T + 7 * DAY + 50) == 2
    assert box.stats() == {"pending": 1, "delivered": 0, "dead": 1, "expired": 0}
    assert put(box, "k0", "G0") == ["a"], "after prune a key is new again"


def test_files_are_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state" / "outbox.sqlite3"
    box = Outbox(path)
    put(box, "k", "A")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with Outbox(path) as again:
        assert again.depth() == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(OutboxError) as info:
        Outbox(path)
    message = str(info.value)
    assert str(path) in message and "99" in message and "upgrade cti" in message


def test_corrupt_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(OutboxError) as info:
        Outbox(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_forward_migrations_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        put(box, "k", "A")
    step = ("ALTER TABLE items ADD COLUMN note TEXT", "UPDATE items SET note = 'migrated'")
    monkeypatch.setattr(outbox_module, "MIGRATIONS", [*outbox_module.MIGRATIONS, step])
    monkeypatch.setattr(outbox_module, "SCHEMA_VERSION", 3)
    with Outbox(path) as box:
        assert keys(box.due("a", now=T)) == ["k"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT note FROM items").fetchall() == [("migrated",)]
    db.close()


def test_an_outbox_of_schema_1_keeps_each_calls_order(tmp_path: Path) -> None:
    """A file the previous cti wrote (schema 1: heads kept by the code, no trigger) is
    migrated at open, and its waiting calls still go out one row after the other."""
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in outbox_module.MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    for n, (key, head) in enumerate([("r1", 1), ("r2", 0), ("r3", 0)]):
        db.execute(
            "INSERT INTO items (target, key, grp, event, body, created, expires_at, next_at,"
            " head) VALUES ('a', ?, 'G', 'call.ringing', x'7b7d', ?, 1e12, 0, ?)",
            (key, T + n, head),
        )
    db.close()
    with Outbox(path) as box:
        order = []
        while due := box.due("a", now=T + 10):
            assert len(due) == 1, "one row of a call at a time"
            order.append(due[0].key)
            if due[0].key == "r2":
                box.dead(due[0].id, reason="HTTP 400", now=T + 10)
            else:
                box.delivered(due[0].id, now=T + 10)
        assert order == ["r1", "r2", "r3"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cti_cli.notify.outbox import Outbox

    box = Outbox(Path(sys.argv[1]))
    for n in range(10**7):
        body = ('{"n": %d, "name": "Иван Петров"}' % n).encode()
        box.put(["a", "b"], f"k{n}", f"call{n % 7}", "call.ringing", body,
                now=1000.0 + n, expires_at=1e12)
        sys.stdout.write(f"k{n}\\n")
        sys.stdout.flush()
    """
)


def test_every_put_that_returned_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert child.stdout is not None
    printed = [child.stdout.readline().strip() for _ in range(500)]
    os.kill(child.pid, signal.SIGKILL)
    printed += child.stdout.read().split()
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert printed[:3] == ["k0", "k1", "k2"]

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {key for (key,) in db.execute("SELECT key FROM items WHERE target = 'b'")}
    db.close()
    missing = [key for key in printed if key not in stored]
    assert not missing, f"{len(missing)} acknowledged puts lost, e.g. {missing[:3]}"
    assert len(stored) - len(printed) <= 1, "at most the put in progress is extra"
    with Outbox(path) as box:
        assert box.depth("a") == len(stored)
        heads = box.due("a", now=1e9)
        assert keys(heads) == [f"k{n}" for n in range(7)]
        assert put(box, "k0", "call0", targets=("a", "b")) == []


GROUP_CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading
    from pathlib import Path
    from cti_cli.notify.outbox import Outbox

    async def main():
        loop = asyncio.get_running_loop()
        box = Outbox(Path(sys.argv[1]), defer=loop.call_soon)
        for n in range(10**6):
            keys = [f"k{n}.{i}" for i in range(5)]  # one AMI read's worth of events
            for key in keys:
                box.put(["a"], key, f"call{n % 7}", "call.ringing", b"{}",
                        now=1000.0 + n, expires_at=1e12)
            if n % 10 == 0:
                await asyncio.to_thread(box.checkpoint)
            await asyncio.sleep(0)  # the iteration ends: its commit runs
            await asyncio.sleep(0)
            sys.stdout.write(" ".join(keys) + "\\n")  # said only once committed
            sys.stdout.flush()

    asyncio.run(main())
    """
)


def test_group_commit_keeps_every_committed_put_through_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", GROUP_CHILD, str(path)], stdout=subprocess.PIPE, env=env,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None
    printed = [key for _ in range(300) for key in child.stdout.readline().split()]
    os.kill(child.pid, signal.SIGKILL)
    printed += child.stdout.read().split()
    assert child.wait(timeout=10) == -signal.SIGKILL
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {key for (key,) in db.execute("SELECT key FROM items")}
    db.close()
    missing = [key for key in printed if key not in stored]
    assert len(printed) >= 1500 and not missing, f"{len(missing)} committed puts lost"


def test_deferred_writes_are_one_transaction_until_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    asked: list[object] = []
    box = Outbox(path, defer=asked.append)
    other = sqlite3.connect(path)
    try:
        put(box, "k1", "g")
        put(box, "k2", "g")
        assert len(asked) == 1, "one commit asked for the whole batch"
        assert keys(box.due("a", now=T)) == ["k1"], "the writer sees its own batch"
        assert other.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
        with pytest.raises(OutboxError):  # a failing write undoes only itself
            box.put(["a", object()], "k3", "g", "ev", b"{}", now=T, expires_at=T + DAY)  # type: ignore[list-item]
        box.commit()
        assert other.execute("SELECT key FROM items ORDER BY id").fetchall() == [("k1",), ("k2",)]
        put(box, "k4", "h")
        assert len(asked) == 2, "the next write opens the next batch"
    finally:
        box.close()  # commits what is open
        stored = other.execute("SELECT key FROM items ORDER BY id").fetchall()
        other.close()
    assert stored == [("k1",), ("k2",), ("k4",)]


# ---------------------------------------------------------------- against a model


@dataclass
class Model:
    group: str
    ready: bool
    next_at: float
    expires_at: float
    state: str = "pending"


OPS = ["put", "put-building", "finish", "deliver", "retry", "dead", "expire", "tick"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 3), st.integers(0, 9)), max_size=40)
)
def test_due_matches_a_plain_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    """Whatever happens, due() is each group's oldest pending row if it is ready and due."""
    box = Outbox(tmp_path_factory.mktemp("model") / "outbox.sqlite3")
    rows: dict[str, Model] = {}  # insertion order = age
    now = T
    try:
        for op, group_n, n in ops:
            group, key = f"G{group_n}", f"k{n}"
            if op in ("put", "put-building"):
                ready = op == "put"
                new = box.put(
                    ["a"],
                    key,
                    group,
                    "e",
                    b"x" if ready else None,
                    now=now,
                    expires_at=now + 5 + n,
                )
                assert new == ([] if key in rows else ["a"])
                rows.setdefault(key, Model(group, ready, now, now + 5 + n))
            elif op == "finish" and key in rows:
                box.finish(key, rows[key].group, b"x")
                if rows[key].state == "pending":
                    rows[key].ready = True
            elif op in ("deliver", "retry", "dead"):
                heads = box.due("a", now=now)
                if heads:
                    item = heads[n % len(heads)]
                    if op == "deliver":
                        box.delivered(item.id, now=now)
                        rows[item.key].state = "delivered"
                    elif op == "dead":
                        box.dead(item.id, reason="r", now=now)
                        rows[item.key].state = "dead"
                    else:
                        box.retry(item.id, next_at=now + n, error="e")
                        rows[item.key].next_at = now + n
            elif op == "expire":
                gone = {item.key for item in box.expire(now=now)}
                pending = (k for k, r in rows.items() if r.state == "pending")
                assert gone == {k for k in pending if rows[k].expires_at <= now}
                for k in gone:
                    rows[k].state = "expired"
            elif op == "tick":
                now += n

            expected: list[str] = []
            seen: set[str] = set()
            for k, r in rows.items():
                if r.state != "pending" or r.group in seen:
                    continue
                seen.add(r.group)
                if r.ready and r.next_at <= now:
                    expected.append(k)
            assert keys(box.due("a", now=now)) == expected
            assert box.depth("a") == sum(r.state == "pending" for r in rows.values())
    finally:
        box.close()


def test_the_wal_stays_bounded_when_checkpoints_race_an_always_open_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the agent's loop always has a batch open while its thread checkpoints: SQLite restarts
    # the WAL only when a writer begins after a complete checkpoint, so without the rare
    # checkpoint on the owner's thread the file grew by every commit, forever
    monkeypatch.setattr(outbox_module, "LOOP_CHECKPOINT_PAGES", 100)
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, defer=lambda commit: None)
    try:
        for n in range(1500):
            box.put(["a", "b"], f"k{n}", f"call{n % 50}", "call.ringing", b"x" * 300,
                    now=T + n, expires_at=T + DAY)  # fmt: skip
            box.checkpoint()  # the thread's, while the batch is open
            box.commit()
        wal = path.with_name(path.name + "-wal").stat().st_size
    finally:
        box.close()
    assert wal < 2 * 100 * 4096 + 512 * 1024, f"WAL grew to {wal / 2**20:.1f} MiB"
