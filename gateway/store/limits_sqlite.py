"""The limits engine's shared state in one SQLite file (WAL), so every worker process counts into the same windows.

`SqliteWindowStore` implements `gateway.enforcement.limits.WindowStore`. The rules it keeps:
- every `add`/`add_members` runs in one `BEGIN IMMEDIATE` transaction (the write lock is taken before reading),
  so "read the window sums, refuse or add" is atomic across processes: two workers can never both squeeze a
  batch under the same limit;
- nothing is written when a call is refused;
- windows live in buckets keyed by `floor(now / bucket_s)`; a row records when its bucket leaves the window, and
  rows older than that are pruned at most every `prune_interval_s` (pruning never changes a sum: sums only read
  live buckets);
- durability is relaxed on purpose (`synchronous=NORMAL`: a power cut may lose the last moments of counts, a
  process crash loses nothing): these are rate windows and lockouts, not records of truth;
- a connection is never used across `fork()`: a child process reopens the file on first use;
- every sqlite3 error surfaces as `WindowStoreError`; `busy_timeout_s` bounds how long a call can wait for
  another process's transaction. The wait is our own retry loop (tens of microseconds, doubling to 1 ms), not
  SQLite's busy handler, whose 1-2-5-10-...-100 ms sleeps let one process starve another for a second under
  contention while the waiting worker's event loop stands still (measured; see docs/limits.md).
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.enforcement.limits import (
    BUCKETS_PER_WINDOW,
    Lockout,
    MemberAddResult,
    MemberUpdate,
    WindowAddResult,
    WindowStoreError,
    WindowUpdate,
    bucket_index,
)

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS window_buckets (key TEXT NOT NULL, bucket INTEGER NOT NULL, "
    "amount INTEGER NOT NULL, leaves_at REAL NOT NULL, PRIMARY KEY (key, bucket)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS window_buckets_leaves_at ON window_buckets (leaves_at)",
    "CREATE TABLE IF NOT EXISTS window_members (key TEXT NOT NULL, member TEXT NOT NULL, "
    "expires_at REAL NOT NULL, PRIMARY KEY (key, member)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS window_members_expires_at ON window_members (expires_at)",
    "CREATE TABLE IF NOT EXISTS lockouts (subject TEXT PRIMARY KEY, until REAL NOT NULL, rule TEXT NOT NULL, "
    "reason TEXT NOT NULL, close_connection INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS limits_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_SUM = "SELECT COALESCE(SUM(amount), 0) FROM window_buckets WHERE key = ? AND bucket > ?"
_BUCKETS = "SELECT bucket, amount FROM window_buckets WHERE key = ? AND bucket > ? ORDER BY bucket"
_ADD = (
    "INSERT INTO window_buckets (key, bucket, amount, leaves_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount"
)
_LIVE_MEMBERS = "SELECT member FROM window_members WHERE key = ? AND expires_at > ?"
_REMEMBER = (
    "INSERT INTO window_members (key, member, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key, member) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)"
)
_LOCK = (
    "INSERT INTO lockouts (subject, until, rule, reason, close_connection) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (subject) DO UPDATE SET until = excluded.until, rule = excluded.rule, reason = excluded.reason, "
    "close_connection = excluded.close_connection WHERE excluded.until > lockouts.until"
)
_ACTIVE_LOCKOUTS = "SELECT subject, until, rule, reason, close_connection FROM lockouts WHERE until > ?"
_FIRST_RETRY_S = 0.00005
_MAX_RETRY_S = 0.001
T = TypeVar("T")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteWindowStore:
    """Windows, member sets and lockouts in a SQLite database shared by the worker processes of one host."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = 2.0, prune_interval_s: float = 10.0
    ) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._prune_interval_s = prune_interval_s
        self._pruned_at = -math.inf
        self._pid = os.getpid()
        # Connections inherited across fork() are kept referenced but never used or closed in the child.
        self._inherited: list[sqlite3.Connection] = []
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open()

    # ---- connection ------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            # timeout=0: SQLite reports BUSY at once and `_retrying` waits in short steps (see module docstring).
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store {self.path}: {exc}") from exc
        try:
            self._prepare(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise WindowStoreError(f"limits store {self.path}: {exc}") from exc
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = self._retrying(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise WindowStoreError(f"limits store {self.path}: could not switch to WAL (journal mode {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._retrying(lambda: self._transaction(conn, self._create_schema))

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM limits_meta WHERE name = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO limits_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise WindowStoreError(
                f"limits store {self.path} has schema version {row[0]}, this gateway uses {SCHEMA_VERSION}"
            )

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a write transaction taken up front, so its reads and writes are one atomic step."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Call `attempt` until it does not fail with BUSY/LOCKED, for at most `busy_timeout_s`."""
        deadline = time.monotonic() + self._busy_timeout_s
        pause = _FIRST_RETRY_S
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
            # Jitter keeps two workers that collided from colliding again in lockstep.
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, _MAX_RETRY_S)

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        try:
            return self._retrying(lambda: self._transaction(conn, body))
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            return self._retrying(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._pid = os.getpid()
            self._conn = None
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # ---- windows -----------------------------------------------------------------------------------------

    def add(self, updates: Sequence[WindowUpdate], now: float) -> WindowAddResult:
        indices = [bucket_index(now, u.bucket_s) for u in updates]

        def body(conn: sqlite3.Connection) -> WindowAddResult:
            sums = tuple(
                conn.execute(_SUM, (u.key, index - BUCKETS_PER_WINDOW)).fetchone()[0] + u.amount
                for u, index in zip(updates, indices, strict=True)
            )
            for i, update in enumerate(updates):
                if update.limit is not None and sums[i] > update.limit:
                    return WindowAddResult(False, sums, i)
            for update, index in zip(updates, indices, strict=True):
                conn.execute(
                    _ADD, (update.key, index, update.amount, (index + BUCKETS_PER_WINDOW) * update.bucket_s)
                )
            return WindowAddResult(True, sums)

        result = self._write(body)
        self._maybe_prune(now)
        return result

    def buckets(self, key: str, window_s: float, now: float) -> list[tuple[float, int]]:
        bucket_s = window_s / BUCKETS_PER_WINDOW
        rows = self._read(_BUCKETS, (key, bucket_index(now, bucket_s) - BUCKETS_PER_WINDOW))
        return [((int(bucket) + BUCKETS_PER_WINDOW) * bucket_s, int(amount)) for bucket, amount in rows]

    # ---- member sets -------------------------------------------------------------------------------------

    def add_members(self, updates: Sequence[MemberUpdate], now: float) -> MemberAddResult:
        def body(conn: sqlite3.Connection) -> MemberAddResult:
            counts = []
            for update in updates:
                live = {row[0] for row in conn.execute(_LIVE_MEMBERS, (update.key, now))}
                counts.append(len(live.union(update.members)))
            for i, update in enumerate(updates):
                if update.max_count is not None and counts[i] > update.max_count:
                    return MemberAddResult(False, tuple(counts), i)
            conn.executemany(
                _REMEMBER, [(u.key, member, now + u.ttl_s) for u in updates for member in u.members]
            )
            return MemberAddResult(True, tuple(counts))

        result = self._write(body)
        self._maybe_prune(now)
        return result

    # ---- lockouts ----------------------------------------------------------------------------------------

    def set_lockout(self, lockout: Lockout) -> None:
        self._write(
            lambda conn: conn.execute(
                _LOCK,
                (lockout.subject, lockout.until, lockout.rule, lockout.reason, int(lockout.close_connection)),
            )
        )

    def active_lockouts(self, now: float) -> dict[str, Lockout]:
        return {
            str(subject): Lockout(str(subject), float(until), str(rule), str(reason), bool(close))
            for subject, until, rule, reason, close in self._read(_ACTIVE_LOCKOUTS, (now,))
        }

    # ---- housekeeping ------------------------------------------------------------------------------------

    def _maybe_prune(self, now: float) -> None:
        if now - self._pruned_at < self._prune_interval_s:
            return
        self._pruned_at = now
        try:
            self.prune(now)
        except WindowStoreError:
            pass  # pruning is housekeeping; the next interval tries again

    def prune(self, now: float) -> int:
        """Delete buckets, members and lockouts that can no longer count; returns the rows deleted."""

        def body(conn: sqlite3.Connection) -> int:
            deleted = conn.execute("DELETE FROM window_buckets WHERE leaves_at <= ?", (now,)).rowcount
            deleted += conn.execute("DELETE FROM window_members WHERE expires_at <= ?", (now,)).rowcount
            deleted += conn.execute("DELETE FROM lockouts WHERE until <= ?", (now,)).rowcount
            return deleted

        return self._write(body)

    def row_counts(self) -> dict[str, int]:
        """Rows per table (for tests and diagnostics)."""
        return {
            table: int(self._read(f"SELECT COUNT(*) FROM {table}", ())[0][0])
            for table in ("window_buckets", "window_members", "lockouts")
        }
