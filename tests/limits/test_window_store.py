"""The WindowStore contract, run against the SQLite store and the in-memory one alike (and against each other)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enforcement.limits import (
    BUCKETS_PER_WINDOW,
    Lockout,
    MemberUpdate,
    MemoryWindowStore,
    WindowStore,
    WindowStoreError,
    WindowUpdate,
)
from gateway.store.limits_sqlite import SqliteWindowStore
from tests.limits._support import START


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WindowStore]:
    made: WindowStore = (
        SqliteWindowStore(tmp_path / "limits.db") if request.param == "sqlite" else MemoryWindowStore()
    )
    yield made
    made.close()


def add(
    store: WindowStore, key: str, amount: int, now: float, *, window: float = 60.0, limit: int | None = None
):
    return store.add([WindowUpdate(key, amount, window, limit)], now)


def test_sums_cover_exactly_the_window(store: WindowStore) -> None:
    assert add(store, "k", 10, START).sums == (10,)
    assert add(store, "k", 5, START + 0.99).sums == (15,)  # same 1 s bucket
    assert add(store, "k", 1, START + 30).sums == (16,)
    # Bucket [START, START+1) leaves the window when the clock reaches START + 60, not a moment earlier.
    assert add(store, "k", 0, START + 59.999).sums == (16,)
    assert add(store, "k", 0, START + 60.0).sums == (1,)
    assert add(store, "k", 0, START + 90.0).sums == (0,)


def test_keys_and_windows_are_independent(store: WindowStore) -> None:
    add(store, "a", 7, START)
    add(store, "b", 3, START, window=3600.0)
    assert add(store, "a", 0, START + 120).sums == (0,)
    assert add(store, "b", 0, START + 120, window=3600.0).sums == (3,)


def test_a_refused_call_writes_nothing(store: WindowStore) -> None:
    add(store, "records", 90, START)
    add(store, "bytes", 900, START)
    result = store.add(
        [WindowUpdate("bytes", 50, 60.0, None), WindowUpdate("records", 20, 60.0, 100)], START + 1
    )
    assert not result.accepted
    assert result.refused_by == 1
    assert result.sums == (950, 110)  # what the sums would have been
    # Neither counter moved, including the soft one listed first.
    assert add(store, "records", 0, START + 2).sums == (90,)
    assert add(store, "bytes", 0, START + 2).sums == (900,)
    # Exactly reaching the limit is allowed.
    assert add(store, "records", 10, START + 3, limit=100).accepted


def test_buckets_report_when_traffic_leaves(store: WindowStore) -> None:
    add(store, "k", 5, START + 0.5)
    add(store, "k", 7, START + 10.2)
    assert store.buckets("k", 60.0, START + 20) == [(START + 60.0, 5), (START + 70.0, 7)]
    assert store.buckets("k", 60.0, START + 65) == [(START + 70.0, 7)]
    assert store.buckets("missing", 60.0, START) == []


def test_member_sets_count_distinct_live_members(store: WindowStore) -> None:
    result = store.add_members([MemberUpdate("s", ("0", "1"), 600.0)], START)
    assert (result.accepted, result.counts) == (True, (2,))
    assert store.add_members([MemberUpdate("s", ("1", "2"), 600.0)], START + 1).counts == (3,)
    refused = store.add_members([MemberUpdate("s", ("3", "4"), 600.0, max_count=4)], START + 2)
    assert (refused.accepted, refused.counts, refused.refused_by) == (False, (5,), 0)
    # Nothing from the refused call was remembered; re-adding a known member never grows the set.
    assert store.add_members([MemberUpdate("s", ("0",), 600.0, max_count=3)], START + 3).counts == (3,)
    # Members expire ttl after they were last added: "0" was refreshed at START + 3.
    assert store.add_members([MemberUpdate("s", (), 600.0)], START + 601.5).counts == (1,)
    assert store.add_members([MemberUpdate("s", (), 600.0)], START + 603).counts == (0,)


def test_lockouts_keep_the_latest_until(store: WindowStore) -> None:
    store.set_lockout(Lockout("alice", START + 600, "r1", "too much", close_connection=True))
    store.set_lockout(Lockout("alice", START + 300, "r2", "shorter"))  # does not shorten the first
    store.set_lockout(Lockout("bob", START + 100, "r3", "briefly"))
    active = store.active_lockouts(START + 200)
    assert set(active) == {"alice"}
    assert active["alice"] == Lockout("alice", START + 600, "r1", "too much", True)
    store.set_lockout(Lockout("alice", START + 900, "r4", "longer"))
    assert store.active_lockouts(START + 700)["alice"].rule == "r4"
    assert store.active_lockouts(START + 900) == {}


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(min_value=0, max_value=50),  # amount
            st.floats(min_value=0, max_value=40, allow_nan=False),  # seconds since the previous op
            st.sampled_from([None, 60, 120]),  # limit
        ),
        max_size=40,
    )
)
def test_sqlite_and_memory_stores_agree(tmp_path_factory: pytest.TempPathFactory, ops) -> None:
    sqlite_store = SqliteWindowStore(tmp_path_factory.mktemp("diff") / "limits.db")
    memory_store = MemoryWindowStore()
    try:
        now = START
        events: list[tuple[str, float, int]] = []  # accepted additions, for a brute-force sum
        for key, amount, gap, limit in ops:
            now += gap
            update = [WindowUpdate(key, amount, 60.0, limit)]
            got_sqlite, got_memory = sqlite_store.add(update, now), memory_store.add(update, now)
            assert got_sqlite == got_memory
            bucket_s = 60.0 / BUCKETS_PER_WINDOW
            live = sum(
                a for k, t, a in events if k == key and t // bucket_s > now // bucket_s - BUCKETS_PER_WINDOW
            )
            assert got_sqlite.sums == (live + amount,)
            if got_sqlite.accepted:
                events.append((key, now, amount))
    finally:
        sqlite_store.close()


def test_sqlite_store_state_outlives_the_process_handle(tmp_path: Path) -> None:
    path = tmp_path / "limits.db"
    first = SqliteWindowStore(path)
    add(first, "k", 42, START)
    first.set_lockout(Lockout("alice", START + 600, "r", "why"))
    first.close()
    second = SqliteWindowStore(path)
    assert add(second, "k", 0, START + 1).sums == (42,)
    assert "alice" in second.active_lockouts(START + 1)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second.close()


def test_sqlite_prune_removes_only_what_can_no_longer_count(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "limits.db", prune_interval_s=3600)
    add(store, "old", 5, START)
    add(store, "young", 5, START + 50)
    store.add_members([MemberUpdate("s", ("0",), 10.0)], START)
    store.set_lockout(Lockout("alice", START + 30, "r", "why"))
    assert store.prune(START + 61) == 3
    assert store.row_counts() == {"window_buckets": 1, "window_members": 0, "lockouts": 0}
    assert add(store, "young", 0, START + 61).sums == (5,)
    store.close()


def test_sqlite_errors_surface_as_store_errors(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "limits.db")
    store._connection().execute("DROP TABLE window_buckets")  # a damaged database
    with pytest.raises(WindowStoreError, match="no such table"):
        add(store, "k", 1, START)
    store.close()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises((WindowStoreError, OSError)):
        SqliteWindowStore(blocker / "limits.db")


def test_sqlite_store_waits_for_a_writer_then_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "limits.db"
    store = SqliteWindowStore(path, busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(WindowStoreError, match="locked"):
            add(store, "k", 1, START)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert add(store, "k", 1, START).accepted  # and works again once the lock is gone
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_sqlite_store_reopens_after_fork(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "limits.db")
    add(store, "k", 1, START)
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        code = 1
        try:
            inherited = store._conn
            ok = add(store, "k", 2, START).sums == (3,) and store._conn is not inherited
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert add(store, "k", 0, START).sums == (3,)
    store.close()


def test_sqlite_store_refuses_a_database_of_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "limits.db"
    SqliteWindowStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE limits_meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(WindowStoreError, match="schema version 99"):
        SqliteWindowStore(path)
