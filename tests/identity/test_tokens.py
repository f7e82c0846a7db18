"""Token evidence against the real gateway: bad tokens refused with a named reason, SASL edge cases, KIP-368.

Every case talks to `streamgate run` (2 workers, identity mode) in front of a real broker, with tokens from a
real OIDC provider process. Precise wire assertions (error code 58 and its message, session_lifetime_ms, the
connection being closed) use a raw socket client speaking our codec; real librdkafka (confluent-kafka) covers
the happy path through PLAIN and OAUTHBEARER, refusals as a real client reports them, and re-authenticating by
itself with short-lived OIDC tokens.

The rule these tests keep: a refusal is proven three ways (the SASL answer names the reason, the connection is
closed, an `auth` audit event records decision "denied" and the reason) and the token itself is never echoed
back or written to the audit trail.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess
from gateway.protocols.kafka import codec, framing
from gateway.protocols.kafka.generated.api_versions import ApiVersionsRequest
from gateway.protocols.kafka.generated.fetch import (
    FetchRequest,
    FetchRequestFetchPartition,
    FetchRequestFetchTopic,
)
from gateway.protocols.kafka.generated.metadata import MetadataRequest
from gateway.protocols.kafka.generated.sasl_authenticate import SaslAuthenticateRequest
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest
from tests.helpers.gateway import GatewayProcess, start_gateway
from tests.identity.conftest import (
    CLIENTS,
    USERS,
    mint,
    oidc_conf,
    plain_conf,
    read_audit,
    wait_for_audit,
    write_identity_config,
)
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration

SASL_AUTHENTICATION_FAILED = 58
UNSUPPORTED_SASL_MECHANISM = 33
FETCH, API_VERSIONS, METADATA, SASL_HANDSHAKE, SASL_AUTHENTICATE = 1, 18, 3, 17, 36
REFUSAL_PREFIX = "Authentication failed: token rejected: "


# ------------------------------------------------------------------------------------------ raw client
class SaslRawClient:
    """A blocking Kafka client that speaks exact request versions through our codec, for wire assertions."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        # Every answer here is local to the gateway (token checks included): 5 s is ample.
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        local_host, local_port = self.sock.getsockname()[:2]
        self.address = f"{local_host}:{local_port}"  # what the gateway records as the client address
        self.client_id = f"raw-{uuid.uuid4().hex[:8]}"
        self.correlation_id = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, api_key: int, version: int, msg: Any) -> None:
        self.correlation_id += 1
        header = framing.request_header(api_key, version, self.correlation_id, self.client_id,
                                        codec.request_header_version(api_key, version))
        self.sock.sendall(framing.encode_frame([header, codec.encode_request(api_key, version, msg)]))

    def call(self, api_key: int, version: int, msg: Any) -> Any:
        self.send(api_key, version, msg)
        return self.receive(api_key, version)

    def receive(self, api_key: int, version: int) -> Any:
        """The response to the last request sent (this client never pipelines)."""
        size = struct.unpack(">i", self._recv_exactly(4))[0]
        payload = self._recv_exactly(size)
        assert struct.unpack_from(">i", payload)[0] == self.correlation_id
        body, _ = codec.decode_response(api_key, version, payload,
                                        4 + codec.response_header_version(api_key, version))
        return body

    def _recv_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            out += chunk
        return out

    def api_versions(self) -> Any:
        return self.call(API_VERSIONS, 3, ApiVersionsRequest(client_software_name="raw-test",
                                                             client_software_version="1"))

    def handshake(self, mechanism: str, version: int = 1) -> Any:
        return self.call(SASL_HANDSHAKE, version, SaslHandshakeRequest(mechanism=mechanism))

    def authenticate(self, auth_bytes: bytes, version: int = 2) -> Any:
        return self.call(SASL_AUTHENTICATE, version, SaslAuthenticateRequest(auth_bytes=auth_bytes))

    def login(self, token: str, mechanism: str = "PLAIN", username: str = "raw-user") -> Any:
        """SaslHandshake v1 + SaslAuthenticate v2; a KIP-368 re-authentication is the same two requests."""
        handshake = self.handshake(mechanism)
        assert handshake.error_code == 0, handshake
        return self.authenticate(sasl_message(mechanism, token, username))

    def metadata(self) -> Any:
        return self.call(METADATA, 12, MetadataRequest(topics=[], allow_auto_topic_creation=False))

    def wait_closed(self, timeout: float) -> bool:
        """True once the gateway closes the connection (EOF or reset) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                if self.sock.recv(4096) == b"":
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False


def sasl_message(mechanism: str, token: str, username: str) -> bytes:
    if mechanism == "PLAIN":  # RFC 4616: authzid NUL authcid NUL password, the token is the password
        return b"\x00" + username.encode() + b"\x00" + token.encode()
    # RFC 7628 client-first message as Kafka frames it
    return f"n,a={username},\x01auth=Bearer {token}\x01\x01".encode()


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def at_address(address: str, kind: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def matches(event: dict[str, Any]) -> bool:
        return (event.get("client", {}).get("address") == address
                and (kind is None or event.get("kind") == kind))
    return matches


def audit_text(audit_dir: Path) -> str:
    return "".join(f.read_text() for f in sorted(audit_dir.glob("audit*.jsonl*")))


# ------------------------------------------------------------------------------------------ bad tokens
def _tampered(idp: ManagedProcess) -> str:
    """A correctly signed token whose payload was edited afterwards to claim the admin group."""
    header, payload, signature = mint(idp, sub=f"tamper-{uuid.uuid4().hex[:6]}", groups=[]).split(".")
    claims = token_claims(f"{header}.{payload}.{signature}")
    claims["groups"] = ["platform-admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert forged != payload
    return f"{header}.{forged}.{signature}"


@dataclass(frozen=True)
class BadToken:
    name: str
    build: Callable[[ManagedProcess], str]
    reason: str  # the stable code the audit event carries in its details
    says: str  # what the SASL error message must mention (case-insensitive)


def _with_claims(**claims_at: Callable[[int], Any] | str) -> Callable[[ManagedProcess], str]:
    # Every bad token claims the most powerful group: if one were accepted, the damage would be visible.
    def build(idp: ManagedProcess) -> str:
        now = int(time.time())
        claims = {k: (v(now) if callable(v) else v) for k, v in claims_at.items()}
        return mint(idp, sub=f"bad-{uuid.uuid4().hex[:6]}", groups=["platform-admins"], claims=claims)
    return build


def _signed_as(sign: str) -> Callable[[ManagedProcess], str]:
    def build(idp: ManagedProcess) -> str:
        return mint(idp, sub=f"bad-{uuid.uuid4().hex[:6]}", groups=["platform-admins"], sign=sign)
    return build


BAD_TOKENS = [
    BadToken("expired", _with_claims(exp=lambda now: now - 120, iat=lambda now: now - 400), "expired", "expired"),
    BadToken("not-yet-valid", _with_claims(nbf=lambda now: now + 600), "not_yet_valid", "not valid"),
    BadToken("wrong-issuer", _with_claims(iss="http://127.0.0.1:9/not-our-issuer"), "bad_issuer", "issuer"),
    BadToken("wrong-audience", _with_claims(aud="some-other-service"), "bad_audience", "audience"),
    BadToken("unknown-kid", _signed_as("unpublished"), "unknown_kid", "key id"),
    BadToken("alg-none", _signed_as("none"), "alg_not_allowed", "none"),
    BadToken("hs256-with-public-key", _signed_as("hs256-public-key"), "alg_not_allowed", "HS256"),
    BadToken("tampered-payload", _tampered, "bad_signature", "signature"),
    BadToken("garbage", lambda _idp: f"garbage-{uuid.uuid4().hex}", "malformed", "JWT"),
]
BAD_TOKEN = {case.name: case for case in BAD_TOKENS}


@pytest.mark.parametrize("mechanism", ["PLAIN", "OAUTHBEARER"])
@pytest.mark.parametrize("case", BAD_TOKENS, ids=[c.name for c in BAD_TOKENS])
def test_bad_token_is_refused_with_its_reason(secure_gateway, idp, audit_dir, case: BadToken,
                                              mechanism: str) -> None:
    token = case.build(idp)
    with SaslRawClient(secure_gateway.bootstrap) as client:
        assert client.api_versions().error_code == 0
        assert client.handshake(mechanism).error_code == 0
        answer = client.authenticate(sasl_message(mechanism, token, "raw-user"))
        assert answer.error_code == SASL_AUTHENTICATION_FAILED
        assert answer.error_message.startswith(REFUSAL_PREFIX), answer.error_message
        assert case.says.lower() in answer.error_message.lower(), answer.error_message
        assert token not in answer.error_message
        assert answer.session_lifetime_ms == 0
        assert client.wait_closed(5), "the gateway must close the connection after a failed authentication"
    events = wait_for_audit(audit_dir, at_address(client.address, "auth"))
    assert len(events) == 1, events
    event = events[0]
    assert event["decision"] == "denied"
    assert case.reason in (event.get("details") or {}).values(), event  # the stable reason code
    assert answer.error_message == "Authentication failed: " + event["reason"]
    assert "principal" not in event, "a refused token must not lend its claims to the audit record"
    assert wait_for_audit(audit_dir, at_address(client.address, "session_close")), "no session_close event"
    assert token not in audit_text(audit_dir), "the token itself must never reach the audit trail"


# ------------------------------------------------------------------------------------ SASL edge cases
def test_request_before_authentication_closes_the_connection(secure_gateway, audit_dir) -> None:
    with SaslRawClient(secure_gateway.bootstrap) as client:
        assert client.api_versions().error_code == 0  # allowed before authentication
        client.send(METADATA, 12, MetadataRequest(topics=None))
        assert client.wait_closed(5), "Metadata before SASL must close the connection"
    [event] = wait_for_audit(audit_dir, lambda e: at_address(client.address)(e) and e.get("api") == "Metadata")
    assert event["decision"] == "denied"
    assert "before SASL authentication" in event["reason"]


def test_sasl_handshake_v0_is_refused(secure_gateway, audit_dir) -> None:
    with SaslRawClient(secure_gateway.bootstrap) as client:
        answer = client.handshake("PLAIN", version=0)
        assert answer.error_code != 0
        assert client.wait_closed(5)
    [event] = wait_for_audit(audit_dir, at_address(client.address, "auth"))
    assert event["decision"] == "denied" and "v0" in event["reason"]


def test_unknown_mechanism_gets_the_enabled_list(secure_gateway, audit_dir) -> None:
    with SaslRawClient(secure_gateway.bootstrap) as client:
        answer = client.handshake("SCRAM-SHA-256")
        assert answer.error_code == UNSUPPORTED_SASL_MECHANISM
        assert sorted(answer.mechanisms) == ["OAUTHBEARER", "PLAIN"]
        assert client.wait_closed(5)
    [event] = wait_for_audit(audit_dir, at_address(client.address, "auth"))
    assert event["decision"] == "denied" and "SCRAM-SHA-256" in event["reason"]


# ------------------------------------------------------------------------------ KIP-368 and expiry
def test_reauthentication_with_same_subject_outlives_the_first_token(secure_gateway, idp, audit_dir) -> None:
    sub = f"reauth-{uuid.uuid4().hex[:6]}"
    first = mint(idp, sub=sub, groups=[], ttl_s=4)
    first_exp = token_claims(first)["exp"]
    with SaslRawClient(secure_gateway.bootstrap) as client:
        client.api_versions()
        sent_at = time.time()
        answer = client.login(first)
        assert answer.error_code == 0, answer.error_message
        expected_ms = (first_exp - sent_at) * 1000
        assert 0 < answer.session_lifetime_ms <= 4000
        assert abs(answer.session_lifetime_ms - expected_ms) < 1000, (answer.session_lifetime_ms, expected_ms)
        assert client.metadata().brokers

        second = mint(idp, sub=sub, groups=[], ttl_s=60)
        again = client.login(second)  # on the same connection: a new handshake + authenticate (KIP-368)
        assert again.error_code == 0, again.error_message
        assert 55_000 < again.session_lifetime_ms <= 60_000

        # Keep using the connection until well past the first token's expiry and the worker's 1 s sweep.
        while time.time() < first_exp + 2.5:
            assert client.metadata().brokers
            time.sleep(0.25)
        assert client.metadata().brokers
        assert not client.wait_closed(0.2)
    auth = wait_for_audit(audit_dir, at_address(client.address, "auth"), count=2)
    assert [e["reason"] for e in auth] == ["authenticated", "re-authenticated"]
    assert all(e["decision"] == "allowed" and e["principal"]["sub"] == sub for e in auth)
    expired = [e for e in read_audit(audit_dir) if at_address(client.address, "session_expired")(e)]
    assert expired == []


def test_reauthentication_as_another_subject_is_refused(secure_gateway, idp, audit_dir) -> None:
    with SaslRawClient(secure_gateway.bootstrap) as client:
        assert client.login(mint(idp, sub="first-subject", groups=[], ttl_s=60)).error_code == 0
        answer = client.login(mint(idp, sub="second-subject", groups=[], ttl_s=60))
        assert answer.error_code == SASL_AUTHENTICATION_FAILED
        assert "different subject" in answer.error_message
        assert client.wait_closed(5)
    auth = wait_for_audit(audit_dir, at_address(client.address, "auth"), count=2)
    assert [e["decision"] for e in auth] == ["allowed", "denied"]
    assert "second-subject" in auth[1]["reason"]


def test_expiry_without_reauthentication_closes_the_connection(secure_gateway, idp, audit_dir) -> None:
    token = mint(idp, sub=f"expiring-{uuid.uuid4().hex[:6]}", groups=[], ttl_s=3)
    expires_at = token_claims(token)["exp"]
    with SaslRawClient(secure_gateway.bootstrap) as client:
        assert client.login(token).error_code == 0
        assert client.metadata().brokers
        closed = client.wait_closed(expires_at - time.time() + 5)
        closed_at = time.time()
    assert closed, "the gateway kept a connection whose token expired"
    assert expires_at - 0.5 <= closed_at <= expires_at + 3, (expires_at, closed_at)
    events = wait_for_audit(audit_dir, lambda e: at_address(client.address)(e) and (
        e["kind"] == "session_expired"
        or (e["kind"] == "session_close" and "expir" in (e.get("reason") or ""))))
    assert events, "no audit event records the expiry"


@pytest.fixture(scope="module")
def quiet_topic(secure_gateway, idp) -> Iterator[str]:
    """An empty topic analysts may consume: a Fetch on it waits at the broker for max_wait_ms."""
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))  # kept alive until the future resolves
    name = unique_topic("payments.quiet")
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    yield name


def test_request_in_flight_at_expiry_is_answered_then_reauthentication_succeeds(secure_gateway, idp,
                                                                                quiet_topic) -> None:
    """KIP-368 as brokers keep it: a session that expires is closed on the client's next request that is not
    a re-authentication, not while a request sent during the valid session is still at the broker. Clients
    (librdkafka, the Java client) re-authenticate only once nothing is in flight, so a long poll (Fetch,
    JoinGroup) spanning the expiry must be answered, and the re-authentication that follows must succeed."""
    sub = f"long-poll-{uuid.uuid4().hex[:6]}"
    token = mint(idp, sub=sub, groups=["analysts"], ttl_s=4)
    expires_at = token_claims(token)["exp"]
    long_poll = FetchRequest(max_wait_ms=3000, min_bytes=1, topics=[FetchRequestFetchTopic(
        topic=quiet_topic, partitions=[FetchRequestFetchPartition(partition=0, fetch_offset=0,
                                                                 partition_max_bytes=1 << 20)])])
    with SaslRawClient(secure_gateway.bootstrap) as client:
        assert client.login(token).error_code == 0
        time.sleep(max(0.0, expires_at - 1.0 - time.time()))  # send the long poll 1 s before the expiry
        client.send(FETCH, 4, long_poll)
        try:
            answer = client.receive(FETCH, 4)
        except ConnectionError:
            pytest.fail(f"the gateway closed the connection {time.time() - expires_at:+.1f}s after the token "
                        "expired while a Fetch sent during the valid session was still waiting at the broker")
        answered_at = time.time()
        assert answered_at > expires_at, "the long poll did not span the expiry; the test proves nothing"
        assert [p.error_code for t in answer.responses for p in t.partitions] == [0]
        again = client.login(mint(idp, sub=sub, groups=["analysts"], ttl_s=60))
        assert again.error_code == 0, again.error_message
        assert client.metadata().brokers


# ------------------------------------------------------------------------------ real librdkafka
@pytest.fixture(scope="module")
def writable_topic(secure_gateway, idp) -> Iterator[str]:
    admin = AdminClient(oidc_conf(secure_gateway, idp, "admin-svc"))  # kept alive until the future resolves
    name = unique_topic("payments.tokens")
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    yield name


def _produce_one(conf: dict[str, Any], topic: str) -> str | None:
    """Produce one record; the delivery error name, or None when it was written."""
    outcome: list[str | None] = []
    producer = Producer({**conf, "message.timeout.ms": 20000})
    producer.produce(topic, value=b"token-test",
                     on_delivery=lambda err, _msg: outcome.append(err.name() if err else None))
    assert producer.flush(25) == 0
    return outcome[0]


def _authentication_errors(conf: dict[str, Any], timeout: float = 15.0) -> list[str]:
    """Start a real producer and collect the SASL authentication errors librdkafka reports."""
    errors: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.code() == KafkaError._AUTHENTICATION:
            errors.append(err.str())

    producer = Producer({**conf, "error_cb": on_error, "reconnect.backoff.ms": 500})
    deadline = time.monotonic() + timeout
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    return errors


def _static_oauth(token: str) -> Callable[[str], tuple[str, float]]:
    # librdkafka does not parse the token; the expiry here only tells it when to ask again.
    return lambda _config: (token, time.time() + 300)


def oauth_conf(gw: GatewayProcess, token: str, client_id: str) -> dict[str, Any]:
    return {"bootstrap.servers": gw.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": _static_oauth(token), "client.id": client_id}


def test_librdkafka_plain_and_static_oauthbearer_tokens_work(secure_gateway, idp, audit_dir,
                                                             writable_topic) -> None:
    sub = f"writer-{uuid.uuid4().hex[:6]}"
    plain_id, oauth_id = unique_topic("plain-client"), unique_topic("oauth-client")
    token = mint(idp, sub=sub, groups=["payments-svc"])
    assert _produce_one({**plain_conf(secure_gateway, token, username="writer-name"), "client.id": plain_id},
                        writable_topic) is None
    assert _produce_one(oauth_conf(secure_gateway, token, oauth_id), writable_topic) is None

    def auth_of(client_id: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e["kind"] == "auth" and e.get("client", {}).get("client_id") == client_id

    plain_auth = wait_for_audit(audit_dir, auth_of(plain_id))
    oauth_auth = wait_for_audit(audit_dir, auth_of(oauth_id))
    assert plain_auth and oauth_auth
    for events, mechanism in ((plain_auth, "PLAIN"), (oauth_auth, "OAUTHBEARER")):
        assert all(e["decision"] == "allowed" and e["principal"]["sub"] == sub for e in events)
        assert {e["details"]["mechanism"] for e in events} == {mechanism}
    assert {e["details"].get("username") for e in plain_auth} == {"writer-name"}  # audited, not trusted
    assert token not in audit_text(audit_dir)


def test_librdkafka_reports_expired_plain_token(secure_gateway, idp, audit_dir) -> None:
    client_id = unique_topic("expired-client")
    token = BAD_TOKEN["expired"].build(idp)
    errors = _authentication_errors({**plain_conf(secure_gateway, token), "client.id": client_id})
    assert errors, "librdkafka never reported an authentication failure"
    assert REFUSAL_PREFIX in errors[0] and "expired" in errors[0], errors[0]
    [event, *_] = wait_for_audit(audit_dir, lambda e: e["kind"] == "auth"
                                 and e.get("client", {}).get("client_id") == client_id)
    assert event["decision"] == "denied" and "expired" in (event.get("details") or {}).values()


def test_librdkafka_reports_tampered_oauthbearer_token(secure_gateway, idp, audit_dir) -> None:
    client_id = unique_topic("tampered-client")
    errors = _authentication_errors(oauth_conf(secure_gateway, _tampered(idp), client_id))
    assert errors, "librdkafka never reported an authentication failure"
    assert REFUSAL_PREFIX in errors[0] and "signature" in errors[0], errors[0]
    [event, *_] = wait_for_audit(audit_dir, lambda e: e["kind"] == "auth"
                                 and e.get("client", {}).get("client_id") == client_id)
    assert event["decision"] == "denied" and "bad_signature" in (event.get("details") or {}).values()


# ---------------------------------------------------------------- librdkafka re-authenticating by itself
SHORT_TOKEN_TTL_S = 6


@pytest.fixture
def short_token_stack(tansu: ManagedProcess, tmp_path: Path) -> Iterator[tuple[GatewayProcess, ManagedProcess, Path]]:
    """A provider issuing 6-second tokens and a gateway trusting it, for this test only."""
    short_idp = start_dev_idp(USERS, CLIENTS, log_path=tmp_path / "idp.log", token_ttl_s=SHORT_TOKEN_TTL_S)
    audit = tmp_path / "audit"
    audit.mkdir()
    try:
        cfg = write_identity_config(tmp_path / "identity.yaml", short_idp.extra["issuer"], audit)
        gw = start_gateway(tansu.address, tmp_path, workers=2, config=cfg)
    except BaseException:
        short_idp.stop()
        raise
    yield gw, short_idp, audit
    code = gw.stop()
    short_idp.stop()
    assert code == 0, gw.log_text()[-3000:]


def test_librdkafka_reauthenticates_with_short_lived_oidc_tokens(short_token_stack) -> None:
    gw, short_idp, audit = short_token_stack
    topic = unique_topic("payments.reauth")
    admin = AdminClient(oidc_conf(gw, short_idp, "admin-svc"))  # kept alive until the future resolves
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    client_errors: list[str] = []

    def on_error(err: KafkaError) -> None:
        client_errors.append(f"{err.name()}: {err.str()}")

    producer = Producer({**oidc_conf(gw, short_idp, "payments-svc"), "error_cb": on_error, "linger.ms": 0})
    # Assigned, not subscribed: a group join would add Tansu's join delay, not re-authentication evidence.
    # Short fetch long-polls keep librdkafka's in-flight requests brief (it re-authenticates once none are).
    consumer = Consumer({**oidc_conf(gw, short_idp, "analytics-svc"), "error_cb": on_error,
                         "group.id": unique_topic("analytics-reauth"), "enable.auto.commit": False,
                         "fetch.wait.max.ms": 100})
    consumer.assign([TopicPartition(topic, 0, 0)])
    sent: list[bytes] = []
    delivery_errors: list[str] = []
    received: list[bytes] = []

    def take(message: Any) -> None:
        if message is not None and not message.error():
            received.append(message.value())

    run_until = time.monotonic() + 2.5 * SHORT_TOKEN_TTL_S  # more than two token lifetimes
    while time.monotonic() < run_until:
        value = f"r{len(sent)}".encode()
        producer.produce(topic, value=value,
                         on_delivery=lambda err, _m: delivery_errors.append(err.name()) if err else None)
        sent.append(value)
        producer.poll(0)
        take(consumer.poll(0.25))
    assert producer.flush(20) == 0
    deadline = time.monotonic() + 20
    while len(received) < len(sent) and time.monotonic() < deadline:
        take(consumer.poll(0.25))
    consumer.close()

    assert delivery_errors == []
    assert received == sent, "records produced across token lifetimes must all be consumed, in order"
    assert not [e for e in client_errors if "AUTHENTICATION" in e], client_errors
    events = read_audit(audit)
    for sub in ("payments-svc", "analytics-svc"):
        reauths = [e for e in events if e["kind"] == "auth" and e.get("reason") == "re-authenticated"
                   and e["principal"]["sub"] == sub]
        assert len(reauths) >= 2, f"{sub} re-authenticated {len(reauths)} times in 2.5 token lifetimes"
