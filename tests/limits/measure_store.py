"""Measure the limits store's hot path: `python -m tests.limits.measure_store [--ops N]`.

Reports increments per second and per-call latency of `SqliteWindowStore.add` (two counters, as a volume rule
with max_records and max_bytes makes) for 1, 2 and 4 processes hammering one principal's counters at once, and
the engine's cost per `after_fetch` for a watched and an unwatched topic. It informs; it asserts nothing (the
numbers of a shared machine are noisy). It belongs with the microbenchmarks under bench/ once those grow a
multi-process harness.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.enforcement.limits import LimitsEngine, MemoryWindowStore, WindowUpdate, parse_limits
from gateway.store.limits_sqlite import SqliteWindowStore


@dataclass(frozen=True)
class _Principal:
    sub: str
    groups: tuple[str, ...] = ()


def _hammer(path: str, ops: int, barrier: Any, results: Any) -> None:
    store = SqliteWindowStore(path)
    barrier.wait(60)
    latencies = []
    began = time.perf_counter()
    for _ in range(ops):
        t0 = time.perf_counter()
        store.add(
            [WindowUpdate("records", 10, 60.0, 10**12), WindowUpdate("bytes", 1000, 60.0, None)], time.time()
        )
        latencies.append(time.perf_counter() - t0)
    results.put((time.perf_counter() - began, latencies))


def measure_store(ops: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "limits.db")
        SqliteWindowStore(path).close()
        for processes in (1, 2, 4):
            barrier, results = ctx.Barrier(processes), ctx.Queue()
            workers = [
                ctx.Process(target=_hammer, args=(path, ops, barrier, results)) for _ in range(processes)
            ]
            for worker in workers:
                worker.start()
            reports = [results.get(timeout=300) for _ in workers]
            for worker in workers:
                worker.join()
            wall = max(elapsed for elapsed, _ in reports)
            latencies = sorted(lat for _, lats in reports for lat in lats)
            p99 = latencies[int(len(latencies) * 0.99)]
            print(
                f"sqlite add, {processes} process(es): {processes * ops / wall:,.0f} adds/s in total; "
                f"p50 {statistics.median(latencies) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us, "
                f"max {latencies[-1] * 1e3:.1f} ms"
            )


def measure_engine(ops: int) -> None:
    config = parse_limits(
        {
            "rules": [
                {
                    "name": "v",
                    "groups": ["*"],
                    "topics": ["customers.*"],
                    "max_records": 10**12,
                    "max_bytes": 10**15,
                }
            ]
        }
    )
    alice = _Principal("alice", ("analysts",))
    with tempfile.TemporaryDirectory() as tmp:
        for label, store in (
            ("sqlite", SqliteWindowStore(Path(tmp) / "l.db")),
            ("memory", MemoryWindowStore()),
        ):
            engine = LimitsEngine(config, store)
            for topic in ("customers.a", "orders.a"):
                began = time.perf_counter()
                for _ in range(ops):
                    engine.after_fetch(alice, topic, 10, 1000, {})
                per_call = (time.perf_counter() - began) / ops
                watched = "watched" if topic.startswith("customers") else "unwatched"
                print(f"engine after_fetch, {label} store, {watched} topic: {per_call * 1e6:.2f} us/call")
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000, help="calls per process (default 5000)")
    args = parser.parse_args()
    measure_store(args.ops)
    measure_engine(args.ops)


if __name__ == "__main__":
    main()
