"""The real-client matrix beyond confluent-kafka: kafkajs, aiokafka and kcat through the gateway in identity mode.

Each client authenticates with its own SASL implementation and tokens from the real OIDC provider (kafkajs
fetches them itself through an `oauthBearerProvider`), then is allowed or denied per the POLICY in
conftest.py: payments-svc may produce to `payments.*`, analysts may consume it (groups `analytics-*`) but
not `payments.secret*`, and nobody but the admin touches other topics.

The rule these tests keep: every allowed path is proven by the data arriving, every denied path by the
client's own error (TOPIC_AUTHORIZATION_FAILED as the client names it) and, where the gateway decides, by
the audit trail naming the principal.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers.gateway import GatewayProcess
from tests.identity.conftest import CLIENTS, client_token, oidc_conf, wait_for_audit
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration
JS_DIR = Path(__file__).resolve().parents[1] / "js"
# Tansu holds a JoinGroup for about half the session timeout: short sessions keep group tests fast.
SESSION_TIMEOUT_MS = 6000


@pytest.fixture(scope="module")
def topics(secure_gateway, idp) -> Iterator[dict[str, str]]:
    """Created by the admin principal: one topic per client (so counts are exact), a secret one, an outside one."""
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))  # kept alive until the futures resolve
    names = {"kafkajs": unique_topic("payments.kjs"), "aiokafka": unique_topic("payments.aio"),
             "kcat": unique_topic("payments.kcat"), "secret": unique_topic("payments.secret-cl"),
             "other": unique_topic("other-cl")}
    futures = admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names.values()])
    for future in futures.values():
        future.result(30)
    yield names


def produced_by(sub: str, topic: str, decision: str) -> Callable[[dict[str, Any]], bool]:
    def matches(event: dict[str, Any]) -> bool:
        return (event.get("api") == "Produce" and event.get("decision") == decision
                and (event.get("principal") or {}).get("sub") == sub
                and (event.get("resource") or {}).get("topic") == topic)
    return matches


# ------------------------------------------------------------------------------------------------ kafkajs
def test_kafkajs_oauthbearer_allowed_denied_and_group_consume(secure_gateway, idp, topics, audit_dir) -> None:
    if not (JS_DIR / "node_modules" / "kafkajs").exists():
        pytest.fail("kafkajs is not installed: run `make test` (bootstrap installs tests/js)")
    count = 20
    config = {
        "bootstrap": secure_gateway.bootstrap, "tokenEndpoint": idp.extra["token_endpoint"],
        "clients": {"writer": {"id": "payments-svc", "secret": CLIENTS["payments-svc"]["secret"]},
                    "reader": {"id": "analytics-svc", "secret": CLIENTS["analytics-svc"]["secret"]}},
        "allowedTopic": topics["kafkajs"], "groupId": unique_topic("analytics-kjs"), "count": count,
        "sessionTimeout": SESSION_TIMEOUT_MS,
        "deniedProduce": [{"client": "writer", "topic": topics["other"]},
                          {"client": "reader", "topic": topics["kafkajs"]}],
    }
    # The configuration carries client secrets: stdin, not argv.
    result = subprocess.run(["node", str(JS_DIR / "kafkajs_oauth.js")], input=json.dumps(config), check=False,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(data["consumed"]) == sorted(f"kafkajs-oauth-{i}" for i in range(count))
    assert [(d["client"], d["topic"], d["type"]) for d in data["denied"]] == [
        ("writer", topics["other"], "TOPIC_AUTHORIZATION_FAILED"),
        ("reader", topics["kafkajs"], "TOPIC_AUTHORIZATION_FAILED")]
    assert data["tokenFetches"]["writer"] >= 1 and data["tokenFetches"]["reader"] >= 1
    allowed = wait_for_audit(audit_dir, produced_by("payments-svc", topics["kafkajs"], "allowed"))
    assert sum(e["record_count"] for e in allowed) == count
    assert wait_for_audit(audit_dir, produced_by("analytics-svc", topics["kafkajs"], "denied"))
    assert all(e["client"]["client_id"] == "kafkajs-writer" for e in allowed)


# ----------------------------------------------------------------------------------------------- aiokafka
def test_aiokafka_oauthbearer_produce_plain_consume_and_denied_produce(secure_gateway, idp, topics,
                                                                       audit_dir) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.errors import TopicAuthorizationFailedError

    class IdpTokens(AbstractTokenProvider):
        """Asks the provider's token endpoint for every (re)connection, as a service would."""

        def __init__(self, client: str) -> None:
            self.client = client
            self.calls = 0

        async def token(self) -> str:
            self.calls += 1
            return await asyncio.to_thread(client_token, idp, self.client)

    topic = topics["aiokafka"]
    values = [f"aio-{i}".encode() for i in range(30)]
    writer_tokens = IdpTokens("payments-svc")
    reader_tokens = IdpTokens("analytics-svc")

    def oauth(provider: IdpTokens) -> dict[str, object]:
        return {"bootstrap_servers": secure_gateway.bootstrap, "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_provider": provider}

    async def run() -> tuple[list[bytes], str | None]:
        producer = AIOKafkaProducer(**oauth(writer_tokens))
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()
        denied: str | None = None
        intruder = AIOKafkaProducer(**oauth(reader_tokens))
        await intruder.start()
        try:
            await intruder.send_and_wait(topic, b"must-not-arrive")
        except TopicAuthorizationFailedError as exc:
            denied = type(exc).__name__
        finally:
            await intruder.stop()
        # The consumer uses PLAIN with the token as password: the other mechanism aiokafka offers.
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=secure_gateway.bootstrap, security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN", sasl_plain_username="analytics-reader",
            sasl_plain_password=await asyncio.to_thread(client_token, idp, "analytics-svc"),
            group_id=unique_topic("analytics-aio"), auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=1000)
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(40):
                async for message in consumer:
                    got.append(message.value)
                    if len(got) == len(values):
                        break
        finally:
            await consumer.stop()
        return got, denied

    got, denied = asyncio.run(run())
    assert sorted(got) == sorted(values), "the analyst reads exactly what the writer wrote, nothing more"
    assert denied == "TopicAuthorizationFailedError"
    assert writer_tokens.calls >= 1 and reader_tokens.calls >= 1
    allowed = wait_for_audit(audit_dir, produced_by("payments-svc", topic, "allowed"))
    assert sum(e["record_count"] for e in allowed) == len(values)
    assert wait_for_audit(audit_dir, produced_by("analytics-svc", topic, "denied"))


# --------------------------------------------------------------------------------------------------- kcat
def kcat(gw: GatewayProcess, token: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: run `make test` (bootstrap installs it)")
    sasl = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=kcat-user", "-X", f"sasl.password={token}"]
    return subprocess.run(["kcat", "-b", gw.bootstrap, *sasl, *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def test_kcat_metadata_produce_and_consume(secure_gateway, idp, tansu, topics, audit_dir) -> None:
    writer = client_token(idp, "payments-svc")
    analyst = client_token(idp, "analytics-svc")
    topic = topics["kcat"]

    listing = kcat(secure_gateway, analyst, "-L")
    assert listing.returncode == 0, listing.stderr
    listed = {line.split('"')[1] for line in listing.stdout.splitlines() if line.strip().startswith("topic \"")}
    assert {topics["kafkajs"], topics["aiokafka"], topic} <= listed
    assert not {topics["secret"], topics["other"]} & listed, "denied topics must be invisible in metadata"
    assert all(name.startswith("payments.") and not name.startswith("payments.secret") for name in listed)
    assert f"127.0.0.1:{secure_gateway.node_port_base + 111}" in listing.stdout
    assert f":{tansu.port}" not in listing.stdout, "the broker's own address leaked"

    lines = [f"k{i}:kcat-{i}" for i in range(15)]
    produced = kcat(secure_gateway, writer, "-P", "-t", topic, "-K:", stdin="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    refused = kcat(secure_gateway, analyst, "-P", "-t", topic, stdin="must-not-arrive\n")
    assert "authorization failed" in refused.stderr.lower(), refused.stderr
    assert refused.returncode != 0

    consumed = kcat(secure_gateway, analyst, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%k:%s\n")
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.splitlines()) == sorted(lines)
    allowed = wait_for_audit(audit_dir, produced_by("payments-svc", topic, "allowed"))
    assert sum(e["record_count"] for e in allowed) == len(lines)
    assert wait_for_audit(audit_dir, produced_by("analytics-svc", topic, "denied"))
    auth = wait_for_audit(audit_dir, lambda e: e["kind"] == "auth" and e.get("decision") == "allowed"
                          and (e.get("details") or {}).get("username") == "kcat-user")
    assert {e["details"]["mechanism"] for e in auth} == {"PLAIN"}
