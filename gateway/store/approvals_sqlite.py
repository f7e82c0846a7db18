"""`SqliteApprovalStore`: the embedded approval store, one SQLite file shared by every process of a gateway.

Rules kept here:
* **WAL mode** so readers (every worker checking grants) never wait for a writer, and `busy_timeout` so
  writers from several processes queue for the write lock instead of failing. Writes use `BEGIN IMMEDIATE`:
  the write lock is taken before the read that decides what to write, so check-then-write is atomic across
  processes. `synchronous=NORMAL`: a committed change survives a crash of any process; a power loss may lose
  the last few commits (an approval to repeat, never a grant nobody made).
* **One pending request per key** is also a partial unique index, so even a store bug cannot create two.
* **Fork safety:** a connection is opened lazily in the process that uses it. A store object inherited across
  `fork()` notices the new pid and opens its own connection; the inherited one is never used or closed in the
  child (closing it there could disturb the parent's locks).
* The event log's sequence is SQLite's AUTOINCREMENT counter, so `version()` never goes back, even after
  `prune` deletes old events.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRecord, ApprovalRefused, EventKind
from gateway.enforcement.decisions import PolicySubject, Resource
from gateway.store.approvals_base import ChangeSet, StoreError, StoreEvent

SCHEMA_VERSION: Final = 1

_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "requester_sub",
    "requester_email",
    "requester_groups",
    "action",
    "resource_kind",
    "resource_name",
    "rule",
    "reviewers",
    "grant_ttl_s",
    "client_address",
    "client_id",
    "justification",
    "created_at",
    "status",
    "decided_by",
    "decided_at",
    "reason",
    "grant_expires_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM approvals"
_STATUS_CHECK = ", ".join(f"'{status}'" for status in approvals.STATUSES)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    requester_sub TEXT NOT NULL,
    requester_email TEXT,
    requester_groups TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_kind TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    rule TEXT NOT NULL,
    reviewers TEXT NOT NULL,
    grant_ttl_s REAL NOT NULL,
    client_address TEXT,
    client_id TEXT,
    justification TEXT,
    created_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
    decided_by TEXT,
    decided_at REAL,
    reason TEXT,
    grant_expires_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending
    ON approvals (requester_sub, action, resource_kind, resource_name) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_by_key
    ON approvals (requester_sub, action, resource_kind, resource_name, created_at);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals (status, created_at);
CREATE TABLE IF NOT EXISTS approval_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT,
    snapshot TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_events_by_time ON approval_events (at);
CREATE TABLE IF NOT EXISTS event_cursors (
    consumer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""

# Connections inherited through fork() are parked here so the child never closes (or finalises) them.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


class SqliteApprovalStore:
    """The embedded `ApprovalStore`. Safe for several processes; one instance per process (and thread)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()  # fail early (bad path, not a database) in the process that configures the store

    # -- connection ----------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._connection is not None:
            _INHERITED_CONNECTIONS.append(self._connection)
            self._connection = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=True
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"approval store {self.path}: cannot switch to WAL mode (got {mode})")
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"approval store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"approval store {self.path}: {exc.strerror or exc}") from None
        self._connection = conn
        self._pid = os.getpid()
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"approval store {self.path} has schema version {found}; this streamgate knows "
                    f"{SCHEMA_VERSION} (written by a newer version?)"
                )
            if found < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"approval store {self.path}: {exc}") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"approval store {self.path}: {exc}") from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"approval store {self.path}: {exc}") from None

    def close(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    # -- requests ------------------------------------------------------------------------------------------

    def request_or_existing(self, candidate: ApprovalRecord) -> tuple[ApprovalRecord, bool]:
        if candidate.status != "pending":
            raise ValueError("request_or_existing takes a pending record (see approvals.new_request)")
        with self._write() as conn:
            row = conn.execute(
                f"{_SELECT} WHERE requester_sub = ? AND action = ? AND resource_kind = ? "
                "AND resource_name = ? "
                "AND status = 'pending'",
                candidate.key,
            ).fetchone()
            if row is not None:
                return _record(row), False
            conn.execute(
                f"INSERT INTO approvals ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                _row(candidate),
            )
            _append_event(conn, "requested", candidate.created_at, candidate.requester_sub, candidate)
        return candidate, True

    def get(self, request_id: str) -> ApprovalRecord | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (request_id,))
        return _record(rows[0]) if rows else None

    def list(
        self,
        status: str | Iterable[str] | None = None,
        limit: int = 100,
        *,
        requester_sub: str | None = None,
    ) -> builtins.list[ApprovalRecord]:
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else builtins.list(status)
            unknown = [s for s in statuses if s not in approvals.STATUSES]
            if unknown:
                raise ValueError(f"unknown status {unknown[0]!r} (one of {', '.join(approvals.STATUSES)})")
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if requester_sub is not None:
            where.append("requester_sub = ?")
            params.append(requester_sub)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(max(0, int(limit)))
        rows = self._read(
            f"{_SELECT}{clause} ORDER BY COALESCE(decided_at, created_at) DESC, id LIMIT ?", params
        )
        return [_record(row) for row in rows]

    def latest(self, sub: str, action: str, resource: Resource) -> ApprovalRecord | None:
        rows = self._read(
            f"{_SELECT} WHERE requester_sub = ? AND action = ? AND resource_kind = ? AND resource_name = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (sub, action, resource.kind, resource.name),
        )
        return _record(rows[0]) if rows else None

    def active_grant(self, sub: str, action: str, resource: Resource, now: float) -> ApprovalRecord | None:
        rows = self._read(
            f"{_SELECT} WHERE requester_sub = ? AND action = ? AND resource_kind = ? AND resource_name = ? "
            "AND status = 'approved' AND grant_expires_at > ? ORDER BY grant_expires_at DESC LIMIT 1",
            (sub, action, resource.kind, resource.name, now),
        )
        return _record(rows[0]) if rows else None

    # -- decisions -----------------------------------------------------------------------------------------

    def approve(self, request_id: str, reviewer: PolicySubject, reason: str, now: float) -> ApprovalRecord:
        return self._decide(request_id, "approve", reviewer, reason, now)

    def deny(self, request_id: str, reviewer: PolicySubject, reason: str, now: float) -> ApprovalRecord:
        return self._decide(request_id, "deny", reviewer, reason, now)

    def revoke(self, request_id: str, who: PolicySubject, reason: str, now: float) -> ApprovalRecord:
        return self._decide(request_id, "revoke", who, reason, now)

    def _decide(
        self,
        request_id: str,
        verb: Literal["approve", "deny", "revoke"],
        who: PolicySubject,
        reason: str,
        now: float,
    ) -> ApprovalRecord:
        with self._write() as conn:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (request_id,)).fetchone()
            if row is None:
                raise ApprovalRefused("not_found", f"no approval request {request_id}")
            after = approvals.decide(_record(row), verb, who, reason, now)
            _update(conn, after)
            _append_event(conn, approvals.event_kind_of(verb), now, who.sub, after)
        return after

    def expire_pending(self, now: float, older_than_s: float) -> builtins.list[ApprovalRecord]:
        with self._write() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE status = 'pending' AND created_at <= ?", (now - older_than_s,)
            ).fetchall()
            expired = [
                approvals.expire(_record(row), now, f"no reviewer decided within {older_than_s:g}s")
                for row in rows
            ]
            for record in expired:
                _update(conn, record)
                _append_event(conn, "expired", now, None, record)
        return expired

    def expire_grants(self, now: float) -> builtins.list[ApprovalRecord]:
        with self._write() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE status = 'approved' AND grant_expires_at <= ?", (now,)
            ).fetchall()
            expired = [approvals.expire(_record(row), now, "grant expired") for row in rows]
            for record in expired:
                _update(conn, record)
                _append_event(conn, "expired", now, None, record)
        return expired

    # -- change log ----------------------------------------------------------------------------------------

    def version(self) -> int:
        rows = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'approval_events'")
        return int(rows[0][0]) if rows else 0

    def changed_since(self, version: int, limit: int = 1000) -> ChangeSet:
        rows = self._read(
            "SELECT seq, kind, at, actor, snapshot FROM approval_events WHERE seq > ? ORDER BY seq LIMIT ?",
            (version, limit),
        )
        events = tuple(_event(row) for row in rows)
        return ChangeSet(events[-1].seq if events else max(version, 0), events)

    def claim_events(self, consumer: str, limit: int = 100) -> builtins.list[StoreEvent]:
        with self._write() as conn:
            cursor_row = conn.execute(
                "SELECT seq FROM event_cursors WHERE consumer = ?", (consumer,)
            ).fetchone()
            if cursor_row is None:
                head = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'approval_events'"
                ).fetchone()
                conn.execute(
                    "INSERT INTO event_cursors (consumer, seq) VALUES (?, ?)",
                    (consumer, head[0] if head else 0),
                )
                return []
            rows = conn.execute(
                "SELECT seq, kind, at, actor, snapshot FROM approval_events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor_row[0], limit),
            ).fetchall()
            if rows:
                conn.execute("UPDATE event_cursors SET seq = ? WHERE consumer = ?", (rows[-1][0], consumer))
        return [_event(row) for row in rows]

    def prune(self, before: float) -> int:
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM approvals WHERE status IN ('denied', 'expired', 'revoked') AND decided_at < ?",
                (before,),
            ).rowcount
            conn.execute("DELETE FROM approval_events WHERE at < ?", (before,))
        return int(deleted)


# --------------------------------------------------------------------------------------------------------
# row <-> record


def _row(record: ApprovalRecord) -> tuple[Any, ...]:
    values = []
    for column in _COLUMNS:
        value = getattr(record, column)
        if column in ("requester_groups", "reviewers"):
            value = json.dumps(builtins.list(value))
        values.append(value)
    return tuple(values)


def _record(row: Sequence[Any]) -> ApprovalRecord:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["requester_groups"] = tuple(json.loads(fields["requester_groups"]))
    fields["reviewers"] = tuple(json.loads(fields["reviewers"]))
    return ApprovalRecord(**fields)


def _update(conn: sqlite3.Connection, record: ApprovalRecord) -> None:
    conn.execute(
        "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, reason = ?, grant_expires_at = ? "
        "WHERE id = ?",
        (
            record.status,
            record.decided_by,
            record.decided_at,
            record.reason,
            record.grant_expires_at,
            record.id,
        ),
    )


def _append_event(
    conn: sqlite3.Connection, kind: EventKind, at: float, actor: str | None, record: ApprovalRecord
) -> None:
    snapshot = json.dumps(dict(zip(_COLUMNS, _row(record), strict=True)), separators=(",", ":"))
    conn.execute(
        "INSERT INTO approval_events (request_id, kind, at, actor, snapshot) VALUES (?, ?, ?, ?, ?)",
        (record.id, kind, at, actor, snapshot),
    )


def _event(row: Sequence[Any]) -> StoreEvent:
    seq, kind, at, actor, snapshot = row
    data = json.loads(snapshot)
    return StoreEvent(int(seq), kind, float(at), actor, _record([data[column] for column in _COLUMNS]))
