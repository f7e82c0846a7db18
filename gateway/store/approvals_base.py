"""The interface every approval store implements, the value types it returns, and `open_approval_store`.

A store holds approval requests and grants that every worker process (and, with a networked store, every
gateway replica) must agree on. `SqliteApprovalStore` is the embedded default; a PostgreSQL or Redis store
implements the same `ApprovalStore` protocol (see docs/approvals.md, "Networked stores").

Rules every implementation keeps:
* **At most one pending request per (requester sub, action, resource)**, even when several processes race:
  `request_or_existing` returns the existing one (created=False) instead of inserting a second.
* **Decisions are checked and applied atomically**: `approve`/`deny`/`revoke` read the record, apply
  `gateway.enforcement.approvals.decide` (who may, which state) and write the result in one transaction, so
  two reviewers deciding at once cannot both win; the loser gets `ApprovalRefused("conflict")`.
* **Every state change appends one `StoreEvent`** (with a snapshot of the record after the change) to an
  ordered log. `version()` is the sequence number of the newest event: it only grows, so a process holding a
  request polls `version()` (cheap) and re-reads records only when it moved. `changed_since(version)` returns
  the events after a version; `claim_events(consumer)` hands each event to exactly one process per consumer
  name (the admin process's webhook uses it, so two admin processes never both post the same event).
* Calls are synchronous and short (a few hundred microseconds for SQLite); a store that talks to a network
  should keep the same contract with a bounded timeout.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.enforcement.approvals import ApprovalRecord, EventKind
from gateway.enforcement.decisions import PolicySubject, Resource


class StoreError(RuntimeError):
    """The store cannot be used (unreachable, locked beyond its timeout, corrupt); str() says why."""


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One state change: `seq` orders the log, `record` is the record as it was right after the change."""

    seq: int
    kind: EventKind
    at: float
    actor: str | None
    record: ApprovalRecord


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Events after some version, and the version to ask from next time."""

    version: int
    events: tuple[StoreEvent, ...]


class ApprovalStore(Protocol):
    """Shared approval state. Times are UNIX seconds passed in by the caller (testable, no hidden clock)."""

    def request_or_existing(self, candidate: ApprovalRecord) -> tuple[ApprovalRecord, bool]:
        """Insert `candidate` (a pending record from `approvals.new_request`) unless a pending request
        with the same key exists; returns (the pending record, whether it was created now)."""
        ...

    def get(self, request_id: str) -> ApprovalRecord | None: ...

    def list(
        self,
        status: str | Iterable[str] | None = None,
        limit: int = 100,
        *,
        requester_sub: str | None = None,
    ) -> builtins.list[ApprovalRecord]:
        """Records, newest activity first (decision time, else creation time); all statuses when None."""
        ...

    def latest(self, sub: str, action: str, resource: Resource) -> ApprovalRecord | None:
        """The most recently created record for this key, whatever its status."""
        ...

    def active_grant(self, sub: str, action: str, resource: Resource, now: float) -> ApprovalRecord | None:
        """The approved record whose grant is in force at `now` (the one lasting longest), if any."""
        ...

    def approve(
        self, request_id: str, reviewer: PolicySubject, reason: str, now: float
    ) -> ApprovalRecord: ...

    def deny(self, request_id: str, reviewer: PolicySubject, reason: str, now: float) -> ApprovalRecord: ...

    def revoke(self, request_id: str, who: PolicySubject, reason: str, now: float) -> ApprovalRecord: ...

    def expire_pending(self, now: float, older_than_s: float) -> builtins.list[ApprovalRecord]:
        """Mark pending requests created `older_than_s` or more ago as expired; returns them."""
        ...

    def expire_grants(self, now: float) -> builtins.list[ApprovalRecord]:
        """Mark approved records whose grant ran out as expired; returns them."""
        ...

    def version(self) -> int: ...

    def changed_since(self, version: int, limit: int = 1000) -> ChangeSet: ...

    def claim_events(self, consumer: str, limit: int = 100) -> Sequence[StoreEvent]:
        """The next events for `consumer`, each handed out once across all processes. A consumer's first call
        starts at the current version (history before it is not replayed) and returns nothing."""
        ...

    def prune(self, before: float) -> int:
        """Delete final records decided before `before` and events older than it; returns records deleted."""
        ...

    def close(self) -> None: ...


def open_approval_store(
    kind: Literal["sqlite"], path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0
) -> ApprovalStore:
    """The store named by `admin.store` (`type`, `path`), opened in the calling process (after any fork).

    Raises StoreError if it cannot be opened, ValueError for an unknown type.
    """
    if kind != "sqlite":
        raise ValueError(f"unknown approval store type {kind!r} (supported: sqlite)")
    from gateway.store.approvals_sqlite import SqliteApprovalStore

    return SqliteApprovalStore(path, busy_timeout_s=busy_timeout_s)
