"""SqliteApprovalStore semantics, within one process and across several processes sharing the file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRefused
from gateway.store.approvals_base import StoreError, open_approval_store
from gateway.store.approvals_sqlite import SqliteApprovalStore
from tests.approvals.conftest import PII, make_request
from tests.approvals.helpers import ROOT


@dataclass(frozen=True)
class Who:
    sub: str
    groups: tuple[str, ...] = ()


CAROL = Who("carol", ("security-oncall",))
ALICE = Who("alice", ("analysts",))


def test_file_is_wal_with_busy_timeout(store: SqliteApprovalStore, tmp_path: Path) -> None:
    make_request(store)
    raw = sqlite3.connect(tmp_path / "approvals.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    assert store._connect().execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_request_or_existing_is_idempotent_per_key(store: SqliteApprovalStore) -> None:
    first = make_request(store)
    again, created = store.request_or_existing(
        approvals.new_request(
            approvals.Requester("alice", None, ("analysts",), None, "other-client"),
            "consume",
            PII,
            approvals.ApprovalSpec("pii", ("security-oncall",), 60, 5),
            time.time(),
        )
    )
    assert not created and again == first
    # another action, resource or requester is another request
    other, created = store.request_or_existing(
        approvals.new_request(
            approvals.Requester("alice"),
            "produce",
            PII,
            approvals.ApprovalSpec("pii", ("x",), 60, 5),
            time.time(),
        )
    )
    assert created and other.id != first.id
    assert len(store.list("pending")) == 2
    assert store.get(first.id) == first
    assert store.get("00000000-0000-0000-0000-000000000000") is None


def test_approve_grant_then_revoke(store: SqliteApprovalStore) -> None:
    record = make_request(store)
    now = time.time()
    assert store.active_grant("alice", "consume", PII, now) is None
    approved = store.approve(record.id, CAROL, "INC-4711", now)
    assert store.get(record.id) == approved
    assert approved.status == "approved" and approved.decided_by == "carol"
    assert approved.grant_expires_at == pytest.approx(now + 3600)
    assert store.active_grant("alice", "consume", PII, now + 10) == approved
    assert store.active_grant("alice", "consume", PII, now + 3600) is None  # TTL applies without a sweep
    assert store.active_grant("alice", "produce", PII, now + 10) is None
    assert store.active_grant("bob", "consume", PII, now + 10) is None
    revoked = store.revoke(record.id, CAROL, "incident closed", now + 20)
    assert revoked.status == "revoked" and store.active_grant("alice", "consume", PII, now + 21) is None
    # after the decision, a new request for the same key may be filed
    assert make_request(store).id != record.id


def test_refusals_come_from_the_sans_io_rules(store: SqliteApprovalStore) -> None:
    record = make_request(store, "erin", groups=("security-oncall", "analysts"))
    with pytest.raises(ApprovalRefused) as refused:
        store.approve(record.id, Who("erin", ("security-oncall", "analysts")), "mine", time.time())
    assert refused.value.code == "self_approval"
    with pytest.raises(ApprovalRefused) as refused:
        store.approve(record.id, Who("mallory"), "hi", time.time())
    assert refused.value.code == "not_reviewer"
    with pytest.raises(ApprovalRefused) as refused:
        store.approve("no-such-id", CAROL, "x", time.time())
    assert refused.value.code == "not_found"
    assert store.get(record.id) == record  # nothing changed
    store.deny(record.id, CAROL, "no ticket", time.time())
    with pytest.raises(ApprovalRefused) as refused:
        store.approve(record.id, CAROL, "changed my mind", time.time())
    assert refused.value.code == "conflict"


def test_expiry_of_pending_requests_and_grants(store: SqliteApprovalStore) -> None:
    t0 = time.time()
    old = make_request(store, "alice", now=t0 - 100)
    young = make_request(store, "dave", now=t0 - 10)
    expired = store.expire_pending(t0, older_than_s=50)
    assert [r.id for r in expired] == [old.id]
    assert store.get(old.id).status == "expired"  # type: ignore[union-attr]
    assert store.get(young.id).status == "pending"  # type: ignore[union-attr]
    store.approve(young.id, CAROL, "ok", t0 - 3600)  # granted an hour ago with a one-hour TTL
    lapsed = store.expire_grants(t0)
    assert [r.id for r in lapsed] == [young.id] and lapsed[0].decided_by == "carol"
    assert store.expire_grants(t0) == [] and store.expire_pending(t0, 50) == []


def test_version_and_change_log(store: SqliteApprovalStore) -> None:
    v0 = store.version()
    record = make_request(store)
    v1 = store.version()
    assert v1 > v0
    assert store.version() == v1  # reading changes nothing
    store.approve(record.id, CAROL, "ok", time.time())
    changes = store.changed_since(v0)
    assert [e.kind for e in changes.events] == ["requested", "approved"]
    assert changes.events[0].record.status == "pending"  # snapshots as they were at the time
    assert changes.events[1].record.decided_by == "carol" and changes.events[1].actor == "carol"
    assert changes.version == store.version()
    assert store.changed_since(changes.version).events == ()


def test_claim_events_hands_each_event_to_one_consumer_once(store: SqliteApprovalStore) -> None:
    make_request(store, "before-registration")
    assert store.claim_events("webhook") == []  # registration: history is not replayed
    first = make_request(store, "alice")
    second = make_request(store, "dave")
    claimed = store.claim_events("webhook", limit=1)
    assert [e.record.id for e in claimed] == [first.id]
    assert [e.record.id for e in store.claim_events("webhook")] == [second.id]
    assert store.claim_events("webhook") == []
    other_store = SqliteApprovalStore(store.path)  # another process would see the same cursor
    try:
        assert other_store.claim_events("webhook") == []
    finally:
        other_store.close()


def test_prune_keeps_pending_and_active(store: SqliteApprovalStore) -> None:
    t0 = time.time()
    denied = make_request(store, "alice", now=t0 - 100)
    store.deny(denied.id, CAROL, "no", t0 - 90)
    pending = make_request(store, "dave", now=t0 - 100)
    version = store.version()
    assert store.prune(t0 - 50) == 1
    assert store.get(denied.id) is None and store.get(pending.id) is not None
    assert store.version() == version  # the sequence never goes back, even with its events pruned
    assert store.changed_since(0).events == ()


def test_list_filters_and_orders(store: SqliteApprovalStore) -> None:
    t0 = time.time()
    a = make_request(store, "alice", now=t0 - 30)
    b = make_request(store, "dave", now=t0 - 20)
    store.approve(a.id, CAROL, "ok", t0 - 5)
    assert [r.id for r in store.list()] == [a.id, b.id]  # newest activity first
    assert [r.id for r in store.list("approved")] == [a.id]
    assert [r.id for r in store.list(["approved", "pending"], limit=1)] == [a.id]
    assert [r.id for r in store.list(requester_sub="dave")] == [b.id]
    with pytest.raises(ValueError, match="unknown status"):
        store.list("granted")


def test_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="approval store"):
        SqliteApprovalStore(tmp_path / "file" / "approvals.db")
    not_db = tmp_path / "garbage.db"
    not_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        open_approval_store("sqlite", not_db)
    with pytest.raises(ValueError, match="unknown approval store type"):
        open_approval_store("redis", tmp_path / "x")  # type: ignore[arg-type]


def test_fork_child_opens_its_own_connection(store: SqliteApprovalStore) -> None:
    record = make_request(store)
    pid = os.fork()
    if pid == 0:  # child: use the inherited store object; the rule says it must reconnect, not share
        code = 1
        try:
            store.approve(record.id, CAROL, "from the child", time.time())
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(record.id).decided_by == "carol"  # type: ignore[union-attr]
    make_request(store, "dave")  # the parent's connection still works


# ---------------------------------------------------------------------------------------------------------
# several processes


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.approvals.store_process", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _results(procs: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_racing_processes_create_one_pending_request(tmp_path: Path) -> None:
    db, go = tmp_path / "approvals.db", tmp_path / "go"
    SqliteApprovalStore(db).close()
    procs = [_spawn("request", str(db), str(go)) for _ in range(4)]
    time.sleep(0.5)  # let them start up to the go signal (a slow start only makes the race less tight)
    go.touch()
    results = _results(procs)
    assert sorted(r["created"] for r in results) == [False, False, False, True]
    assert len({r["id"] for r in results}) == 1
    store = SqliteApprovalStore(db)
    assert len(store.list("pending")) == 1
    store.close()


def test_racing_approve_and_deny_one_wins(tmp_path: Path) -> None:
    db, go = tmp_path / "approvals.db", tmp_path / "go"
    store = SqliteApprovalStore(db)
    record = make_request(store)
    procs = [_spawn("decide", str(db), record.id, verb, str(go)) for verb in ("approve", "deny", "approve")]
    time.sleep(0.5)
    go.touch()
    results = _results(procs)
    winners = [r for r in results if r["won"]]
    assert len(winners) == 1
    assert all(r["code"] == "conflict" for r in results if not r["won"])
    assert store.get(record.id).status == winners[0]["status"]  # type: ignore[union-attr]
    assert [e.kind for e in store.changed_since(0).events] == ["requested", winners[0]["status"]]
    store.close()


def test_held_request_in_another_process_wakes_promptly_on_approval(tmp_path: Path) -> None:
    db = tmp_path / "approvals.db"
    store = SqliteApprovalStore(db)
    record = make_request(store)
    holder = _spawn("hold", str(db), record.id, "20")
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline()) == {"waiting": True}
    time.sleep(0.6)  # the holder keeps polling without a decision: it must not wake
    assert holder.poll() is None
    store.approve(record.id, CAROL, "approved while held", time.time())
    approved_at = time.time()
    out, err = holder.communicate(timeout=20)
    assert holder.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "approved"
    latency = result["woke_at"] - approved_at
    print(
        f"approval -> held request woke in another process: {latency * 1000:.0f} ms "
        f"(poll interval 150 ms, {result['polls']} polls)"
    )
    assert latency < 1.0, latency  # one poll interval plus scheduling on a loaded machine
    assert 3 <= result["polls"] <= 40  # it polled while waiting (no busy loop: ~every 150 ms)
    store.close()


def test_hold_times_out_as_pending(tmp_path: Path) -> None:
    db = tmp_path / "approvals.db"
    store = SqliteApprovalStore(db)
    record = make_request(store)
    out, err = _spawn("hold", str(db), record.id, "0.5").communicate(timeout=20)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "pending" and 0.45 <= result["waited_s"] < 2.0, (result, err)
    store.close()
