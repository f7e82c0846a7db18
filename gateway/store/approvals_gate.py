"""What a worker uses to enforce approvals: the gate (grant, hold or deny), a grant cache, a decision watcher.

The worker's session code gets a `Decision` with `approval` set from the policy, then asks the gate::

    result = gate.check(requester, action, resource, decision.approval)
    if result.outcome == "hold":
        if result.created:                       # this request filed it: audit `approval_requested`
            audit.record(approvals.approval_event(approvals.KIND_REQUESTED, result.record, ...))
        result = await gate.hold(result.record, decision.approval.hold_s)
    granted -> serve the request; hold (timed out) or denied -> refuse it with `result.message`

Rules kept here:
* **Grants are checked on every request** (`GrantCache`): the cache is dropped whenever the store's version
  moves, and the version is read on every check (one indexed SQLite read, a few microseconds), so a revocation
  or a new grant is seen by the very next request on every live connection; an expiry needs no store change
  at all (the cached grant's expiry time is compared with the clock each time).
* **One poller per worker**, whatever the number of held requests (`DecisionWatcher`): it runs only while
  something is held, reads `store.version()` every `poll_interval_s` and re-reads the held records only when
  the version moved. A reviewer's approval reaches a held request within one poll interval (plus the store
  read): about 150 ms by default. No busy loop: the poller sleeps between reads.
* Store calls are synchronous (SQLite) and short; the gate never holds the event loop for longer than one
  query, except that filing a request waits for the store's write lock (bounded by its busy timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRecord, GateOutcome, Requester
from gateway.enforcement.decisions import ApprovalSpec, Resource
from gateway.store.approvals_base import ApprovalStore, StoreError

log = logging.getLogger("streamgate.approvals")

DEFAULT_POLL_INTERVAL_S = 0.15
DEFAULT_DENY_COOLDOWN_S = 300.0
_MAX_CACHED_GRANTS = 65536


@dataclass(frozen=True, slots=True)
class GateResult:
    """`outcome`: granted (serve), hold (wait, or refuse as pending after the hold), denied (refuse).

    `record` is the grant, the pending request or the denial; `created` is True when this call filed the
    request (its caller audits `approval_requested`); `message` is what a refused client is told.
    """

    outcome: GateOutcome
    record: ApprovalRecord
    created: bool = False
    message: str = ""


class GrantCache:
    """Per-process memo of `store.active_grant`, valid while the store's version stays the same."""

    def __init__(self, store: ApprovalStore) -> None:
        self._store = store
        self._version = -1
        self._grants: dict[tuple[str, str, str, str], ApprovalRecord | None] = {}

    def active_grant(self, sub: str, action: str, resource: Resource, now: float) -> ApprovalRecord | None:
        version = self._store.version()
        if version != self._version:
            self._grants.clear()
            self._version = version
        key = (sub, action, resource.kind, resource.name)
        try:
            grant = self._grants[key]
        except KeyError:
            if len(self._grants) >= _MAX_CACHED_GRANTS:
                self._grants.clear()
            grant = self._grants[key] = self._store.active_grant(sub, action, resource, now)
        if grant is not None and not approvals.is_grant_active(grant, now):
            return None
        return grant


class DecisionWatcher:
    """Wakes held requests when their approval record is decided (one polling task per process)."""

    def __init__(self, store: ApprovalStore, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self._store = store
        self.poll_interval_s = poll_interval_s
        self._waiters: dict[str, set[asyncio.Future[ApprovalRecord | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._seen_version = -1
        self.polls = 0  # store version reads so far (observability and tests)

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiters.values())

    async def wait(self, request_id: str, timeout_s: float) -> ApprovalRecord | None:
        """The record once it is no longer pending, or as it is when `timeout_s` ran out (None: gone)."""
        # No await between this read and registering the waiter: the poller cannot miss a decision in between.
        record = self._store.get(request_id)
        if record is None or record.status != "pending" or timeout_s <= 0:
            return record
        future: asyncio.Future[ApprovalRecord | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, set()).add(future)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout_s)
        finally:
            futures = self._waiters.get(request_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiters[request_id]
        if done:
            return future.result()
        return self._store.get(request_id)  # one last look: a decision may have landed since the last poll

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.poll_interval_s)
            try:
                self.polls += 1
                version = self._store.version()
                if version == self._seen_version:
                    continue
                self._seen_version = version
                for request_id in list(self._waiters):
                    record = self._store.get(request_id)
                    if record is not None and record.status == "pending":
                        continue
                    for future in self._waiters.pop(request_id, ()):
                        if not future.done():
                            future.set_result(record)
            except StoreError as exc:
                # Held requests time out as pending; the next poll tries again.
                log.warning("approval store unavailable while waiting for decisions: %s", exc)


class ApprovalGate:
    """Grant, hold or deny one request that the policy says needs approval. One instance per worker."""

    def __init__(
        self,
        store: ApprovalStore,
        *,
        deny_cooldown_s: float = DEFAULT_DENY_COOLDOWN_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.deny_cooldown_s = deny_cooldown_s
        self.clock = clock
        self.grants = GrantCache(store)
        self.watcher = DecisionWatcher(store, poll_interval_s)

    def check(self, requester: Requester, action: str, resource: Resource, spec: ApprovalSpec) -> GateResult:
        """Granted when an active grant exists; otherwise hold on the pending request (filing it if needed),
        or denied while a recent denial stands. Raises StoreError when the store is unusable (refuse then)."""
        now = self.clock()
        grant = self.grants.active_grant(requester.sub, action, resource, now)
        if grant is not None:
            return GateResult("granted", grant)
        latest = self.store.latest(requester.sub, action, resource)
        step = approvals.gate_step(None, latest, now, self.deny_cooldown_s)
        if step.outcome == "denied" and step.record is not None:
            return GateResult("denied", step.record, message=approvals.client_message(step.record, now))
        if step.record is not None:
            return GateResult("hold", step.record, message=approvals.client_message(step.record, now))
        record, created = self.store.request_or_existing(
            approvals.new_request(requester, action, resource, spec, now)
        )
        return GateResult("hold", record, created, approvals.client_message(record, now))

    async def hold(self, record: ApprovalRecord, hold_s: float) -> GateResult:
        """Wait up to `hold_s` for a reviewer; granted if approved in time, else hold (still pending) or
        denied, with the message for the client."""
        final = await self.watcher.wait(record.id, hold_s)
        now = self.clock()
        if final is None:
            return GateResult("denied", record, message=f"approval request {record.id} no longer exists")
        if approvals.is_grant_active(final, now):
            return GateResult("granted", final)
        outcome: GateOutcome = "hold" if final.status == "pending" else "denied"
        return GateResult(outcome, final, message=approvals.client_message(final, now))
