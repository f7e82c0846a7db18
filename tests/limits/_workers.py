"""Process entry points for the multi-process limits tests (importable by `multiprocessing` spawn children)."""

from __future__ import annotations

import time
import traceback
from typing import Any

from gateway.enforcement.limits import (
    LimitsEngine,
    Lockout,
    MemberUpdate,
    WindowUpdate,
    parse_limits,
)
from gateway.store.limits_sqlite import SqliteWindowStore
from tests.limits._support import Who


def consume_until_blocked(path: str, config: dict[str, Any], batch: int, start: Any, results: Any) -> None:
    """Fetch `batch` records at a time for one principal until the shared limit blocks; report what got through."""
    try:
        engine = LimitsEngine(parse_limits(config), SqliteWindowStore(path))
        principal = Who("alice", ("analysts",))
        start.wait(60)
        delivered = 0
        first = last = None
        while True:
            verdict = engine.after_fetch(principal, "customers.accounts", batch, batch * 100, {})
            if verdict.blocks:
                break
            delivered += batch
            last = time.monotonic()
            first = first if first is not None else last
        # Once refused, the window only grows (no traffic leaves it during the test): every retry is refused too.
        retries_blocked = all(
            engine.after_fetch(principal, "customers.accounts", batch, batch * 100, {}).blocks
            for _ in range(20)
        )
        results.put(
            {"delivered": delivered, "first": first, "last": last, "retries_blocked": retries_blocked}
        )
    except BaseException:
        results.put({"error": traceback.format_exc()})


def hammer_store(path: str, worker: int, iterations: int, start: Any, results: Any) -> None:
    """Mixed concurrent writes and reads on one store; reports what it added so the parent can check totals."""
    try:
        start.wait(60)
        store = SqliteWindowStore(
            path, prune_interval_s=0.05
        )  # opened in the race: schema creation races too
        shared_total = own_total = 0
        members = set()
        for i in range(iterations):
            now = time.time()
            amount = i % 7 + 1
            result = store.add(
                [WindowUpdate("shared", amount, 3600.0), WindowUpdate(f"own-{worker}", 1, 3600.0)], now
            )
            assert result.accepted
            shared_total += amount
            own_total += 1
            member = f"{worker}-{i % 50}"
            store.add_members([MemberUpdate("set", (member,), 3600.0)], now)
            members.add(member)
            if i % 25 == 0:
                store.set_lockout(Lockout(f"user-{worker}", now + 3600.0 + i, "r", "test"))
                store.active_lockouts(now)
            if i % 100 == 0:
                store.prune(now)
        store.close()
        results.put({"worker": worker, "shared": shared_total, "own": own_total, "members": sorted(members)})
    except BaseException:
        results.put({"error": traceback.format_exc()})
