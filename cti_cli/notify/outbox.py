"""The durable outbox: every message for every webhook, kept in SQLite until it is delivered.

One file, ``<state_dir>/outbox.sqlite3`` (folder created mode 0700, file mode 0600; SQLite gives
its ``-wal``/``-shm`` files the same mode). One row per (message, target):

* ``key`` — the delivery key, unique per target. Putting a key a target already has is a no-op
  (``put`` leaves that target out of what it returns), so a reconnect or a restart never pops a
  card twice. Rows are kept after delivery until ``prune`` (7 days by default), which is the
  window over which duplicates are recognised.
* ``grp`` — the call id. Within a (target, group) rows are delivered strictly in insertion
  order: only the group's oldest pending row, its *head*, is ever handed out. A head whose body is
  still NULL (a pop whose rule has not finished, *building*) blocks the group until ``finish``;
  a head past ``expires_at`` is marked expired by ``expire`` and the next row takes its place.
* ``state`` — pending, delivered, dead or expired; ``attempts``, ``next_at``, ``last_error``,
  ``delivered_at``, ``finished_at`` (when it left pending; what ``prune`` looks at).

Durability: WAL journal with ``synchronous=NORMAL``. By default every write is one committed
transaction before it returns, written into the WAL with write(2): it survives the process
being killed at any moment (SIGKILL, OOM) because the data is in the OS page cache. It is not
fsynced per commit, so a power loss or kernel crash may lose the last few transactions (the
database stays consistent); that trade buys a put in tens of microseconds instead of an fsync.

Group commit (``Outbox(path, defer=loop.call_soon)``, the agent): writes join one open
transaction (each in its own savepoint, so a failed write still undoes only itself) and
``defer(commit)`` is asked once to commit it — the agent's loop commits at the end of the
iteration that read the AMI events, so everything decoded from one socket read, and every
outcome of a burst of webhook answers, costs one commit instead of one each. An event that
was read but not yet committed when the process is killed is lost exactly as if the kill had
come before the read (the reconcile after restart takes it from there); a delivery outcome not
yet committed means one more, identical, delivery after restart (at least once). Readers on the
same connection see the open transaction; other processes see it a loop iteration later. A
failed deferred commit is kept in ``commit_error`` for the owner to report.

Time is always passed in (``now``), never read here, so callers and tests control it. The class
is meant for one thread (the agent's asyncio loop) and keeps one connection.

Schema versions live in ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes version n to n + 1.
A file written by a newer cti (a version beyond the list) is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FILENAME = "outbox.sqlite3"
STATES = ("pending", "delivered", "dead", "expired")

MIGRATIONS: list[tuple[str, ...]] = [
    # 0 → 1
    (
        """CREATE TABLE items (
            id           INTEGER PRIMARY KEY,
            target       TEXT    NOT NULL,
            key          TEXT    NOT NULL,
            grp          TEXT    NOT NULL,
            event        TEXT    NOT NULL,
            body         BLOB,
            intent       BLOB,
            created      REAL    NOT NULL,
            expires_at   REAL    NOT NULL,
            state        TEXT    NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'delivered', 'dead', 'expired')),
            head         INTEGER NOT NULL DEFAULT 0,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_at      REAL    NOT NULL,
            last_error   TEXT,
            delivered_at REAL,
            finished_at  REAL,
            UNIQUE (key, target)
        )""",
        "CREATE INDEX items_group ON items (target, grp, id) WHERE state = 'pending'",
        "CREATE INDEX items_heads ON items (target, id) WHERE state = 'pending' AND head = 1",
        "CREATE INDEX items_expiry ON items (expires_at) WHERE state = 'pending'",
        "CREATE INDEX items_finished ON items (finished_at) WHERE state != 'pending'",
    ),
    # 1 → 2: a row that leaves pending hands the head to its group's next pending row inside
    # the same statement (SQLite runs the trigger in C): one statement per delivery outcome
    # instead of four, and no write can leave a group without its head.
    (
        """CREATE TRIGGER items_next_head AFTER UPDATE OF state ON items
        WHEN OLD.state = 'pending' AND NEW.state != 'pending'
        BEGIN
            UPDATE items SET head = 1 WHERE head = 0 AND id = (SELECT MIN(id) FROM items
                WHERE target = NEW.target AND grp = NEW.grp AND state = 'pending');
        END""",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

# a new row is its group's head when the group has no pending row yet
_PUT = (
    "INSERT OR IGNORE INTO items"
    " (target, key, grp, event, body, intent, created, expires_at, next_at, head)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NOT EXISTS (SELECT 1 FROM items"
    " WHERE target = ? AND grp = ? AND state = 'pending'))"
)
LOOP_CHECKPOINT_PAGES = 8000  # ≈ 32 MiB of WAL between checkpoints on the owner's thread
_COLUMNS = "id, target, key, grp, event, body, created, expires_at, attempts"


class OutboxError(Exception):
    """The outbox file cannot be used; the message is one line naming the file."""


class OutboxUnwritable(OutboxError):
    """The disk refuses to write the outbox (full, read-only, I/O error, no permission): the
    file is not damaged. ``reason`` is SQLite's or the OS's words for it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# SQLite's primary result codes for a disk that refuses writes (not a damaged database)
_UNWRITABLE = {3, 8, 10, 13, 14}  # PERM, READONLY, IOERR, FULL, CANTOPEN


@dataclass(frozen=True)
class Item:
    """One message for one target. ``body`` is ``b""`` for a row that expired while building."""

    id: int
    target: str
    key: str
    group: str
    event: str
    body: bytes
    created: float
    expires_at: float
    attempts: int


Row = tuple[int, str, str, str, str, bytes | None, float, float, int]


def _item(row: Row) -> Item:
    id_, target, key, group, event, body, created, expires_at, attempts = row
    return Item(id_, target, key, group, event, bytes(body or b""), created, expires_at, attempts)


def _not_in(groups: Collection[str]) -> tuple[str, list[str]]:
    if not groups:
        return "", []
    groups = list(groups)
    return f" AND grp NOT IN ({', '.join('?' * len(groups))})", groups


class Outbox:
    def __init__(
        self, path: Path, *, defer: Callable[[Callable[[], None]], object] | None = None
    ) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._defer = defer
        self._open_tx = False  # a deferred transaction is open, its commit asked for
        self._rolled_back = False  # SQLite dropped an open batch: the next commit says so
        self.commit_error: OutboxError | None = None  # the last deferred commit that failed
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing = threading.Lock()  # close() waits for a checkpoint in a thread
        _prepare(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox: {exc}") from None
        try:
            self._open(db)
        except sqlite3.Error as exc:
            db.close()
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _UNWRITABLE:
                raise OutboxUnwritable(f"{self.path}: cannot write the outbox: {exc}",
                                       str(exc)) from None  # fmt: skip
            raise OutboxError(
                f"{self.path}: not a readable outbox database ({exc}); "
                "move it away to start with an empty outbox"
            ) from None
        except BaseException:
            db.close()
            raise
        self._db = db
        self._identity = _identity(self.path)

    def file_changed(self) -> str | None:
        """"removed" or "replaced" when the file at ``path`` is no longer the one open (SQLite
        keeps writing to the open one, which a restart would not find); else None."""
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            return "removed"
        except OSError:  # e.g. the folder is now unreadable: not a change we can tell
            return None
        return None if now == self._identity else "replaced"

    def rewrite(self) -> None:
        """After ``file_changed() == "removed"``: write the open database to ``path`` again (its
        folder too) and go on with that file; every row, pending or done, is kept."""
        self.commit()
        _prepare(self.path)
        try:
            new = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutboxUnwritable(f"{self.path}: cannot write the outbox: {exc}",
                                   str(exc)) from None  # fmt: skip
        try:
            self.db.backup(new)
            self._open(new)
        except sqlite3.Error as exc:
            new.close()
            raise OutboxUnwritable(f"{self.path}: cannot write the outbox: {exc}",
                                   str(exc)) from None  # fmt: skip
        with self._checkpointing:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            old, self._db = self._db, new
        if old is not None:
            old.close()
        self._identity = _identity(self.path)

    def _open(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"{self.path}: outbox schema version {version} is newer than this cti knows "
                f"({SCHEMA_VERSION}); upgrade cti"
            )
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL").fetchone()
        db.execute("PRAGMA synchronous = NORMAL")
        if self._defer is not None:
            # A checkpoint fsyncs the database file: not after every ~1,000 pages inside a
            # commit on the agent's loop. The owner calls `checkpoint` from a thread instead;
            # this rarer one on the loop is what lets the WAL start over (a writer restarts it
            # only when every frame has been copied back, never true while the thread's
            # checkpoint races an always-open batch) and finds little left to copy.
            db.execute(f"PRAGMA wal_autocheckpoint = {LOOP_CHECKPOINT_PAGES}")
        for step in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step + 1}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        db.execute("SELECT 1 FROM items LIMIT 0").fetchall()

    # ------------------------------------------------------------ plumbing

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"{self.path}: the outbox is closed")
        return self._db

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        try:
            yield db
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from None

    @contextmanager
    def _write(self, *, single: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (or a part of the deferred one). ``single``: the body runs one
        statement, which SQLite already undoes by itself when it fails, so it needs no
        savepoint of its own (two statements fewer for the commonest writes)."""
        if self._defer is not None:
            with self._deferred_write(single) as db:
                yield db
            return
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _deferred_write(self, single: bool = False) -> Iterator[sqlite3.Connection]:
        assert self._defer is not None
        with self._guard() as db:
            if not self._open_tx:
                db.execute("BEGIN IMMEDIATE")
                self._open_tx = True
                self._defer(self._commit_deferred)
            if not single:
                db.execute("SAVEPOINT w")
            try:
                yield db
            except BaseException:
                if not db.in_transaction:  # SQLite rolled the whole batch back (disk full, I/O)
                    self._open_tx = False
                    self._rolled_back = True  # say so at commit
                elif not single:
                    db.execute("ROLLBACK TO w")
                    db.execute("RELEASE w")
                raise
            if not single:
                db.execute("RELEASE w")

    def _write1(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        """``with self._write(single=True) as db: db.execute(sql, params)`` without the three
        generator context managers: the agent's every put and delivery outcome comes here, a
        thousand times a second under load."""
        if self._defer is None:
            with self._write(single=True) as db:
                return db.execute(sql, params)
        db = self.db
        try:
            if not self._open_tx:
                db.execute("BEGIN IMMEDIATE")
                self._open_tx = True
                self._defer(self._commit_deferred)
            try:
                return db.execute(sql, params)
            except BaseException:
                if not db.in_transaction:  # SQLite rolled the whole batch back (disk full, I/O)
                    self._open_tx = False
                    self._rolled_back = True  # say so at commit
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from None

    def _commit_deferred(self) -> None:
        """The deferred commit (``defer`` calls it); a failure is kept in ``commit_error``
        and the transaction rolled back (what it held was never handed out)."""
        try:
            self.commit()
        except OutboxError as exc:
            self.commit_error = exc

    def commit(self) -> None:
        """Commit the open deferred transaction now (no-op when there is none). OutboxError
        when it cannot be saved, or when SQLite already rolled it back: its writes are lost."""
        if self._db is None:
            return
        lost, self._rolled_back = self._rolled_back, False
        if self._open_tx:
            self._open_tx = False
            if not self._db.in_transaction:
                lost = True
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise OutboxError(f"{self.path}: cannot save to the outbox: {exc}") from None
        if lost:
            raise OutboxError(
                f"{self.path}: cannot save to the outbox: SQLite rolled the open batch back"
            )
        self.commit_error = None

    @property
    def uncommitted(self) -> bool:
        """A deferred transaction is open: ``commit`` has something to save."""
        return (self._open_tx or self._rolled_back) and self._db is not None

    def touch(self) -> None:
        """A write that always reaches the disk (the header's schema version, unchanged): the
        probe for a disk that refused writes; with ``defer`` it fails at the commit."""
        with self._write() as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _ensure_head(db: sqlite3.Connection, target: str, group: str) -> None:
        """Make the group's oldest pending row its head (idempotent)."""
        db.execute(
            "UPDATE items SET head = 1 WHERE head = 0 AND id = (SELECT MIN(id) FROM items"
            " WHERE target = ? AND grp = ? AND state = 'pending')",
            (target, group),
        )

    def _leave_pending(
        self, item_id: int, sets: str, params: Sequence[object], states: str = "('pending')"
    ) -> bool:
        """One row out of pending; the trigger ``items_next_head`` moves its group's head. True
        when it did: the group has a next row (the deliverer need not look otherwise)."""
        before = self.db.total_changes
        self._write1(f"UPDATE items SET {sets} WHERE id = ? AND state IN {states}",
                     (*params, item_id))  # fmt: skip
        return self.db.total_changes - before > 1

    # ------------------------------------------------------------ writing

    def put(
        self,
        targets: Sequence[str],
        key: str,
        group: str,
        event: str,
        body: bytes | None,
        *,
        now: float,
        expires_at: float,
        intent: bytes | None = None,
    ) -> list[str]:
        """Queue a message for each target (committed before returning, or with the deferred
        transaction); the targets for which it was new (a key a target already has is
        skipped). ``body=None``: still building."""
        if isinstance(targets, str):
            raise TypeError("targets must be a sequence of target names, not one string")
        if len(targets) == 1:  # the common case: one statement, no savepoint
            target = targets[0]
            cursor = self._write1(_PUT, (target, key, group, event, body, intent, now,
                                         expires_at, now, target, group))  # fmt: skip
            return [target] if cursor.rowcount > 0 else []
        new: list[str] = []
        with self._write() as db:
            for target in targets:
                cursor = db.execute(_PUT, (target, key, group, event, body, intent, now,
                                           expires_at, now, target, group))  # fmt: skip
                if cursor.rowcount > 0:
                    new.append(target)
        return new

    def finish(self, key: str, group: str, body: bytes) -> None:
        """Fill the body of a building message, for all its targets."""
        self._write1(
            "UPDATE items SET body = ? WHERE key = ? AND grp = ? AND body IS NULL"
            " AND state = 'pending'",
            (body, key, group),
        )

    def cancel(self, key: str, group: str, reason: str, *, now: float) -> None:
        """Drop a message still building (the rule skipped the pop) for all its targets; the
        group's next row becomes its head. Kept as `expired` so the key stays known."""
        with self._write(single=True) as db:  # the next rows become heads (items_next_head)
            db.execute(
                "UPDATE items SET state = 'expired', head = 0, finished_at = ?, last_error = ?"
                " WHERE key = ? AND grp = ? AND state = 'pending' AND body IS NULL",
                (now, reason, key, group),
            )

    def delivered(self, item_id: int, *, now: float) -> bool:
        """Mark a row delivered; True when its group's next row became the head."""
        # A row the sweep expired while its request was in flight did arrive: say so.
        return self._leave_pending(
            item_id,
            "state = 'delivered', attempts = attempts + 1, delivered_at = ?, finished_at = ?",
            (now, now),
            states="('pending', 'expired')",
        )

    def retry(self, item_id: int, *, next_at: float, error: str) -> None:
        self._write1(
            "UPDATE items SET attempts = attempts + 1, next_at = ?, last_error = ?"
            " WHERE id = ? AND state = 'pending'",
            (next_at, error, item_id),
        )

    def dead(self, item_id: int, *, reason: str, now: float) -> bool:
        return self._leave_pending(
            item_id,
            "state = 'dead', attempts = attempts + 1, last_error = ?, finished_at = ?",
            (reason, now),
        )

    def expired(self, item_id: int, *, now: float) -> bool:
        """Mark one pending row expired (the deliverer's check just before sending)."""
        return self._leave_pending(item_id, "state = 'expired', finished_at = ?", (now,))

    def expire(self, *, now: float, target: str | None = None) -> list[Item]:
        """Pending rows (building or not) whose ``expires_at`` has come → expired; returned."""
        where = "state = 'pending' AND expires_at <= ?"
        if target is not None:
            where += " AND target = ?"
        params: tuple[object, ...] = (now,) if target is None else (now, target)
        with self._write() as db:
            rows: list[Row] = db.execute(
                f"SELECT {_COLUMNS} FROM items INDEXED BY items_expiry WHERE {where} ORDER BY id",
                params,
            ).fetchall()
            if not rows:
                return []
            db.execute(  # each group's next row becomes its head (items_next_head)
                f"UPDATE items INDEXED BY items_expiry SET state = 'expired', finished_at = ?"
                f" WHERE {where}",
                (now, *params),
            )
        return [_item(row) for row in rows]

    def prune(self, *, now: float, keep: float = 7 * 86400) -> int:
        """Delete delivered/dead/expired rows that left pending more than ``keep`` s ago."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM items WHERE state != 'pending' AND finished_at < ?", (now - keep,)
            )
            return cursor.rowcount

    def checkpoint(self) -> None:
        """Copy the WAL back into the database file (PASSIVE: never waits for writers). Safe
        to call from another thread: it uses a connection of its own."""
        with self._checkpointing:
            if self._db is None:
                return
            try:
                if self._checkpointer is None:
                    self._checkpointer = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False
                    )
                    self._checkpointer.execute("PRAGMA busy_timeout = 1000")
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot checkpoint the outbox: {exc}") from None

    def close(self) -> None:
        with self._checkpointing:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        if self._db is not None:
            with contextlib.suppress(OutboxError):
                self.commit()
            self._db.close()
            self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def building(self, *, now: float | None = None) -> list[tuple[str, str, str, bytes | None]]:
        """(key, group, event, intent) of each message still building, oldest first; with
        `now`, only those not yet expired (an old pop is not worth a rule run at start)."""
        live = "" if now is None else " AND expires_at > ?"
        with self._guard() as db:
            rows = db.execute(
                "SELECT key, grp, event, MAX(intent) FROM items"
                f" WHERE state = 'pending' AND body IS NULL{live} GROUP BY key, grp"
                " ORDER BY MIN(id)",
                () if now is None else (now,),
            ).fetchall()
        return [(k, g, e, None if i is None else bytes(i)) for k, g, e, i in rows]

    def due(
        self,
        target: str,
        *,
        now: float,
        limit: int = 64,
        exclude_groups: Collection[str] = (),
    ) -> list[Item]:
        """Each group's oldest pending row, if it is ready (has a body) and ``next_at <= now``;
        oldest first, at most ``limit``, groups in ``exclude_groups`` left out."""
        extra, groups = _not_in(exclude_groups)
        try:
            rows: list[Row] = self.db.execute(
                f"SELECT {_COLUMNS} FROM items WHERE target = ? AND state = 'pending'"
                f" AND head = 1 AND body IS NOT NULL AND next_at <= ?{extra} ORDER BY id LIMIT ?",
                (target, now, *groups, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from None
        return [_item(row) for row in rows]

    def next_due_at(self, target: str, *, exclude_groups: Collection[str] = ()) -> float | None:
        """When something next needs doing for ``target``: a head's ``next_at``, or its
        ``expires_at`` when that is sooner or the head is still building; None when idle."""
        extra, groups = _not_in(exclude_groups)
        with self._guard() as db:
            value = db.execute(
                "SELECT MIN(CASE WHEN body IS NULL THEN expires_at"
                " ELSE MIN(next_at, expires_at) END) FROM items"
                f" WHERE target = ? AND state = 'pending' AND head = 1{extra}",
                (target, *groups),
            ).fetchone()[0]
        return None if value is None else float(value)

    def pending_keys(
        self, targets: Collection[str], *, after: int = 0, limit: int = 500
    ) -> list[tuple[int, str, str]]:
        """(id, target, key) of pending rows with a body, for these targets, id > ``after``,
        oldest first: what a standby agent checks against what the active one delivered."""
        if not targets:
            return []
        marks = ", ".join("?" for _ in targets)
        with self._guard() as db:
            rows = db.execute(
                "SELECT id, target, key FROM items WHERE state = 'pending' AND body IS NOT NULL"
                f" AND target IN ({marks}) AND id > ? ORDER BY id LIMIT ?",
                (*targets, after, limit),
            ).fetchall()
        return [(int(i), str(t), str(k)) for i, t, k in rows]

    def depth(self, target: str | None = None) -> int:
        """Pending rows (building included), for one target or all."""
        with self._guard() as db:
            if target is None:
                row = db.execute("SELECT COUNT(*) FROM items WHERE state = 'pending'").fetchone()
            else:
                row = db.execute(
                    "SELECT COUNT(*) FROM items WHERE target = ? AND state = 'pending'", (target,)
                ).fetchone()
        return int(row[0])

    def stats(self) -> dict[str, int]:
        """Row counts by state (every state present, 0 when none)."""
        counts = dict.fromkeys(STATES, 0)
        with self._guard() as db:
            for state, count in db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
                counts[state] = int(count)
        return counts

    # ------------------------------------------------------------ admin (`cti outbox`)

    def rows(
        self, states: Collection[str] = ("pending",), *, limit: int = 200
    ) -> list[dict[str, object]]:
        """Rows in these states, oldest first, as plain data for listing (no body)."""
        marks = ", ".join("?" for _ in states)
        with self._guard() as db:
            cursor = db.execute(
                "SELECT id, target, key, grp, event, state, attempts, created, next_at,"
                " expires_at, last_error, body IS NULL FROM items"
                f" WHERE state IN ({marks}) ORDER BY id LIMIT ?",
                (*states, limit),
            )
            names = [d[0] for d in cursor.description]
            names[-1] = "building"
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def row(self, item_id: int) -> dict[str, object] | None:
        """One row, body and intent included."""
        with self._guard() as db:
            cursor = db.execute("SELECT * FROM items WHERE id = ?", (item_id,))
            found = cursor.fetchone()
            if found is None:
                return None
            return dict(zip([d[0] for d in cursor.description], found, strict=True))

    def requeue(self, item_ids: Collection[int] | None, *, now: float) -> int:
        """Dead (or expired) rows back to pending, due now; `None` = every dead row. Each group's
        head is recomputed so order within a call still holds. Returns how many."""
        with self._write() as db:
            if item_ids is None:
                found = db.execute(
                    "SELECT id, target, grp FROM items WHERE state = 'dead'"
                ).fetchall()
            else:
                marks = ", ".join("?" for _ in item_ids)
                found = db.execute(
                    f"SELECT id, target, grp FROM items WHERE id IN ({marks})"
                    " AND state IN ('dead', 'expired')",
                    tuple(item_ids),
                ).fetchall()
            for item_id, _target, _group in found:
                db.execute(
                    "UPDATE items SET state = 'pending', head = 0, next_at = ?, attempts = 0,"
                    " finished_at = NULL, expires_at = MAX(expires_at, ?) WHERE id = ?",
                    (now, now + 3600, item_id),
                )
            for target, group in {(t, g) for _i, t, g in found}:
                db.execute(
                    "UPDATE items SET head = 0 WHERE target = ? AND grp = ? AND state = 'pending'",
                    (target, group),
                )
                self._ensure_head(db, target, group)
        return len(found)

    def purge(self, state: str) -> int:
        """Delete every row in `state` (dead or expired letters the admin gave up on)."""
        if state not in ("dead", "expired", "delivered"):
            raise ValueError(f"cannot purge {state!r} rows")
        with self._write() as db:
            return db.execute("DELETE FROM items WHERE state = ?", (state,)).rowcount

    def unfinished_calls(self, *, since: float) -> list[tuple[str, list[tuple[str, bytes]]]]:
        """Calls (groups) with `call.*` or `zammad.*` rows since `since` but no ending row
        (`call.ended` / `zammad.hangup`): the agent stopped before it saw them end. Each with its
        (event, body) rows, oldest first, so the caller can tell how far the call got."""
        with self._guard() as db:
            found = db.execute(
                "SELECT grp, event, body FROM items WHERE created >= ? AND body IS NOT NULL"
                " AND (event LIKE 'call.%' OR event LIKE 'zammad.%') AND grp NOT IN"
                " (SELECT grp FROM items WHERE event IN ('call.ended', 'zammad.hangup'))"
                " ORDER BY id",
                (since,),
            ).fetchall()
        calls: dict[str, list[tuple[str, bytes]]] = {}
        seen: set[tuple[str, str, bytes]] = set()
        for group, event, body in found:
            mark = (str(group), str(event), bytes(body))
            if mark not in seen:  # one row per target: keep each message once
                seen.add(mark)
                calls.setdefault(str(group), []).append((str(event), bytes(body)))
        return list(calls.items())

    def counts_since(self, event: str, since: float) -> dict[str, int]:
        """Rows of `event` created since `since`, by state (e.g. pops today)."""
        with self._guard() as db:
            found = db.execute(
                "SELECT state, COUNT(*) FROM items WHERE event = ? AND created >= ?"
                " GROUP BY state",
                (event, since),
            ).fetchall()
        return {str(state): int(count) for state, count in found}

    def oldest_pending(self) -> float | None:
        with self._guard() as db:
            value = db.execute(
                "SELECT MIN(created) FROM items WHERE state = 'pending'"
            ).fetchone()[0]
        return None if value is None else float(value)

    def status(self, item_id: int) -> tuple[str, str | None, int] | None:
        """(state, last_error, attempts) of one row, for logs, tools and tests."""
        with self._guard() as db:
            row = db.execute(
                "SELECT state, last_error, attempts FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), row[1], int(row[2]))


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _prepare(path: Path) -> None:
    """The folder (0700 when we create it) and the file (0600) before SQLite opens it."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            pass  # not ours to change (another user's file): SQLite will say if it cannot write
        finally:
            os.close(fd)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OutboxUnwritable(f"{path}: cannot open the outbox: {why}", why) from None
