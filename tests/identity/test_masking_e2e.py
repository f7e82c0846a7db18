"""Masking end to end: a masked group reads redacted records, an exempt group reads them in clear.

Records are written by a real producer in every compression codec, rewritten by the gateway (decompress, mask,
re-encode with the same codec and batch header, new CRC32C) and read by librdkafka with `check.crcs=true`,
aiokafka and kafkajs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers.gateway import start_gateway
from tests.identity.conftest import client_token, oidc_conf, read_audit, write_identity_config
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration
JS_DIR = Path(__file__).resolve().parents[1] / "js"

POLICY = """
masking:
  profiles:
    pii:
      detectors: [credit_card, us_ssn, email, aws_access_key]
      fields: {"$.customer.ssn": redact, "$.card.number": {keep_last: 4}}
      operator: redact
    scrubbing:
      detectors: [credit_card, us_ssn, email, aws_access_key]
      fields: {"$.customer.ssn": redact, "$.card.number": {keep_last: 4}}
      operator: redact
      scrub_on_produce: true
policy:
  rules:
    - {name: card-writers, groups: [payments-svc], topics: ["cards.*"], allow: [produce, describe]}
    - name: analysts-masked
      groups: [analysts]
      topics: ["cards.*"]
      consumer_groups: ["*"]
      allow: [consume, describe]
      mask: pii
    - {name: investigators-clear, groups: [fraud-investigators], topics: ["cards.*"], consumer_groups: ["*"],
       allow: [consume, describe]}
    - {name: platform-admins, groups: [platform-admins], topics: ["*"], allow: [create, delete, describe]}
    - {name: scrubbed-writers, groups: [payments-svc], topics: ["scrubbed.*"], allow: [produce, describe],
       mask: scrubbing}
"""

RECORDS = [
    (b'{"customer":{"ssn":"123-45-6789","email":"ann@example.com"},"card":{"number":"4111111111111111"},'
     b'"note":"pay 4111 1111 1111 1111 key AKIAIOSFODNN7EXAMPLE"}',
     b'{"customer":{"ssn":"[REDACTED]","email":"[REDACTED:EMAIL]"},"card":{"number":"************1111"},'
     b'"note":"pay [REDACTED:CREDIT_CARD] key [REDACTED:AWS_ACCESS_KEY]"}'),
    (b"plain text ssn 123-45-6789 and card 5500-0000-0000-0004",
     b"plain text ssn [REDACTED:US_SSN] and card [REDACTED:CREDIT_CARD]"),
    (b"order 12345678901234 shipped 2026-11-30T08:00:00Z", b"order 12345678901234 shipped 2026-11-30T08:00:00Z"),
    (None, None),
]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def masking_gateway(tansu, idp, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("masking")
    audit = tmp / "audit"
    audit.mkdir()
    cfg = write_identity_config(tmp / "gw.yaml", idp.extra["issuer"], audit, policy=POLICY)
    gw = start_gateway(tansu.address, tmp, workers=2, config=cfg)
    gw.audit_dir = audit  # type: ignore[attr-defined]
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def topics(masking_gateway, idp):
    admin = AdminClient(oidc_conf(masking_gateway, idp, "admin-svc"))
    names = {codec: unique_topic(f"cards.{codec}") for codec in CODECS}
    for f in admin.create_topics([NewTopic(n, 1, 1) for n in names.values()]).values():
        f.result(30)
    for codec, name in names.items():
        p = Producer({**oidc_conf(masking_gateway, idp, "payments-svc"), "compression.type": codec,
                      "linger.ms": 20})
        errors: list[str] = []

        def on_delivery(err, _msg, errors=errors):  # noqa: ANN001
            if err is not None:
                errors.append(str(err))

        for i in range(3):  # several records per batch, several batches
            for value, _ in RECORDS:
                p.produce(name, key=f"k{i}".encode(), value=value, on_delivery=on_delivery)
            p.flush(30)
        assert errors == []
    return names


def consume(conf: dict, topic: str, count: int) -> list[bytes | None]:
    c = Consumer({**conf, "group.id": unique_topic("g"), "check.crcs": True, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert not m.error(), m.error()
        values.append(m.value())
    c.close()
    return values


@pytest.mark.parametrize("codec", CODECS)
def test_masked_group_reads_redacted_values_with_crc_checks(masking_gateway, idp, topics, codec):
    values = consume(oidc_conf(masking_gateway, idp, "analytics-svc"), topics[codec], 3 * len(RECORDS))
    assert values == [masked for _, masked in RECORDS] * 3


@pytest.mark.parametrize("codec", CODECS)
def test_exempt_group_reads_in_clear(masking_gateway, idp, topics, codec):
    values = consume(oidc_conf(masking_gateway, idp, "fraud-svc"), topics[codec], 3 * len(RECORDS))
    assert values == [clear for clear, _ in RECORDS] * 3


def test_audit_counts_findings_per_detector_never_values(masking_gateway, idp, topics):
    consume(oidc_conf(masking_gateway, idp, "analytics-svc"), topics["none"], 3 * len(RECORDS))
    deadline = time.monotonic() + 10
    while True:
        events = [e for e in read_audit(masking_gateway.audit_dir)
                  if e.get("decision") == "masked" and e.get("resource", {}).get("topic") == topics["none"]]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert events and all(e["principal"]["sub"] == "analytics-svc" for e in events)
    totals: dict[str, int] = {}
    for e in events:
        for k, v in e["masked_counts"].items():
            totals[k] = totals.get(k, 0) + v
    assert totals["credit_card"] >= 6 and totals["us_ssn"] >= 3 and totals["aws_access_key"] >= 3
    text = json.dumps(events)
    assert "4111" not in text.replace("************1111", "") and "123-45-6789" not in text


def test_aiokafka_reads_rewritten_batches(masking_gateway, idp, topics):
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTP
    from aiokafka.helpers import create_ssl_context  # noqa: F401 - imported to assert the extra is present

    token = client_token(idp, "analytics-svc")

    async def run(topic: str) -> list[bytes | None]:
        from aiokafka.abc import AbstractTokenProvider

        class P(AbstractTokenProvider):
            async def token(self) -> str:
                return token

        c = AIOKafkaConsumer(bootstrap_servers=masking_gateway.bootstrap, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=P(),
                             auto_offset_reset="earliest", enable_auto_commit=False, check_crcs=True)
        await c.start()
        try:
            c.assign([AioTP(topic, 0)])
            got: list[bytes | None] = []
            async with asyncio.timeout(30):
                while len(got) < 3 * len(RECORDS):
                    batch = await c.getmany(timeout_ms=500)
                    for msgs in batch.values():
                        got.extend(m.value for m in msgs)
            return got
        finally:
            await c.stop()

    for codec in ("none", "gzip", "lz4", "zstd"):
        assert asyncio.run(run(topics[codec])) == [masked for _, masked in RECORDS] * 3, codec


def test_kafkajs_reads_rewritten_batches(masking_gateway, idp, topics):
    if not (JS_DIR / "node_modules" / "kafkajs").exists():
        pytest.fail("kafkajs is not installed: run `make test`")
    script = JS_DIR / "kafkajs_consume_token.js"
    for codec in ("none", "gzip"):  # kafkajs decodes these without extra codec packages
        payload = json.dumps({"brokers": [masking_gateway.bootstrap], "topic": topics[codec],
                              "token": client_token(idp, "analytics-svc"), "count": 3 * len(RECORDS)})
        result = subprocess.run(["node", str(script)], input=payload, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stderr
        values = json.loads(result.stdout.strip().splitlines()[-1])["values"]
        expected = [None if m is None else m.decode() for _, m in RECORDS] * 3
        assert values == expected, codec


def test_scrub_on_produce_keeps_sensitive_values_out_of_the_broker(masking_gateway, idp, tansu):
    admin = AdminClient(oidc_conf(masking_gateway, idp, "admin-svc"))
    topic = unique_topic("scrubbed.orders")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({**oidc_conf(masking_gateway, idp, "payments-svc"), "compression.type": "zstd"})
    errors: list[str] = []
    for value, _ in RECORDS:
        p.produce(topic, value=value, on_delivery=lambda e, m: errors.append(str(e)) if e else None)
    assert p.flush(30) == 0 and errors == []
    # read straight from the broker, bypassing the gateway: what landed there is already masked
    c = Consumer({"bootstrap.servers": tansu.address, "group.id": unique_topic("raw"), "check.crcs": True})
    c.assign([TopicPartition(topic, 0, 0)])
    stored: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while len(stored) < len(RECORDS) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            stored.append(m.value())
    c.close()
    assert stored == [masked for _, masked in RECORDS]
