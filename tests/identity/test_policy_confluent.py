"""confluent-kafka with librdkafka's own OIDC method through the gateway: allowed and denied per rule."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.identity.conftest import mint, oidc_conf, plain_conf, read_audit
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def topics(secure_gateway, idp):
    """Topics created by the admin principal: one readable by analysts, one 'secret' they are denied."""
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))
    names = {"open": unique_topic("payments.eu"), "secret": unique_topic("payments.secret"),
             "other": unique_topic("other")}
    futures = admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names.values()])
    for f in futures.values():
        f.result(30)
    return names


def produce(conf: dict[str, str], topic: str, values: list[bytes]) -> list[str]:
    errors: list[str] = []
    p = Producer({**conf, "linger.ms": 2, "message.timeout.ms": 20000})
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err.name()) if err else None)
    assert p.flush(30) == 0
    return errors


def consume_all(conf: dict[str, str], topic: str, count: int, group: str) -> tuple[list[bytes], list[str]]:
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[bytes] = []
    errors: list[str] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(got) < count and not errors:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            errors.append(m.error().name())
        else:
            got.append(m.value())
    c.close()
    return got, errors


def test_writer_produces_and_analyst_consumes(secure_gateway, idp, topics):
    values = [f"pay-{i}".encode() for i in range(30)]
    assert produce(oidc_conf(secure_gateway, idp, "payments-svc"), topics["open"], values) == []
    got, errors = consume_all(oidc_conf(secure_gateway, idp, "analytics-svc"), topics["open"], 30,
                              unique_topic("analytics-g"))
    assert errors == []
    assert sorted(got) == sorted(values)


def test_produce_outside_rule_is_denied(secure_gateway, idp, topics):
    errors = produce(oidc_conf(secure_gateway, idp, "payments-svc"), topics["other"], [b"x"])
    assert errors == ["TOPIC_AUTHORIZATION_FAILED"]


def test_analyst_cannot_produce(secure_gateway, idp, topics):
    errors = produce(oidc_conf(secure_gateway, idp, "analytics-svc"), topics["open"], [b"x"])
    assert errors == ["TOPIC_AUTHORIZATION_FAILED"]


def test_consumer_group_outside_pattern_is_denied(secure_gateway, idp, topics):
    got, errors = consume_all(oidc_conf(secure_gateway, idp, "analytics-svc"), topics["open"], 1,
                              unique_topic("not-analytics"))
    assert got == [] and errors and errors[0] == "GROUP_AUTHORIZATION_FAILED"


def test_explicit_deny_beats_allow_and_hides_topic(secure_gateway, idp, topics):
    admin_conf = oidc_conf(secure_gateway, idp, "admin-svc")
    assert produce(admin_conf, topics["secret"], [b"top-secret"]) == []
    analyst = oidc_conf(secure_gateway, idp, "analytics-svc")
    md = AdminClient(analyst).list_topics(timeout=20)
    assert topics["open"] in md.topics
    assert topics["secret"] not in md.topics, "a topic the principal may not describe is invisible"
    assert topics["other"] not in md.topics
    got, errors = consume_all(analyst, topics["secret"], 1, unique_topic("analytics-s"))
    assert got == []
    assert errors and errors[0] in ("TOPIC_AUTHORIZATION_FAILED", "UNKNOWN_TOPIC_OR_PART")
    # the admin sees everything
    all_md = AdminClient(admin_conf).list_topics(timeout=20)
    assert {topics["open"], topics["secret"], topics["other"]} <= set(all_md.topics)


def test_user_in_two_groups_gets_both_rules(secure_gateway, idp, topics):
    token = mint(idp, sub="dave", groups=["analysts", "payments-svc"])
    conf = plain_conf(secure_gateway, token, username="dave")
    assert produce(conf, topics["open"], [b"from-dave"]) == []
    got, errors = consume_all(conf, topics["open"], 1, unique_topic("analytics-d"))
    assert errors == [] and got
    # still denied by the explicit deny of one of its groups
    got, errors = consume_all(conf, topics["secret"], 1, unique_topic("analytics-d2"))
    assert got == []


def test_create_and_delete_need_the_admin_rule(secure_gateway, idp):
    name = unique_topic("payments.new")
    writer = AdminClient(oidc_conf(secure_gateway, idp, "payments-svc"))
    with pytest.raises(KafkaException) as info:
        writer.create_topics([NewTopic(name, 1, 1)])[name].result(20)
    assert info.value.args[0].name() == "TOPIC_AUTHORIZATION_FAILED"
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(20)
    with pytest.raises(KafkaException) as info:
        writer.delete_topics([name])[name].result(20)
    assert info.value.args[0].name() == "TOPIC_AUTHORIZATION_FAILED"
    admin.delete_topics([name])[name].result(20)


def test_principal_without_rules_sees_nothing(secure_gateway, idp, topics):
    conf = oidc_conf(secure_gateway, idp, "nobody-svc")
    md = AdminClient(conf).list_topics(timeout=20)
    assert md.topics == {} or not (set(md.topics) & set(topics.values()))
    assert produce(conf, topics["open"], [b"x"]) == ["TOPIC_AUTHORIZATION_FAILED"]


def test_audit_lists_exactly_the_offsets_delivered(secure_gateway, idp, topics, audit_dir):
    topic = unique_topic("payments.audit")
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))  # keep the handle alive until done
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    values = [f"a{i}".encode() for i in range(25)]
    assert produce(oidc_conf(secure_gateway, idp, "payments-svc"), topic, values) == []
    conf = oidc_conf(secure_gateway, idp, "analytics-svc")
    c = Consumer({**conf, "group.id": unique_topic("analytics-audit"), "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 10)])  # read offsets 10..24 only
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < 15:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.offset(), m.value()))
    c.close()
    assert [o for o, _ in got] == list(range(10, 25))
    # events reach the file when written (write_through); collect this topic's fetch events
    deadline = time.monotonic() + 10
    while True:
        events = [e for e in read_audit(audit_dir)
                  if e.get("api") == "Fetch" and e.get("resource", {}).get("topic") == topic]
        delivered = set()
        for e in events:
            assert e["principal"]["sub"] == "analytics-svc" and e["decision"] == "allowed"
            assert e["rule"] == "analysts-read"
            delivered.update(range(e["offsets"]["first"], e["offsets"]["last"] + 1))
        if delivered >= set(range(10, 25)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delivered == set(range(10, 25))
    produced = [e for e in read_audit(audit_dir)
                if e.get("api") == "Produce" and e.get("resource", {}).get("topic") == topic]
    assert sum(e["record_count"] for e in produced) == 25
    assert min(e["offsets"]["first"] for e in produced) == 0
    assert max(e["offsets"]["last"] for e in produced) == 24
    assert all(e["principal"]["sub"] == "payments-svc" for e in produced)
