"""Exfiltration limits end to end: real librdkafka clients through a two-worker gateway with `limits:` rules.

What this module is for: evidence that the limits engine, wired into the Kafka guard and sharing its windows in
SQLite across worker processes, stops bulk reads and secret publishes the way docs/limits.md promises:
- a `block` volume limit holds for one principal whose connections land on *different* workers;
- a consumer within limits, or one no rule watches, is untouched;
- each bulk-read pattern (partitions from earliest, whole topic from earliest, oversized fetch, wildcard
  subscription) triggers its action, one of them in alert (shadow) mode;
- a `throttle` rule slows a consumer without failing it;
- a publish carrying a private key or an AWS access key id is refused, a clean one is not;
- a `lockout` shuts the principal out of unrelated topics on new connections.

Every test uses its own principal (a minted token with a fresh subject) so that windows and lockouts of one
test never leak into another; the audit trail is read back to check principal and rule of every hit.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.devstack.processes import ManagedProcess
from tests.helpers.gateway import GatewayProcess, start_gateway
from tests.identity.conftest import mint, oidc_conf, plain_conf, wait_for_audit, write_identity_config
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration

VOLUME_LIMIT = 250  # records per minute, per principal, across all its connections and workers
LOCKOUT_LIMIT = 20
THROTTLE_LIMIT = 60
BATCH = 10  # records per produced record batch: the granularity of "one batch" in the block bound
FETCH_BYTES = 4096  # small fetches: a response carries a few record batches, not a whole partition

LIMITS_POLICY = """
policy:
  rules:
    - name: limit-test-users
      groups: [lt-users]
      topics: ["*"]
      consumer_groups: ["*"]
      allow: [consume, produce, describe]
    - name: platform-admins
      groups: [platform-admins]
      topics: ["*"]
      consumer_groups: ["*"]
      allow: [create, delete, alter, describe, describe_configs, alter_configs, produce, consume]
limits:
  max_throttle: 1s
  lockout_poll: 200ms
  rules:
    - {{name: volume-cap, groups: [volume-capped], topics: ["vol.*"], window: 1m, max_records: {volume},
       per: principal, action: block}}
    - {{name: volume-throttle, groups: [throttled], topics: ["thr.*"], window: 2s, max_records: {throttle},
       action: throttle}}
    - {{name: lockout-cap, groups: [lockable], topics: ["lock.*"], window: 1m, max_records: {lockout},
       action: block, lockout: 30s}}
  bulk_read:
    - {{name: pii-partitions-from-earliest, groups: [earliest-readers], topics: ["customers.pii.*"],
       max_partitions_from_earliest: 2, window: 1m, action: block}}
    - {{name: pii-full-read, groups: [full-readers], topics: ["customers.pii.*"], earliest_full_read: true,
       window: 1m, action: block}}
    - {{name: pii-fetch-bytes, groups: [big-fetchers], topics: ["customers.pii.*"], max_fetch_bytes: 65536,
       action: alert}}
    - {{name: pii-wildcard, groups: [pattern-subscribers], topics: ["customers.pii.*"],
       deny_wildcard_subscription: true, action: block}}
  content:
    - {{name: no-secrets-in-topics, detectors: [private_key, aws_access_key], topics: ["*"],
       allow_topics: ["vault.*"], groups: [lt-users], action: block}}
"""


# the errors a refused consumer sees: fetches (topic) or, when every request is refused, the group coordinator
AUTHORIZATION_ERRORS = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}


# ------------------------------------------------------------------------------------------------ fixtures
@dataclass
class LimitsGateway:
    gw: GatewayProcess
    idp: ManagedProcess
    audit: Path
    admin: AdminClient  # kept alive for the module: topics are created through it

    def principal(self, purpose: str, *groups: str) -> tuple[str, dict[str, str]]:
        """A fresh subject (its own windows and lockouts) in `lt-users` plus `groups`, and its client config."""
        sub = f"lt-{purpose}-{uuid.uuid4().hex[:8]}"
        token = mint(self.idp, sub=sub, groups=["lt-users", *groups])
        return sub, plain_conf(self.gw, token, username=sub)

    def create(self, prefix: str, partitions: int = 1) -> str:
        name = unique_topic(prefix)
        for future in self.admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until metadata through the gateway shows every partition
            topic = self.admin.list_topics(name, timeout=10).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return name
            time.sleep(0.1)
        raise AssertionError(f"topic {name} did not appear with {partitions} partitions")

    def events(self, matches: Callable[[dict[str, Any]], bool], *, count: int = 1,
               timeout: float = 10.0) -> list[dict[str, Any]]:
        return wait_for_audit(self.audit, matches, count=count, timeout=timeout)


@pytest.fixture(scope="module")
def limits_gw(tansu: ManagedProcess, idp: ManagedProcess,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsGateway]:
    tmp = tmp_path_factory.mktemp("limits")
    audit = tmp / "audit"
    audit.mkdir()
    policy = LIMITS_POLICY.format(volume=VOLUME_LIMIT, throttle=THROTTLE_LIMIT, lockout=LOCKOUT_LIMIT)
    cfg = write_identity_config(tmp / "gw.yaml", str(idp.extra["issuer"]), audit, policy=policy)
    # start_gateway points server.state_dir (the shared SQLite window store) into `tmp`
    gw = start_gateway(tansu.address, tmp, workers=2, config=cfg)
    admin_conf: dict[str, str | int | float | bool] = {**oidc_conf(gw, idp, "admin-svc")}
    admin = AdminClient(admin_conf)
    yield LimitsGateway(gw, idp, audit, admin)
    assert gw.stop() == 0, gw.log_text()[-3000:]
    state_dir = Path(gw.env["STREAMGATE__SERVER__STATE_DIR"])
    assert state_dir.is_relative_to(tmp) and (state_dir / "limits.sqlite3").exists()


# ------------------------------------------------------------------------------------------------- clients
def produce_batches(conf: dict[str, str], topic: str, partition: int, batches: int,
                    tag: str = "r") -> None:
    """`batches` record batches of BATCH records each (one flush per batch keeps them apart)."""
    producer = Producer({**conf, "linger.ms": 50, "acks": "all"})
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for b in range(batches):
        for i in range(BATCH):
            producer.produce(topic, value=f"{tag}-{partition}-{b}-{i}-".encode() + b"x" * 80,
                             partition=partition, on_delivery=on_delivery)
        assert producer.flush(30) == 0
    assert errors == [], errors


def publish(conf: dict[str, str], topic: str, value: bytes) -> KafkaError | None:
    """Publish one record; the delivery error (None when the broker took it)."""
    producer = Producer({**conf, "linger.ms": 0, "message.timeout.ms": 15000, "retries": 0})
    outcome: list[KafkaError | None] = []
    producer.produce(topic, value=value, on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert len(outcome) == 1, "no delivery report"
    return outcome[0]


def consumer(conf: dict[str, str], **extra: Any) -> Consumer:
    return Consumer({**conf, "group.id": unique_topic("lt-group"), "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                     "max.partition.fetch.bytes": FETCH_BYTES, "fetch.max.bytes": FETCH_BYTES,
                     "message.max.bytes": FETCH_BYTES, **extra})


@dataclass
class Drained:
    values: list[bytes | None] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)  # KafkaError codes, in order
    seconds: float = 0.0

    @property
    def auth_failures(self) -> int:
        return self.errors.count(KafkaError.TOPIC_AUTHORIZATION_FAILED)


def drain(c: Consumer, done: Callable[[Drained], bool], timeout: float = 30.0) -> Drained:
    """Poll until `done(result)` or the deadline; every record value and error code is kept."""
    got = Drained()
    start = time.monotonic()
    while not done(got) and time.monotonic() - start < timeout:
        msg = c.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            got.errors.append(error.code())
        else:
            got.values.append(msg.value())
    got.seconds = time.monotonic() - start
    return got


def by(sub: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Audit matcher: events of principal `sub` whose top-level fields equal `fields` (`topic` = resource)."""
    topic = fields.pop("topic", None)

    def matches(e: dict[str, Any]) -> bool:
        return ((e.get("principal") or {}).get("sub") == sub
                and all(e.get(k) == v for k, v in fields.items())
                and (topic is None or (e.get("resource") or {}).get("topic") == topic))

    return matches


# ------------------------------------------------------------------------------- which worker holds what
def consumers_on_both_workers(lg: LimitsGateway, sub: str, conf: dict[str, str], warm_topic: str,
                              tries: int = 16) -> list[Consumer]:
    """Two consumers of `sub` whose broker connections are served by different worker processes.

    Consumers are opened until SO_REUSEPORT has put one on each worker. Each is warmed on an empty topic no
    rule watches (so finding the workers costs no records of the limit): its ListOffsets goes over the
    connection that will carry its fetches, and the audit event names the worker that served it. The
    `client.id` tells the consumers apart in the audit trail.
    """
    chosen: dict[int, Consumer] = {}
    lookup = by(sub, kind="decision", api="ListOffsets")
    for i in range(tries):
        client_id = f"{sub}-c{i}"
        c = consumer(conf, **{"client.id": client_id})
        c.assign([TopicPartition(warm_topic, 0, OFFSET_BEGINNING)])

        def its_lookup(e: dict[str, Any], client_id: str = client_id) -> bool:
            return lookup(e) and (e.get("client") or {}).get("client_id") == client_id

        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            assert c.poll(0.1) is None  # the warm-up topic is empty
            seen = lg.events(its_lookup, timeout=0)
        workers = {e["worker"] for e in seen}
        if len(workers) == 1 and (worker := workers.pop()) not in chosen:
            chosen[worker] = c
            if len(chosen) == 2:
                return list(chosen.values())
        else:
            c.close()
    for c in chosen.values():
        c.close()
    raise AssertionError(f"{tries} consumers did not spread over both workers: {list(chosen)}")


# ---------------------------------------------------------------------------------------------------- tests
def test_volume_limit_holds_across_workers(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("vol.orders", partitions=2)
    warm = lg.create("warm.empty")
    sub, conf = lg.principal("volume", "volume-capped")
    pair = consumers_on_both_workers(lg, sub, conf, warm)
    results: list[Drained] = [Drained(), Drained()]

    def run(index: int) -> None:
        c = pair[index]
        c.assign([TopicPartition(topic, index, OFFSET_BEGINNING)])  # each consumer reads one partition, live
        results[index] = drain(c, lambda d: d.auth_failures >= 1, timeout=40)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    # both consumers have looked up their start offset (and are fetching) before any record exists
    assert len(lg.events(lambda e: by(sub, kind="decision", api="ListOffsets")(e)
                         and f"topic:{topic}" in e["details"]["resources"], count=2)) >= 2
    # records arrive while both consumers read: their responses interleave on the two workers
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    for _ in range(20):
        for partition in (0, 1):
            produce_batches(writer, topic, partition, batches=1)  # 400 records in all, 200 per consumer
    for t in threads:
        t.join(60)
    for c in pair:
        c.close()

    # each consumer alone stays under the limit; together they hit it, and both are refused from then on
    assert all(r.auth_failures >= 1 for r in results), [r.errors for r in results]
    assert all(r.values for r in results), "each connection delivered part of the limit"
    total = sum(len(r.values) for r in results)
    assert total <= VOLUME_LIMIT  # block is exact: never above the limit
    # ... and at least the limit minus the response that was refused (one fetch response of one partition)
    refused = lg.events(by(sub, kind="decision", api="Fetch", decision="blocked", topic=topic))
    first_refused = min(refused, key=lambda e: e["ts"])["record_count"]
    assert total >= VOLUME_LIMIT - first_refused, (total, first_refused)
    # the audit trail agrees on what left, and that two different workers served it
    delivered = lg.events(by(sub, kind="decision", api="Fetch", decision="allowed", topic=topic))
    assert sum(e["record_count"] for e in delivered) == total
    assert len({e["worker"] for e in delivered}) == 2, {e["worker"] for e in delivered}
    hits = lg.events(by(sub, kind="limit", rule="volume-cap", decision="blocked", topic=topic))
    assert hits and all(f"exceeds the limit of {VOLUME_LIMIT}" in e["reason"] for e in hits)
    assert {e["details"]["check"] for e in hits} == {"records"}


def test_consumers_within_limits_or_unwatched_are_untouched(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("vol.ledger", partitions=2)
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    for partition in range(2):
        produce_batches(writer, topic, partition, batches=20)  # 200 records each: 400 > the limit
    # watched by the volume rule, but reads only the last 100 records: within the limit
    capped_sub, capped = lg.principal("within", "volume-capped")
    c = consumer(capped)
    c.assign([TopicPartition(topic, p, 150) for p in range(2)])
    within = drain(c, lambda d: len(d.values) >= 100 or bool(d.errors))
    extra = drain(c, lambda d: bool(d.values or d.errors), timeout=2)  # and nothing beyond the log end
    c.close()
    assert within.errors == [] and extra.errors == [] and extra.values == []
    assert len(within.values) == 100
    # not watched by any volume rule: reads everything, from the beginning
    free_sub, free = lg.principal("unwatched")
    c = consumer(free)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(2)])
    everything = drain(c, lambda d: len(d.values) >= 400 or bool(d.errors))
    c.close()
    assert everything.errors == [] and len(everything.values) == 400
    lg.events(by(free_sub, kind="decision", api="Fetch", decision="allowed", topic=topic))
    for sub in (capped_sub, free_sub):
        assert lg.events(by(sub, kind="limit"), timeout=0.5) == []


def test_partitions_read_from_earliest_beyond_n_are_refused(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("customers.pii.accounts", partitions=4)
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    for partition in range(4):
        produce_batches(writer, topic, partition, batches=1)
    sub, conf = lg.principal("earliest", "earliest-readers")
    c = consumer(conf)
    # two partitions from the beginning: within max_partitions_from_earliest
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    first = drain(c, lambda d: len(d.values) >= 2 * BATCH or bool(d.errors))
    assert first.errors == [] and len(first.values) == 2 * BATCH
    # a third partition from the beginning is one too many
    c.incremental_assign([TopicPartition(topic, 2, OFFSET_BEGINNING)])
    third = drain(c, lambda d: d.auth_failures >= 2, timeout=15)
    c.close()
    assert third.auth_failures >= 1 and third.values == [], third.errors
    hits = lg.events(by(sub, kind="limit", rule="pii-partitions-from-earliest", decision="blocked", topic=topic))
    assert hits[0]["details"]["check"] == "partitions_from_earliest"
    assert "3 partitions" in hits[0]["reason"]


def test_whole_topic_from_earliest_is_refused(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("customers.pii.cards", partitions=3)
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    for partition in range(3):
        produce_batches(writer, topic, partition, batches=1)
    sub, conf = lg.principal("fullread", "full-readers")
    c = consumer(conf)
    # ListOffsets(earliest) then fetches of two of the three partitions: not the whole topic yet
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    partial = drain(c, lambda d: len(d.values) >= 2 * BATCH or bool(d.errors))
    assert partial.errors == [] and len(partial.values) == 2 * BATCH
    c.incremental_assign([TopicPartition(topic, 2, OFFSET_BEGINNING)])
    rest = drain(c, lambda d: d.auth_failures >= 2, timeout=15)
    c.close()
    assert rest.auth_failures >= 1 and rest.values == [], rest.errors
    hits = lg.events(by(sub, kind="limit", rule="pii-full-read", decision="blocked", topic=topic))
    assert hits[0]["details"]["check"] == "earliest_full_read"


def test_oversized_fetch_is_reported_in_shadow_mode(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("customers.pii.profiles")
    produce_batches(oidc_conf(lg.gw, lg.idp, "admin-svc"), topic, 0, batches=3)
    sub, conf = lg.principal("bigfetch", "big-fetchers")
    # a small fetch (4 KiB per partition) is below max_fetch_bytes: no alert
    c = consumer(conf)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    small = drain(c, lambda d: len(d.values) >= 3 * BATCH or bool(d.errors))
    c.close()
    assert small.errors == [] and len(small.values) == 3 * BATCH
    assert lg.events(by(sub, kind="limit"), timeout=1) == []
    # librdkafka's default 1 MiB per partition is above it: alert only, every record still arrives
    c = consumer(conf, **{"max.partition.fetch.bytes": 1048576, "fetch.max.bytes": 52428800,
                          "message.max.bytes": 1000000})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    big = drain(c, lambda d: len(d.values) >= 3 * BATCH or bool(d.errors))
    c.close()
    assert big.errors == [] and len(big.values) == 3 * BATCH
    hits = lg.events(by(sub, kind="limit", rule="pii-fetch-bytes", topic=topic))
    assert {e["decision"] for e in hits} == {"alert"}
    assert hits[0]["details"]["check"] == "fetch_bytes" and "1048576" in hits[0]["reason"]


def test_wildcard_subscription_to_privileged_topics_is_refused(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("customers.pii.wild")
    produce_batches(oidc_conf(lg.gw, lg.idp, "admin-svc"), topic, 0, batches=1)
    sub, conf = lg.principal("wildcard", "pattern-subscribers")
    group_conf = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}  # the broker's join waits on it
    # naming the privileged topic explicitly is not a wildcard: policy alone decides, and it allows
    c = consumer(conf, **group_conf)
    c.subscribe([topic])
    named = drain(c, lambda d: len(d.values) >= BATCH or KafkaError.GROUP_AUTHORIZATION_FAILED in d.errors)
    c.close()
    assert len(named.values) == BATCH and KafkaError.GROUP_AUTHORIZATION_FAILED not in named.errors
    # a regex subscription (librdkafka lists all topics, then joins with the ones that match) is refused
    c = consumer(conf, **group_conf)
    c.subscribe(["^customers\\.pii\\..*"])
    refused = drain(c, lambda d: bool(d.values) or KafkaError.GROUP_AUTHORIZATION_FAILED in d.errors)
    c.close()
    assert refused.values == [] and KafkaError.GROUP_AUTHORIZATION_FAILED in refused.errors, refused.errors
    hits = lg.events(by(sub, kind="limit", rule="pii-wildcard", decision="blocked"))
    assert hits[0]["api"] == "JoinGroup" and hits[0]["details"]["check"] == "wildcard_subscription"
    assert "covers privileged topic 'customers.pii." in hits[0]["reason"]


def test_throttle_slows_a_consumer_without_failing_it(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("thr.events")
    records = 30 * BATCH
    produce_batches(oidc_conf(lg.gw, lg.idp, "admin-svc"), topic, 0, batches=30)

    def read_all(conf: dict[str, str]) -> tuple[Drained, list[int]]:
        throttles: list[int] = []  # throttle_time_ms the client was told, from librdkafka's throttle_cb
        c = consumer(conf, throttle_cb=lambda event: throttles.append(event.throttle_time))
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = drain(c, lambda d: len(d.values) >= records or bool(d.errors), timeout=60)
        c.close()
        return got, throttles

    _, free = lg.principal("unthrottled")
    sub, throttled_conf = lg.principal("throttled", "throttled")
    unthrottled, _ = read_all(free)
    throttled, told = read_all(throttled_conf)
    assert unthrottled.errors == [] and len(unthrottled.values) == records
    assert throttled.errors == [] and len(throttled.values) == records  # slowed, never failed
    hits = lg.events(by(sub, kind="limit", rule="volume-throttle", decision="throttled", topic=topic))
    assert hits and all(0 < e["details"]["throttle_ms"] <= 1000 for e in hits)
    assert told, "the client never saw a throttle_time_ms"
    # 60 records per 2 s window, responses of about 50 records: each response over the limit costs up to
    # max_throttle (1 s), so the 300 records take about 4-5 s longer; ask for well under half of that
    assert throttled.seconds >= unthrottled.seconds + 2.0, (throttled.seconds, unthrottled.seconds, told)


def _pem_private_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_publishing_secrets_is_refused(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    plain = lg.create("app.config")
    vault = lg.create("vault.keys")
    sub, conf = lg.principal("publisher")
    pem = b'{"service": "billing", "key": "' + _pem_private_key().replace(b"\n", b"\\n") + b'"}'
    aws = b"deploy with aws_access_key_id=AKIAIOSFODNN7EXAMPLE region=eu-west-1"
    pem_error = publish(conf, plain, pem)
    aws_error = publish(conf, plain, aws)
    assert pem_error is not None and aws_error is not None
    assert {pem_error.code(), aws_error.code()} <= {KafkaError.INVALID_RECORD,
                                                    KafkaError.TOPIC_AUTHORIZATION_FAILED}
    assert publish(conf, plain, b'{"service": "billing", "log_level": "info"}') is None
    assert publish(conf, vault, pem) is None  # a topic marked for secrets takes it
    # only the clean record reached the topic
    c = consumer(lg.principal("checker")[1])
    c.assign([TopicPartition(plain, 0, OFFSET_BEGINNING)])
    stored = drain(c, lambda d: bool(d.values) or bool(d.errors))
    extra = drain(c, lambda d: bool(d.values or d.errors), timeout=2)
    c.close()
    assert stored.values == [b'{"service": "billing", "log_level": "info"}'] and extra.values == []
    hits = lg.events(by(sub, kind="limit", rule="no-secrets-in-topics", decision="blocked", topic=plain),
                     count=2)
    reasons = " ".join(e["reason"] for e in hits)
    assert "private_key" in reasons and "aws_access_key" in reasons
    assert all(e["details"]["check"] == "content" for e in hits)
    assert "AKIAIOSFODNN7EXAMPLE" not in reasons and "PRIVATE KEY" not in reasons
    denied = lg.events(by(sub, kind="decision", api="Produce", decision="denied", topic=plain), count=2)
    assert {e["rule"] for e in denied} == {"no-secrets-in-topics"}
    assert lg.events(by(sub, kind="limit", topic=vault), timeout=0.5) == []


def test_refused_secret_publish_says_invalid_record(limits_gw: LimitsGateway) -> None:
    """docs/limits.md: a content block answers INVALID_RECORD (87) with an error message from Produce v8 on, so
    the producer does not mistake it for a missing ACL; TOPIC_AUTHORIZATION_FAILED only for older versions."""
    lg = limits_gw
    topic = lg.create("app.settings")
    sub, conf = lg.principal("publisher-code")
    error = publish(conf, topic, b"aws_access_key_id=AKIAIOSFODNN7EXAMPLE")
    denied = lg.events(by(sub, kind="decision", api="Produce", decision="denied", topic=topic))
    assert denied[0]["rule"] == "no-secrets-in-topics" and denied[0]["api_version"] >= 8
    assert error is not None and error.code() == KafkaError.INVALID_RECORD, error


def test_lockout_shuts_the_principal_out_of_unrelated_topics(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    watched = lg.create("lock.records")
    unrelated = lg.create("other.notes")
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    produce_batches(writer, watched, 0, batches=5)
    produce_batches(writer, unrelated, 0, batches=1)
    sub, conf = lg.principal("lockout", "lockable")
    c = consumer(conf)
    c.assign([TopicPartition(watched, 0, OFFSET_BEGINNING)])
    first = drain(c, lambda d: d.auth_failures >= 1, timeout=20)
    c.close()
    assert first.auth_failures >= 1 and len(first.values) <= LOCKOUT_LIMIT
    hit = lg.events(by(sub, kind="limit", rule="lockout-cap", decision="blocked", topic=watched))[0]
    assert hit["details"]["check"] == "records"
    # new connections, a topic no rule watches: still refused, both to read and to write
    c = consumer(conf)
    c.assign([TopicPartition(unrelated, 0, OFFSET_BEGINNING)])
    locked = drain(c, lambda d: bool(d.values) or bool(AUTHORIZATION_ERRORS & set(d.errors)), timeout=15)
    c.close()
    assert locked.values == [] and AUTHORIZATION_ERRORS & set(locked.errors), locked.errors
    refused = publish(conf, unrelated, b"while locked out")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    # the audit trail shows the lockout refusing the new connections (the producer's is the last one)
    lockouts = lg.events(lambda e: by(sub, kind="limit", rule="lockout-cap", decision="blocked")(e)
                         and e["details"]["check"] == "lockout")
    assert all(e["reason"].startswith("locked out for another") for e in lockouts)
    assert len({e["connection_id"] for e in lockouts} - {hit["connection_id"]}) >= 2
    # another principal reads the same topic as usual
    c = consumer(lg.principal("bystander")[1])
    c.assign([TopicPartition(unrelated, 0, OFFSET_BEGINNING)])
    other = drain(c, lambda d: len(d.values) >= BATCH or bool(d.errors))
    c.close()
    assert other.errors == [] and len(other.values) == BATCH
