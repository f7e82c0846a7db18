"""The worker-side gate: grant / hold / deny, filing requests once, grant cache freshness, hold wake-ups."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from gateway.enforcement import approvals
from gateway.enforcement.approvals import Requester
from gateway.store.approvals_gate import ApprovalGate, GrantCache
from gateway.store.approvals_sqlite import SqliteApprovalStore
from tests.approvals.conftest import PII, SPEC


@dataclass(frozen=True)
class Who:
    sub: str
    groups: tuple[str, ...] = ()


CAROL = Who("carol", ("security-oncall",))
ALICE = Requester("alice", "alice@example.com", ("analysts",), "127.0.0.1:40000", "nb;justification=INC-7")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_first_request_files_once_then_holds_then_granted(store: SqliteApprovalStore) -> None:
    clock = Clock()
    gate = ApprovalGate(store, clock=clock)
    first = gate.check(ALICE, "consume", PII, SPEC)
    assert first.outcome == "hold" and first.created
    assert first.record.justification == "INC-7" and first.record.client_address == "127.0.0.1:40000"
    assert "pending" in first.message
    second = gate.check(ALICE, "consume", PII, SPEC)
    assert second.outcome == "hold" and not second.created and second.record.id == first.record.id
    store.approve(first.record.id, CAROL, "ok", clock.now)
    granted = gate.check(ALICE, "consume", PII, SPEC)
    assert granted.outcome == "granted" and granted.record.decided_by == "carol"
    assert len(store.list()) == 1


def test_revocation_and_expiry_apply_at_the_next_check(store: SqliteApprovalStore) -> None:
    clock = Clock()
    gate = ApprovalGate(store, clock=clock)
    record = gate.check(ALICE, "consume", PII, SPEC).record
    store.approve(record.id, CAROL, "ok", clock.now)
    assert gate.check(ALICE, "consume", PII, SPEC).outcome == "granted"
    other_process = SqliteApprovalStore(store.path)  # the admin process revokes through its own connection
    other_process.revoke(record.id, CAROL, "incident closed", clock.now + 1)
    other_process.close()
    after = gate.check(ALICE, "consume", PII, SPEC)
    assert after.outcome == "hold" and after.created  # the grant is gone: a new request is filed
    store.approve(after.record.id, CAROL, "again", clock.now)
    assert gate.check(ALICE, "consume", PII, SPEC).outcome == "granted"
    clock.now += SPEC.grant_ttl_s  # no store change at all: the clock alone ends the grant
    assert gate.check(ALICE, "consume", PII, SPEC).outcome == "hold"


def test_denial_stands_for_the_cooldown(store: SqliteApprovalStore) -> None:
    clock = Clock()
    gate = ApprovalGate(store, clock=clock, deny_cooldown_s=60)
    record = gate.check(ALICE, "consume", PII, SPEC).record
    store.deny(record.id, CAROL, "no ticket", clock.now)
    denied = gate.check(ALICE, "consume", PII, SPEC)
    assert denied.outcome == "denied" and denied.message == "approval denied by carol: no ticket"
    assert len(store.list()) == 1  # no new request while the denial stands
    clock.now += 61
    assert gate.check(ALICE, "consume", PII, SPEC).created


def test_grant_cache_reads_the_store_only_when_its_version_moves(store: SqliteApprovalStore) -> None:
    calls = 0
    real = store.active_grant

    def counting(*args: object) -> approvals.ApprovalRecord | None:
        nonlocal calls
        calls += 1
        return real(*args)  # type: ignore[arg-type]

    store.active_grant = counting  # type: ignore[method-assign]
    cache = GrantCache(store)
    now = time.time()
    for _ in range(5):
        assert cache.active_grant("alice", "consume", PII, now) is None
    assert calls == 1
    record, _ = store.request_or_existing(approvals.new_request(ALICE, "consume", PII, SPEC, now))  # a change
    store.approve(record.id, CAROL, "ok", now)
    assert cache.active_grant("alice", "consume", PII, now) is not None
    assert calls == 2


def test_hold_is_released_by_approval_and_times_out_as_pending(store: SqliteApprovalStore) -> None:
    async def scenario() -> None:
        gate = ApprovalGate(store, poll_interval_s=0.05)
        record = gate.check(ALICE, "consume", PII, SPEC).record
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: store.approve(record.id, CAROL, "while held", time.time()))
        started = time.monotonic()
        result = await gate.hold(record, 5.0)
        assert result.outcome == "granted" and time.monotonic() - started < 2.0
        assert gate.watcher.waiting == 0

        other = gate.check(Requester("dave"), "consume", PII, SPEC).record
        timed_out = await gate.hold(other, 0.3)
        assert timed_out.outcome == "hold" and "pending" in timed_out.message

        several = [asyncio.ensure_future(gate.hold(other, 5.0)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert gate.watcher.waiting == 3
        store.deny(other.id, CAROL, "no", time.time())
        results = await asyncio.gather(*several)
        assert [r.outcome for r in results] == ["denied"] * 3
        assert results[0].message == "approval denied by carol: no"

    asyncio.run(scenario())


def test_cancelled_hold_leaves_no_waiter(store: SqliteApprovalStore) -> None:
    async def scenario() -> None:
        gate = ApprovalGate(store, poll_interval_s=0.05)
        record = gate.check(ALICE, "consume", PII, SPEC).record
        task = asyncio.ensure_future(gate.hold(record, 5.0))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert gate.watcher.waiting == 0

    asyncio.run(scenario())
