"""Limits shared across real worker processes: the same principal on two processes hits the limit at the
configured count (within one batch), and the SQLite store stays exact under concurrent writers."""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import pytest

from gateway.enforcement.limits import MemberUpdate, WindowUpdate
from gateway.store.limits_sqlite import SqliteWindowStore
from tests.limits import _workers


@pytest.fixture
def spawn() -> Iterator[tuple[SpawnContext, Callable[..., SpawnProcess]]]:
    """Start spawn-context processes; teardown kills any still running."""
    ctx = multiprocessing.get_context("spawn")
    started: list[SpawnProcess] = []

    def start(target: Callable[..., None], *args: Any) -> SpawnProcess:
        process = ctx.Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield ctx, start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(10)


def collect(results: Any, count: int, processes: list[SpawnProcess]) -> list[dict[str, Any]]:
    reports = []
    for _ in range(count):
        try:
            report = results.get(timeout=120)
        except queue.Empty:
            pytest.fail(
                f"worker processes did not report in time (exit codes {[p.exitcode for p in processes]})"
            )
        assert "error" not in report, report.get("error")
        reports.append(report)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    return reports


LIMIT = 100_000


@pytest.mark.parametrize("batches", [(37, 37), (37, 53)])
def test_two_processes_reach_the_limit_at_the_configured_count(
    tmp_path: Path, spawn: tuple[SpawnContext, Callable[..., SpawnProcess]], batches: tuple[int, int]
) -> None:
    ctx, start = spawn
    path = str(tmp_path / "limits.db")
    SqliteWindowStore(path).close()  # the file exists before the race starts
    config = {
        "rules": [
            {
                "name": "volume",
                "groups": ["analysts"],
                "topics": ["customers.*"],
                "window": "1h",
                "max_records": LIMIT,
            }
        ]
    }
    # A barrier, not an event: both processes start counting only once both have finished importing.
    go, results = ctx.Barrier(len(batches)), ctx.Queue()
    processes = [start(_workers.consume_until_blocked, path, config, batch, go, results) for batch in batches]
    reports = collect(results, 2, processes)

    total = sum(r["delivered"] for r in reports)
    # Never past the limit, and short of it by less than one batch of whoever stopped last.
    assert LIMIT - min(batches) < total <= LIMIT
    assert all(r["retries_blocked"] for r in reports)
    # Both processes really were counting at the same time (their delivery periods overlap).
    assert all(r["delivered"] > 0 for r in reports)
    first, second = reports
    assert first["first"] < second["last"] and second["first"] < first["last"]


def test_store_survives_concurrent_writers(
    tmp_path: Path, spawn: tuple[SpawnContext, Callable[..., SpawnProcess]]
) -> None:
    ctx, start = spawn
    path = str(tmp_path / "limits.db")  # created by the racing workers themselves
    workers, iterations = 3, 1500
    go, results = ctx.Barrier(workers), ctx.Queue()
    processes = [
        start(_workers.hammer_store, path, worker, iterations, go, results) for worker in range(workers)
    ]
    reports = collect(results, workers, processes)

    store = SqliteWindowStore(path)
    now = time.time()
    # No update was lost: each window sum is exactly what the workers added.
    assert store.add([WindowUpdate("shared", 0, 3600.0)], now).sums == (sum(r["shared"] for r in reports),)
    for report in reports:
        assert store.add([WindowUpdate(f"own-{report['worker']}", 0, 3600.0)], now).sums == (iterations,)
    members = {m for r in reports for m in r["members"]}
    assert store.add_members([MemberUpdate("set", (), 3600.0)], now).counts == (len(members),)
    assert set(store.active_lockouts(now)) == {f"user-{w}" for w in range(workers)}
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
