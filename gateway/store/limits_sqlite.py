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
- every sqlite3 error surfaces as `WindowStoreError`; the busy timeout bounds how long a call can wait for
  another process's transaction (transactions here are a handful of indexed statements, tens of microseconds).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

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


class SqliteWindowStore:
    """Windows, member sets and lockouts in a SQLite database shared by the worker processes of one host."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0,
                 prune_interval_s: float = 10.0) -> None:
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
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            # journal_mode is persistent in the file; setting it when another process holds a transaction can
            # report "locked" without waiting on some SQLite builds, so retry within the busy timeout.
            deadline = time.monotonic() + self._busy_timeout_s
            while True:
                try:
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
            if str(mode).lower() != "wal":
                raise WindowStoreError(f"limits store {self.path}: could not switch to WAL (journal mode {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("SELECT value FROM limits_meta WHERE name = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO limits_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise WindowStoreError(
                        f"limits store {self.path} has schema version {row[0]}, this gateway uses {SCHEMA_VERSION}"
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store {self.path}: {exc}") from exc
        return conn

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
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                indices = [bucket_index(now, u.bucket_s) for u in updates]
                sums = tuple(
                    conn.execute(_SUM, (u.key, index - BUCKETS_PER_WINDOW)).fetchone()[0] + u.amount
                    for u, index in zip(updates, indices, strict=True)
                )
                refused = next(
                    (i for i, u in enumerate(updates) if u.limit is not None and sums[i] > u.limit), None
                )
                if refused is None:
                    conn.executemany(_ADD, [
                        (u.key, index, u.amount, (index + BUCKETS_PER_WINDOW) * u.bucket_s)
                        for u, index in zip(updates, indices, strict=True)
                    ])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc
        self._maybe_prune(now)
        return WindowAddResult(refused is None, sums, refused)

    def buckets(self, key: str, window_s: float, now: float) -> list[tuple[float, int]]:
        bucket_s = window_s / BUCKETS_PER_WINDOW
        try:
            rows = self._connection().execute(
                _BUCKETS, (key, bucket_index(now, bucket_s) - BUCKETS_PER_WINDOW)
            ).fetchall()
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc
        return [((bucket + BUCKETS_PER_WINDOW) * bucket_s, amount) for bucket, amount in rows]

    # ---- member sets -------------------------------------------------------------------------------------

    def add_members(self, updates: Sequence[MemberUpdate], now: float) -> MemberAddResult:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = []
                for update in updates:
                    live = {row[0] for row in conn.execute(_LIVE_MEMBERS, (update.key, now))}
                    counts.append(len(live.union(update.members)))
                refused = next(
                    (i for i, u in enumerate(updates) if u.max_count is not None and counts[i] > u.max_count), None
                )
                if refused is None:
                    conn.executemany(_REMEMBER, [
                        (u.key, member, now + u.ttl_s) for u in updates for member in u.members
                    ])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc
        self._maybe_prune(now)
        return MemberAddResult(refused is None, tuple(counts), refused)

    # ---- lockouts ----------------------------------------------------------------------------------------

    def set_lockout(self, lockout: Lockout) -> None:
        try:
            self._connection().execute(_LOCK, (
                lockout.subject, lockout.until, lockout.rule, lockout.reason, int(lockout.close_connection)
            ))
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc

    def active_lockouts(self, now: float) -> dict[str, Lockout]:
        try:
            rows = self._connection().execute(_ACTIVE_LOCKOUTS, (now,)).fetchall()
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc
        return {subject: Lockout(subject, until, rule, reason, bool(close))
                for subject, until, rule, reason, close in rows}

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
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = conn.execute("DELETE FROM window_buckets WHERE leaves_at <= ?", (now,)).rowcount
                deleted += conn.execute("DELETE FROM window_members WHERE expires_at <= ?", (now,)).rowcount
                deleted += conn.execute("DELETE FROM lockouts WHERE until <= ?", (now,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise WindowStoreError(f"limits store: {exc}") from exc
        return deleted

    def row_counts(self) -> dict[str, int]:
        """Rows per table (for tests and diagnostics)."""
        conn = self._connection()
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("window_buckets", "window_members", "lockouts")}
