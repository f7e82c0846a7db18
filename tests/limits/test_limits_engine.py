"""The limits engine as transcripts: traffic in (with an injected clock), verdicts out.

Every scenario runs against the shared SQLite store and the in-memory store, so the engine is checked with the
store it meets in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.enforcement.limits import (
    ALLOW,
    NO_INTEREST,
    LimitsEngine,
    LimitsError,
    MemoryWindowStore,
    Verdict,
    WindowStore,
    WindowStoreError,
    most_severe,
    parse_limits,
)
from gateway.store.limits_sqlite import SqliteWindowStore
from tests.limits._support import ALICE, BACKUP, BOB, OUTSIDER, START, FakeClock, Who, limits

KNOWN = {"us_ssn", "credit_card", "email", "private_key", "aws_access_key"}


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WindowStore]:
    made: WindowStore = (
        SqliteWindowStore(tmp_path / "limits.db") if request.param == "sqlite" else MemoryWindowStore()
    )
    yield made
    made.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def engine_for(store: WindowStore, clock: FakeClock, **sections: object) -> LimitsEngine:
    return LimitsEngine(limits(**sections), store, clock=clock, known_detectors=KNOWN)


VOLUME = {
    "name": "customers-volume",
    "groups": ["analysts"],
    "topics": ["customers.*"],
    "window": "1m",
    "max_records": 1000,
    "max_findings": {"us_ssn": 50},
}


# ---- volume windows ------------------------------------------------------------------------------------


def test_block_keeps_delivered_records_at_or_below_the_limit(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, rules=[VOLUME])
    delivered = 0
    for _ in range(20):
        verdict = engine.after_fetch(ALICE, "customers.accounts", 300, 30_000, {})
        if verdict.blocks:
            break
        assert verdict == ALLOW
        delivered += 300
        clock.advance(1)
    assert delivered == 900  # a 4th batch of 300 would make 1200 > 1000
    assert verdict.rule == "customers-volume" and verdict.kind == "records"
    assert "1200 records in 1m" in verdict.reason and "limit of 1000" in verdict.reason
    # The refused batch was not counted: a batch that still fits is delivered.
    assert engine.after_fetch(ALICE, "customers.accounts", 100, 10_000, {}).allows
    assert engine.after_fetch(ALICE, "customers.accounts", 1, 100, {}).blocks


def test_the_window_slides(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, rules=[VOLUME])
    assert engine.after_fetch(ALICE, "customers.a", 600, 1, {}).allows  # at START
    clock.advance(30)
    assert engine.after_fetch(ALICE, "customers.a", 400, 1, {}).allows  # START + 30: window holds 1000
    assert engine.after_fetch(ALICE, "customers.a", 1, 1, {}).blocks
    clock.advance(29.9)  # START + 59.9: the first 600 are still inside
    assert engine.after_fetch(ALICE, "customers.a", 1, 1, {}).blocks
    clock.advance(0.1)  # START + 60: they left
    assert engine.after_fetch(ALICE, "customers.a", 600, 1, {}).allows
    assert engine.after_fetch(ALICE, "customers.a", 1, 1, {}).blocks


def test_findings_limit_counts_detector_hits(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, rules=[VOLUME])
    assert engine.interest(ALICE, "customers.a").fetch_detectors == {"us_ssn"}
    assert engine.after_fetch(ALICE, "customers.a", 10, 1, {"us_ssn": 30, "email": 500}).allows
    verdict = engine.after_fetch(ALICE, "customers.a", 10, 1, {"us_ssn": 21})
    assert verdict.blocks and verdict.kind == "findings:us_ssn"
    assert "51 us_ssn findings" in verdict.reason


def test_per_principal_sums_topics_and_per_topic_separates_them(store: WindowStore, clock: FakeClock) -> None:
    per_topic = {
        **VOLUME,
        "name": "per-topic",
        "topics": ["orders.*"],
        "per": "principal_topic",
        "max_records": 100,
    }
    engine = engine_for(store, clock, rules=[VOLUME, per_topic])
    assert engine.after_fetch(ALICE, "customers.a", 600, 1, {}).allows
    assert engine.after_fetch(ALICE, "customers.b", 401, 1, {}).blocks  # same window across customers.*
    assert engine.after_fetch(ALICE, "orders.a", 100, 1, {}).allows
    assert engine.after_fetch(ALICE, "orders.b", 100, 1, {}).allows  # a window of its own
    assert engine.after_fetch(ALICE, "orders.b", 1, 1, {}).blocks
    # Another principal has windows of its own.
    assert engine.after_fetch(BOB, "customers.a", 1000, 1, {}).allows


def test_a_consumer_no_rule_watches_is_untouched(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(
        store,
        clock,
        rules=[VOLUME],
        bulk_read=[
            {
                "name": "bulk",
                "groups": ["*"],
                "topics": ["customers.*"],
                "max_partitions_from_earliest": 2,
                "max_fetch_bytes": 1_000_000,
            }
        ],
    )
    assert engine.interest(OUTSIDER, "customers.a").count_fetch is False  # not an analyst
    assert engine.interest(ALICE, "orders.a") == NO_INTEREST
    for who, topic in ((OUTSIDER, "customers.a"), (ALICE, "orders.a")):
        for _ in range(50):
            assert engine.after_fetch(who, topic, 10_000, 10_000_000, {"us_ssn": 100}) is ALLOW
    # A normal consumer of the watched topic, within limits, reading from committed offsets: all allowed.
    for offset in range(0, 500, 50):
        partitions = [(0, 1000 + offset, False), (1, 2000 + offset, False), (2, 3000 + offset, False)]
        assert engine.before_fetch(ALICE, "customers.a", partitions, 52_428_800 // 100) is ALLOW
        assert engine.after_fetch(ALICE, "customers.a", 50, 5_000, {"us_ssn": 1}) is ALLOW
        clock.advance(2)


def test_exempt_principals_are_not_counted(store: WindowStore, clock: FakeClock) -> None:
    rule = {**VOLUME, "groups": ["*"], "exempt_groups": ["backup"], "exempt_subjects": ["bob"]}
    engine = engine_for(store, clock, rules=[rule])
    assert engine.after_fetch(BACKUP, "customers.a", 10_000, 1, {}).allows
    assert engine.after_fetch(BOB, "customers.a", 10_000, 1, {}).allows
    assert engine.after_fetch(OUTSIDER, "customers.a", 10_000, 1, {}).blocks


# ---- throttle ------------------------------------------------------------------------------------------


THROTTLE = {**VOLUME, "name": "throttled", "action": "throttle", "max_records": 100, "max_findings": None}


@pytest.mark.parametrize(
    ("batches", "expected_ms"),
    [
        # (seconds after START, records): the oldest bucket leaving at START+60 brings 120 back to 60 <= 100.
        ([(0, 60), (10, 30), (20, 30)], 40_000),
        # Two buckets must leave: 115 - 5 = 110 > 100, - 10 = 100 at START+65.
        ([(0, 5), (5, 10), (20, 100)], 45_000),
        # The newest bucket alone is over the limit: it must leave the window (at START+60, 59.5 s later).
        ([(0.5, 150)], 59_500),
    ],
)
def test_throttle_waits_until_the_window_falls_back_under_the_limit(
    store: WindowStore, clock: FakeClock, batches: list[tuple[float, int]], expected_ms: int
) -> None:
    engine = LimitsEngine(limits(rules=[THROTTLE], max_throttle="2m"), store, clock=clock)
    verdicts = []
    for at, records in batches:
        clock.now = START + at
        verdicts.append(engine.after_fetch(ALICE, "customers.a", records, 1, {}))
    assert all(v.action == "allow" for v in verdicts[:-1])
    last = verdicts[-1]
    assert last.action == "throttle" and last.rule == "throttled" and last.kind == "records"
    assert last.throttle_ms == expected_ms
    # Waiting that long is exactly enough.
    clock.advance(last.throttle_ms / 1000)
    assert engine.after_fetch(ALICE, "customers.a", 0, 0, {}) is ALLOW


def test_throttle_is_capped_by_max_throttle(store: WindowStore, clock: FakeClock) -> None:
    engine = LimitsEngine(limits(rules=[THROTTLE], max_throttle="5s"), store, clock=clock)
    verdict = engine.after_fetch(ALICE, "customers.a", 150, 1, {})
    assert verdict.action == "throttle" and verdict.throttle_ms == 5000


def test_a_consumer_that_honours_throttle_is_slowed_not_failed(store: WindowStore, clock: FakeClock) -> None:
    """A client fetching as fast as it may, waiting throttle_ms whenever asked: every batch is delivered, and no
    60 s window ever holds more than the limit plus one batch."""
    engine = LimitsEngine(limits(rules=[THROTTLE], max_throttle="1m"), store, clock=clock)
    deliveries: list[tuple[float, int]] = []
    throttled = 0
    while clock.now < START + 600:
        verdict = engine.after_fetch(ALICE, "customers.a", 7, 700, {})
        assert verdict.action in ("allow", "throttle")  # never blocked
        throttled += verdict.action == "throttle"
        deliveries.append((clock.now, 7))
        clock.advance(verdict.throttle_ms / 1000 + 0.05)
    assert throttled >= 9  # at least once per window after the first
    total = sum(n for _, n in deliveries)
    assert 900 <= total <= 1000 + 7 * 10  # about 100 per minute for 10 minutes
    for start, _ in deliveries:
        in_window = sum(n for t, n in deliveries if start <= t < start + 59)
        assert in_window <= 100 + 7


# ---- alert (shadow mode) -------------------------------------------------------------------------------


def test_alert_never_blocks_and_reports_the_crossing_once(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, rules=[{**VOLUME, "name": "shadow", "action": "alert"}])
    verdicts = [engine.after_fetch(ALICE, "customers.a", 300, 1, {}) for _ in range(6)]
    assert [v.action for v in verdicts] == ["allow", "allow", "allow", "alert", "allow", "allow"]
    assert verdicts[3].rule == "shadow" and "1200 records" in verdicts[3].reason
    clock.advance(60)  # the window empties; crossing again alerts again
    assert [engine.after_fetch(ALICE, "customers.a", 600, 1, {}).action for _ in range(2)] == [
        "allow",
        "alert",
    ]


# ---- lockout -------------------------------------------------------------------------------------------


def test_lockout_shuts_the_principal_out_everywhere_until_it_ends(tmp_path: Path, clock: FakeClock) -> None:
    rule = {**VOLUME, "lockout": "10m", "close_connection": True}
    worker_a = LimitsEngine(
        limits(rules=[rule], lockout_poll="1s"), SqliteWindowStore(tmp_path / "l.db"), clock=clock
    )
    worker_b = LimitsEngine(
        limits(rules=[rule], lockout_poll="1s"), SqliteWindowStore(tmp_path / "l.db"), clock=clock
    )
    assert worker_b.locked_out(ALICE) is None  # worker B has read the (empty) lockouts at START
    assert worker_a.after_fetch(ALICE, "customers.a", 1000, 1, {}).allows
    verdict = worker_a.after_fetch(ALICE, "customers.a", 1, 1, {})
    assert verdict.blocks and verdict.close_connection and verdict.lockout_until == START + 600
    locked = worker_a.locked_out(ALICE)  # at once on the worker that set it
    assert locked is not None and locked.blocks and locked.kind == "lockout" and locked.close_connection
    assert locked.rule == "customers-volume" and "1001 records" in locked.reason
    assert worker_a.locked_out(BOB) is None
    assert worker_b.locked_out(ALICE) is None  # B has not polled yet...
    clock.advance(1)
    assert worker_b.locked_out(ALICE) is not None  # ...and knows within lockout_poll
    clock.advance(598.9)
    assert worker_a.locked_out(ALICE) is not None and worker_b.locked_out(ALICE) is not None
    clock.advance(0.2)
    assert worker_a.locked_out(ALICE) is None and worker_b.locked_out(ALICE) is None


def test_no_lockout_rule_means_no_store_reads(clock: FakeClock) -> None:
    class NoReads(MemoryWindowStore):
        def active_lockouts(self, now: float) -> dict:  # type: ignore[override]
            raise AssertionError("read lockouts although no rule can set one")

    engine = LimitsEngine(limits(rules=[VOLUME]), NoReads(), clock=clock)
    assert engine.locked_out(ALICE) is None


# ---- bulk-read patterns --------------------------------------------------------------------------------


BULK = {"name": "pii-bulk", "groups": ["*"], "topics": ["customers.pii.*"], "window": "10m"}


def test_reading_many_partitions_from_earliest_is_blocked_before_data_leaves(
    store: WindowStore, clock: FakeClock
) -> None:
    engine = engine_for(store, clock, bulk_read=[{**BULK, "max_partitions_from_earliest": 3}])
    topic = "customers.pii.people"
    # A client's fetches go to several brokers (connections, maybe workers): each carries some partitions.
    assert engine.before_fetch(ALICE, topic, [(0, 0, True), (1, 0, True)], 1_048_576) is ALLOW
    assert engine.before_fetch(ALICE, topic, [(2, 0, True), (5, 9000, False)], 1_048_576) is ALLOW
    verdict = engine.before_fetch(ALICE, topic, [(3, 0, True)], 1_048_576)
    assert verdict.blocks and verdict.kind == "partitions_from_earliest" and verdict.rule == "pii-bulk"
    assert "4 partitions" in verdict.reason
    # Partitions already allowed stay readable from earliest (a retry); the refused one was not remembered.
    assert engine.before_fetch(ALICE, topic, [(0, 0, True), (2, 0, True)], 1_048_576) is ALLOW
    assert engine.before_fetch(ALICE, topic, [(3, 0, True)], 1_048_576).blocks
    # Reading on from where the partitions are now is normal consumption.
    assert engine.before_fetch(ALICE, topic, [(3, 5000, False), (4, 7, False)], 1_048_576) is ALLOW
    # The memory is per principal and lasts the rule's window.
    assert engine.before_fetch(BOB, topic, [(3, 0, True)], 1_048_576) is ALLOW
    clock.advance(600)
    assert engine.before_fetch(ALICE, topic, [(3, 0, True)], 1_048_576) is ALLOW


def test_list_offsets_earliest_followed_by_fetch_counts_as_reading_from_earliest(
    store: WindowStore, clock: FakeClock
) -> None:
    engine = engine_for(store, clock, bulk_read=[{**BULK, "earliest_full_read": True}])
    topic = "customers.pii.people"
    assert engine.interest(ALICE, topic).bulk_read
    engine.on_list_offsets(ALICE, topic, {0: 120, 1: 80, 2: 0}, timestamp=-2)
    engine.on_list_offsets(ALICE, topic, {0: 99_999}, timestamp=-1)  # latest lookups do not count
    # A fetch at the committed offset, beyond the earliest, is not a read from earliest.
    assert engine.before_fetch(ALICE, topic, [(0, 5000, False)], 1 << 20, partition_count=3) is ALLOW
    assert (
        engine.before_fetch(ALICE, topic, [(0, 120, False), (1, 80, False)], 1 << 20, partition_count=3)
        is ALLOW
    )
    verdict = engine.before_fetch(ALICE, topic, [(2, 0, False)], 1 << 20, partition_count=3)
    assert verdict.blocks and verdict.kind == "earliest_full_read"
    assert "all 3 partitions" in verdict.reason
    # Another principal's lookups are its own.
    assert engine.before_fetch(BOB, topic, [(2, 0, False)], 1 << 20, partition_count=3) is ALLOW
    # Without the topic's partition count the pattern cannot be judged and stays quiet.
    assert engine.before_fetch(ALICE, topic, [(2, 0, False)], 1 << 20) is ALLOW


def test_a_fetch_asking_for_too_many_bytes_is_refused(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, bulk_read=[{**BULK, "max_fetch_bytes": 1_048_576}])
    assert engine.before_fetch(ALICE, "customers.pii.a", [(0, 10, False)], 1_048_576) is ALLOW
    verdict = engine.before_fetch(ALICE, "customers.pii.a", [(0, 10, False)], 52_428_800)
    assert verdict.blocks and verdict.kind == "fetch_bytes" and "52428800" in verdict.reason
    assert engine.before_fetch(ALICE, "customers.public", [(0, 10, False)], 52_428_800) is ALLOW


def test_wildcard_subscription_to_privileged_topics(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(
        store,
        clock,
        bulk_read=[
            {**BULK, "topics": ["customers.pii.*", "hr.salaries"], "deny_wildcard_subscription": True}
        ],
    )
    # A pattern the client resolved (classic JoinGroup after an all-topics Metadata request).
    verdict = engine.on_subscription(ALICE, ["orders", "customers.pii.people"], wildcard=True)
    assert (
        verdict.blocks
        and verdict.kind == "wildcard_subscription"
        and "customers.pii.people" in verdict.reason
    )
    # A KIP-848 regex covering an exact privileged name, even before topics are resolved.
    assert engine.on_subscription(ALICE, [], pattern=r"^hr\..*").blocks
    assert engine.on_subscription(ALICE, ["orders.eu"], pattern=r"orders\..*") is ALLOW
    # Naming privileged topics explicitly is not a wildcard subscription (policy decides on those).
    assert engine.on_subscription(ALICE, ["customers.pii.people"]) is ALLOW
    assert engine.on_subscription(
        ALICE, ["customers.pii.x"], pattern="(["
    ).blocks  # bad regex: topics still count


@pytest.mark.parametrize("action", ["alert", "throttle"])
def test_bulk_read_patterns_in_alert_and_throttle_modes(
    store: WindowStore, clock: FakeClock, action: str
) -> None:
    engine = engine_for(
        store,
        clock,
        bulk_read=[
            {
                **BULK,
                "action": action,
                "throttle": "2s",
                "max_partitions_from_earliest": 1,
                "max_fetch_bytes": 100,
            }
        ],
    )
    topic = "customers.pii.people"
    first = engine.before_fetch(ALICE, topic, [(0, 0, True)], 100)
    second = engine.before_fetch(ALICE, topic, [(1, 0, True)], 100)
    too_big = engine.before_fetch(ALICE, topic, [(1, 10, False)], 101)
    assert first is ALLOW
    assert second.action == action and second.kind == "partitions_from_earliest" and not second.blocks
    assert too_big.action == action and too_big.kind == "fetch_bytes"
    assert second.throttle_ms == (2000 if action == "throttle" else 0)


# ---- produce-side content rules ------------------------------------------------------------------------


CONTENT = {"name": "no-secrets", "detectors": ["private_key", "aws_access_key"], "allow_topics": ["vault.*"]}


def test_publishing_a_private_key_is_refused_except_to_secret_topics(
    store: WindowStore, clock: FakeClock
) -> None:
    engine = engine_for(store, clock, content=[CONTENT])
    assert engine.interest(ALICE, "orders").produce_detectors == {"private_key", "aws_access_key"}
    assert engine.interest(ALICE, "vault.keys").produce_detectors == frozenset()
    verdict = engine.before_produce(ALICE, "orders", {"private_key": 1, "email": 3})
    assert verdict.blocks and verdict.kind == "content" and verdict.rule == "no-secrets"
    assert "1 private_key" in verdict.reason
    assert engine.before_produce(ALICE, "orders", {"email": 3}) is ALLOW
    assert engine.before_produce(ALICE, "vault.keys", {"private_key": 1}) is ALLOW


def test_content_rule_threshold_and_alert(store: WindowStore, clock: FakeClock) -> None:
    engine = engine_for(store, clock, content=[{**CONTENT, "min_findings": 2, "action": "alert"}])
    assert engine.before_produce(ALICE, "orders", {"aws_access_key": 1}) is ALLOW
    verdict = engine.before_produce(ALICE, "orders", {"aws_access_key": 1, "private_key": 1})
    assert verdict.action == "alert"


# ---- combining and failures ----------------------------------------------------------------------------


def test_most_severe_leads_and_keeps_every_hit() -> None:
    alert = Verdict("alert", "a", "a")
    slow = Verdict("throttle", "t1", "t1", throttle_ms=300)
    slower = Verdict("throttle", "t2", "t2", throttle_ms=900)
    block = Verdict("block", "b", "b", close_connection=True)
    assert most_severe([]) is ALLOW and most_severe([ALLOW, ALLOW]) is ALLOW
    merged = most_severe([alert, slow, slower])
    assert (merged.action, merged.rule, merged.throttle_ms) == ("throttle", "t1", 900)
    assert set(merged.also) == {alert, slower}
    merged = most_severe([merged, block])
    assert merged.action == "block" and merged.close_connection and merged.throttle_ms == 0
    assert {v.rule for v in merged.also} == {"a", "t1", "t2"}


class BrokenStore(MemoryWindowStore):
    def add(self, updates, now):  # type: ignore[no-untyped-def]
        raise WindowStoreError("disk I/O error")

    def add_members(self, updates, now):  # type: ignore[no-untyped-def]
        raise WindowStoreError("disk I/O error")


@pytest.mark.parametrize(("on_error", "action"), [("allow", "alert"), ("block", "block")])
def test_a_store_failure_follows_on_store_error(clock: FakeClock, on_error: str, action: str) -> None:
    engine = LimitsEngine(
        limits(
            rules=[VOLUME], bulk_read=[{**BULK, "max_partitions_from_earliest": 1}], on_store_error=on_error
        ),
        BrokenStore(),
        clock=clock,
    )
    for verdict in (
        engine.after_fetch(ALICE, "customers.a", 1, 1, {}),
        engine.before_fetch(ALICE, "customers.pii.a", [(0, 0, True)], None),
    ):
        assert verdict.action == action and verdict.kind == "store_error" and verdict.rule is None


def test_the_hot_path_is_memoised(clock: FakeClock) -> None:
    engine = LimitsEngine(limits(rules=[VOLUME]), MemoryWindowStore(), clock=clock)
    for _ in range(100):
        engine.after_fetch(Who("alice", ("analysts",)), "customers.a", 1, 1, {})
        engine.after_fetch(Who("zed", ()), "elsewhere", 1, 1, {})
    info = engine._rules_for.cache_info()
    assert info.misses == 2 and info.hits == 198


# ---- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"rules": [{"name": "r", "groups": ["*"], "topics": ["t"]}]}, "set at least one of max_records"),
        (
            {"rules": [{**VOLUME, "window": "soon"}]},
            r"rules\[0\] \('customers-volume'\)\.window: not a duration",
        ),
        ({"rules": [{**VOLUME, "action": "alert", "lockout": "5m"}]}, "only apply to action: block"),
        ({"rules": [{**VOLUME, "max_findings": {"ssn": 5}}]}, "unknown detector 'ssn'"),
        ({"rules": [{**VOLUME, "groups": [], "subjects": []}]}, "needs `groups` and/or `subjects`"),
        ({"rules": [{**VOLUME, "groups": ["ana*"]}]}, "only exact names"),
        ({"rules": [{**VOLUME, "max_records": -1}]}, "max_records: must be >= 0"),
        ({"rules": [VOLUME], "content": [{**CONTENT, "name": "customers-volume"}]}, "duplicate rule name"),
        ({"bulk_read": [BULK]}, "enable at least one pattern"),
        ({"content": [{**CONTENT, "detectors": []}]}, "name at least one detector"),
        ({"content": [{**CONTENT, "action": "throttle"}]}, r"limits\.content\[0\]\.action"),
        ({"rules": [{**VOLUME, "per": "topic"}]}, r"limits\.rules\[0\]\.per"),
        ({"rules": [{**VOLUME, "colour": "red"}]}, "unknown field `colour`"),
        ({"max_throttle": "0s"}, "max_throttle: duration must be positive"),
    ],
)
def test_configuration_errors_name_the_key(sections: dict, message: str) -> None:
    with pytest.raises(LimitsError, match=message):
        LimitsEngine(parse_limits(sections), MemoryWindowStore(), known_detectors=KNOWN)


def test_an_empty_configuration_is_inactive() -> None:
    engine = LimitsEngine(parse_limits(None), MemoryWindowStore(), clock=lambda: START)
    assert not engine.active
    assert engine.locked_out(ALICE) is None
    assert engine.after_fetch(ALICE, "t", 10**9, 10**12, {}) is ALLOW
