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

import re
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
from tests.integration.test_gateway_process import worker_of_connection

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
    cfg = write_identity_config(tmp / "gw.yaml", idp.extra["issuer"], audit, policy=policy)
    # start_gateway points server.state_dir (the shared SQLite window store) into `tmp`
    gw = start_gateway(tansu.address, tmp, workers=2, config=cfg)
    admin = AdminClient(oidc_conf(gw, idp, "admin-svc"))
    yield LimitsGateway(gw, idp, audit, admin)
    del admin
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
    values: list[bytes] = field(default_factory=list)
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
        if msg.error():
            got.errors.append(msg.error().code())
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
def worker_pids(gw: GatewayProcess) -> list[int]:
    """The Kafka worker processes (the supervisor's other child, the admin process, serves no Kafka)."""
    pids = [int(p) for p in re.findall(r"worker \d+ serving \(pid (\d+)\)", gw.log_text())]
    return [p for p in dict.fromkeys(pids) if p in gw.worker_pids()]


def node_connections(node_port: int) -> set[int]:
    """Client-side ports of established connections from this host to `node_port` (this test's clients)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == node_port and fields[3] == "01":
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def consumers_on_both_workers(lg: LimitsGateway, conf: dict[str, str], warm_topic: str,
                              tries: int = 24) -> dict[int, Consumer]:
    """One consumer per worker process (pid -> consumer), found by opening consumers until SO_REUSEPORT has
    put a broker connection on each worker. Each consumer is warmed on an empty topic no rule watches, so
    finding the workers costs no records of the limit."""
    workers = worker_pids(lg.gw)
    assert len(workers) == 2, workers
    node_port = None
    chosen: dict[int, Consumer] = {}
    for _ in range(tries):
        c = consumer(conf)
        if node_port is None:
            brokers = c.list_topics(warm_topic, timeout=10).brokers
            node_port = next(iter(brokers.values())).port
        before = node_connections(node_port)
        c.assign([TopicPartition(warm_topic, 0, OFFSET_BEGINNING)])
        new: set[int] = set()
        deadline = time.monotonic() + 10
        while not new and time.monotonic() < deadline:
            assert c.poll(0.1) is None  # the warm-up topic is empty
            new = node_connections(node_port) - before
        pids = {worker_of_connection(workers, node_port, port) for port in new}
        if len(pids) == 1 and (pid := pids.pop()) in workers and pid not in chosen:
            chosen[pid] = c
            if len(chosen) == 2:
                return chosen
        else:
            c.close()
    raise AssertionError(f"{tries} consumers did not spread over both workers: {list(chosen)}")


# ---------------------------------------------------------------------------------------------------- tests
def test_volume_limit_holds_across_workers(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("vol.orders", partitions=4)
    warm = lg.create("warm.empty")
    writer = oidc_conf(lg.gw, lg.idp, "admin-svc")
    for partition in range(4):
        produce_batches(writer, topic, partition, batches=15)  # 150 records each, 600 in all
    sub, conf = lg.principal("volume", "volume-capped")
    pair = list(consumers_on_both_workers(lg, conf, warm).values())
    results: list[Drained] = [Drained(), Drained()]

    def run(index: int) -> None:
        c = pair[index]
        parts = [2 * index, 2 * index + 1]
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        # until refused, then a little longer: a refusal repeats, nothing more arrives
        results[index] = drain(c, lambda d: d.auth_failures >= 3, timeout=40)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in pair:
        c.close()

    total = sum(len(r.values) for r in results)
    assert all(r.auth_failures >= 1 for r in results), [r.errors for r in results]
    assert set(sum((r.errors for r in results), [])) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}
    assert all(r.values for r in results), "each connection delivered part of the limit"
    # block is exact: never above the limit; at least the limit minus what one response could carry
    assert total <= VOLUME_LIMIT
    delivered = lg.events(lambda e: by(sub, kind="decision", api="Fetch", decision="allowed", topic=topic)(e)
                          and (e.get("record_count") or 0) > 0, count=1)
    largest_response = max(e["record_count"] for e in delivered)
    assert total >= VOLUME_LIMIT - 2 * largest_response, (total, largest_response)
    # the audit trail agrees on what left, and that two different workers served it
    assert sum(e["record_count"] for e in delivered) == total
    assert len({e["worker"] for e in delivered}) == 2, {e["worker"] for e in delivered}
    hits = lg.events(by(sub, kind="limit", rule="volume-cap", decision="blocked", topic=topic))
    assert hits and all("exceeds the limit of 250" in e["reason"] for e in hits)
    assert len({e["worker"] for e in hits}) >= 1


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
    c = consumer(conf, **{"topic.metadata.refresh.interval.ms": 1000})
    c.subscribe(["^customers\\.pii\\..*"])
    refused = drain(c, lambda d: bool(d.values) or KafkaError.GROUP_AUTHORIZATION_FAILED in d.errors)
    c.close()
    assert refused.values == [] and KafkaError.GROUP_AUTHORIZATION_FAILED in refused.errors, refused.errors
    hits = lg.events(by(sub, kind="limit", rule="pii-wildcard", decision="blocked"))
    assert hits[0]["details"]["check"] == "wildcard_subscription" and "customers.pii." in hits[0]["reason"]
    # naming the privileged topic explicitly is not a wildcard: policy alone decides, and it allows
    c = consumer(conf)
    c.subscribe([topic])
    named = drain(c, lambda d: len(d.values) >= BATCH or KafkaError.GROUP_AUTHORIZATION_FAILED in d.errors)
    c.close()
    assert len(named.values) == BATCH and KafkaError.GROUP_AUTHORIZATION_FAILED not in named.errors


def test_throttle_slows_a_consumer_without_failing_it(limits_gw: LimitsGateway) -> None:
    lg = limits_gw
    topic = lg.create("thr.events")
    produce_batches(oidc_conf(lg.gw, lg.idp, "admin-svc"), topic, 0, batches=20)  # 200 records

    def read_all(conf: dict[str, str]) -> Drained:
        c = consumer(conf)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = drain(c, lambda d: len(d.values) >= 20 * BATCH or bool(d.errors), timeout=60)
        c.close()
        return got

    _, free = lg.principal("unthrottled")
    sub, throttled_conf = lg.principal("throttled", "throttled")
    unthrottled = read_all(free)
    throttled = read_all(throttled_conf)
    assert unthrottled.errors == [] and len(unthrottled.values) == 20 * BATCH
    assert throttled.errors == [] and len(throttled.values) == 20 * BATCH
    hits = lg.events(by(sub, kind="limit", rule="volume-throttle", decision="throttled", topic=topic))
    assert all(0 < e["details"]["throttle_ms"] <= 1000 for e in hits)
    # 60 records per 2 s window: the other 140 take about 4-5 s more; ask for well under half of that
    assert throttled.seconds >= unthrottled.seconds + 2.0, (throttled.seconds, unthrottled.seconds, len(hits))


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
    lockouts = lg.events(lambda e: by(sub, kind="limit", rule="lockout-cap", decision="blocked")(e)
                         and e["details"]["check"] == "lockout" and e["api"] == "Produce")
    assert lockouts and "locked out" in lockouts[0]["reason"]
    # another principal reads the same topic as usual
    c = consumer(lg.principal("bystander")[1])
    c.assign([TopicPartition(unrelated, 0, OFFSET_BEGINNING)])
    other = drain(c, lambda d: len(d.values) >= BATCH or bool(d.errors))
    c.close()
    assert other.errors == [] and len(other.values) == BATCH
