"""The SASL-demanding test broker, checked with librdkafka (confluent-kafka), an independent SASL client.

librdkafka verifies the SCRAM server signature itself, so a successful login here also shows that the
broker's SCRAM side is right; wrong credentials must end in librdkafka's own authentication error.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.devstack.processes import ComponentError
from gateway.devstack.secured_broker import SecuredBroker, start_secured_tansu
from gateway.protocols.kafka.generated.api_versions import ApiVersionsRequest
from gateway.protocols.kafka.generated.metadata import MetadataRequest
from tests.integration.kafka_helpers import unique_topic
from tests.upstream_auth.conftest import USERS
from tests.upstream_auth.wire import WireConnection

pytestmark = pytest.mark.integration


def sasl_config(broker: SecuredBroker, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": broker.address,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def wait_for_error(
    admin: AdminClient, errors: list[KafkaError], code: int, timeout: float = 15.0
) -> KafkaError:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for error in errors:
            if error.code() == code:
                return error
        admin.poll(0.2)
    raise AssertionError(f"no error {code} reported; got {[e.str() for e in errors]}")


@pytest.mark.parametrize("user", ["svc-scram256", "svc-scram512", "svc-plain", "odd=na,me"])
def test_confluent_kafka_logs_in_with_the_right_credentials(secured_broker: SecuredBroker, user: str) -> None:
    mechanism, password = USERS[user]
    admin = AdminClient(sasl_config(secured_broker, mechanism, user, password))
    metadata = admin.list_topics(timeout=15)
    # Metadata comes from Tansu behind the front and names the front's port, so clients stay behind SASL.
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [
        (secured_broker.host, secured_broker.port)
    ]


@pytest.mark.parametrize(
    ("mechanism", "user", "password"),
    [
        ("SCRAM-SHA-256", "svc-scram256", "not-the-password"),
        ("SCRAM-SHA-512", "svc-scram512", "not-the-password"),
        ("PLAIN", "svc-plain", "not-the-password"),
        ("SCRAM-SHA-256", "nobody", "whatever-pw"),
        # A SCRAM-SHA-256 user cannot log in with SCRAM-SHA-512, even with its own password.
        ("SCRAM-SHA-512", "svc-scram256", USERS["svc-scram256"][1]),
    ],
)
def test_confluent_kafka_is_refused_with_wrong_credentials(
    secured_broker: SecuredBroker, mechanism: str, user: str, password: str
) -> None:
    errors: list[KafkaError] = []
    config: dict[str, Any] = {
        **sasl_config(secured_broker, mechanism, user, password),
        "error_cb": errors.append,
    }
    admin = AdminClient(config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)
    error = wait_for_error(admin, errors, KafkaError._AUTHENTICATION)
    assert "Authentication failed" in error.str()


def test_produce_and_consume_through_the_sasl_broker(secured_broker: SecuredBroker) -> None:
    config = sasl_config(secured_broker, "SCRAM-SHA-512", "svc-scram512", USERS["svc-scram512"][1])
    topic = unique_topic("sasl")
    admin = AdminClient(config)  # kept referenced: a collected client cancels its pending futures
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer(config)
    producer.produce(topic, key=b"k", value=b"behind-sasl")
    assert producer.flush(30) == 0
    consumer = Consumer({**config, "group.id": unique_topic("g"), "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            polled = consumer.poll(0.5)
            if polled is not None and polled.error() is None:
                message = polled
        assert message is not None and message.value() == b"behind-sasl"
    finally:
        consumer.close()


def test_only_api_versions_is_answered_before_login(secured_broker: SecuredBroker) -> None:
    with WireConnection(secured_broker.address) as conn:
        versions = conn.request(18, 0, ApiVersionsRequest())
        assert {17, 36} <= {api.api_key for api in versions.api_keys}
        with pytest.raises(ConnectionError):
            conn.request(3, 1, MetadataRequest(topics=None))


def test_handshake_for_a_mechanism_that_is_not_enabled_lists_the_enabled_ones(
    short_session_broker: SecuredBroker,
) -> None:
    from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest

    with WireConnection(short_session_broker.address) as conn:
        response = conn.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert (response.error_code, response.mechanisms) == (33, ["SCRAM-SHA-512"])
        with pytest.raises(ConnectionError):  # Kafka closes the connection after a refused handshake
            conn.request(18, 0, ApiVersionsRequest())


def test_bad_settings_are_refused_without_starting_anything() -> None:
    with pytest.raises(ComponentError, match="mechanism") as caught:
        start_secured_tansu({"u": ("GSSAPI", "top-secret-pw")})
    assert "top-secret-pw" not in str(caught.value)
    with pytest.raises(ComponentError, match="unknown SASL mechanisms"):
        start_secured_tansu({"u": ("PLAIN", "pw-x")}, enabled_mechanisms=("PLAIN", "KERBEROS"))
