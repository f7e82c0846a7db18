"""The gateway's SASL client driven over real sockets: against the SASL test broker and against real Tansu.

The I/O loop here is the test's own (one request at a time); the gateway's session does the same with its
own driver.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from gateway.devstack.processes import ManagedProcess
from gateway.devstack.secured_broker import SecuredBroker
from gateway.protocols.kafka.generated.metadata import MetadataRequest
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest
from gateway.protocols.kafka.upstream_auth import (
    Mechanism,
    ScramKeyCache,
    UpstreamAuthError,
    UpstreamSaslClient,
)
from tests.upstream_auth.conftest import SHORT_SESSION_MS, USERS
from tests.upstream_auth.wire import WireConnection

pytestmark = pytest.mark.integration

_log = logging.getLogger("tests.upstream_auth")


def login(conn: WireConnection, client: UpstreamSaslClient) -> UpstreamSaslClient:
    """SaslHandshake v1, then SaslAuthenticate until the client is done (no ApiVersions first)."""
    request: tuple[int, int, msgspec.Struct] | None = client.first_request()
    while request is not None:
        api_key, version, body = request
        _log.debug("sending %s v%d", type(body).__name__, version)
        request = client.on_response(api_key, conn.request(api_key, version, body))
    return client


def assert_metadata_works(conn: WireConnection, broker: ManagedProcess) -> None:
    metadata = conn.request(3, 1, MetadataRequest(topics=None))
    assert [(b.host, b.port) for b in metadata.brokers] == [(broker.host, broker.port)]


# ------------------------------------------------------------------------------------------ SASL test broker


@pytest.mark.parametrize("authenticate_version", [1, 2])
@pytest.mark.parametrize("user", ["svc-scram256", "svc-scram512", "svc-plain", "odd=na,me"])
def test_login_then_metadata(
    secured_broker: SecuredBroker, user: str, authenticate_version: Literal[1, 2]
) -> None:
    mechanism, password = USERS[user]
    with WireConnection(secured_broker.address) as conn:
        client = login(
            conn, UpstreamSaslClient(mechanism, user, password, authenticate_version=authenticate_version)
        )
        assert client.done
        assert client.session_lifetime_ms == 0  # this broker sets no session limit
        assert_metadata_works(conn, secured_broker)


@pytest.mark.parametrize("user", ["svc-scram256", "svc-scram512", "svc-plain"])
def test_wrong_password_names_mechanism_and_user_but_not_the_password(
    secured_broker: SecuredBroker, user: str
) -> None:
    mechanism, _ = USERS[user]
    wrong = "Wr0ng-Pa55-6d1e"
    with WireConnection(secured_broker.address) as conn:
        with pytest.raises(UpstreamAuthError) as caught:
            login(conn, UpstreamSaslClient(mechanism, user, wrong))
        message = str(caught.value)
        assert mechanism in message and repr(user) in message and "error code 58" in message
        assert wrong not in message
        with pytest.raises(ConnectionError):  # the broker hangs up after a failed login
            conn.request(3, 1, MetadataRequest(topics=None))


def test_re_authentication_on_a_live_connection_with_a_shared_key_cache(
    secured_broker: SecuredBroker,
) -> None:
    mechanism, password = USERS["svc-scram512"]
    cache = ScramKeyCache()
    with WireConnection(secured_broker.address) as conn:
        for _ in range(3):
            login(conn, UpstreamSaslClient(mechanism, "svc-scram512", password, key_cache=cache))
            assert_metadata_works(conn, secured_broker)
    assert len(cache) == 1  # one salt from the broker, so one key derivation for all three logins


def test_session_lifetime_is_reported_and_renewed_before_it_runs_out(
    short_session_broker: SecuredBroker,
) -> None:
    mechanism, password = USERS["svc-scram512"]
    with (
        WireConnection(short_session_broker.address) as lapsing,
        WireConnection(short_session_broker.address) as renewed,
    ):
        started = time.monotonic()
        for conn in (lapsing, renewed):
            client = login(conn, UpstreamSaslClient(mechanism, "svc-scram512", password))
            assert client.session_lifetime_ms == SHORT_SESSION_MS
            assert_metadata_works(conn, short_session_broker)
        # The behaviour under test is a wall-clock deadline, so the test waits for the clock itself.
        time.sleep(max(0.0, started + 1.5 - time.monotonic()))
        login(renewed, UpstreamSaslClient(mechanism, "svc-scram512", password))
        time.sleep(max(0.0, started + SHORT_SESSION_MS / 1000 + 0.6 - time.monotonic()))
        assert_metadata_works(renewed, short_session_broker)
        with pytest.raises(ConnectionError):
            lapsing.request(3, 1, MetadataRequest(topics=None))


# ------------------------------------------------------------------------------------------ real Tansu


def test_tansu_takes_sasl_handshake_without_api_versions_first(
    tansu_with_authentication: ManagedProcess,
) -> None:
    with WireConnection(tansu_with_authentication.address) as conn:
        response = conn.request(17, 1, SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
        assert response.error_code == 0


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_tansu_scram_conversation_runs_to_the_server_final_refusal(
    tansu_with_authentication: ManagedProcess, mechanism: Mechanism
) -> None:
    # Tansu's rsasl server answers server-first (nonce, salt, iterations) and then, for a user it cannot
    # find, server-final "e=unknown-user" with error_code 0. The client must parse the real server-first
    # and treat that final message as a refusal, never as a login.
    password = "Tansu-pw-5c2a"
    with (
        WireConnection(tansu_with_authentication.address) as conn,
        pytest.raises(UpstreamAuthError) as caught,
    ):
        login(conn, UpstreamSaslClient(mechanism, "gateway", password))
    message = str(caught.value)
    assert f"{mechanism} login as user 'gateway' failed" in message and "unknown-user" in message
    assert password not in message


def test_tansu_closes_the_connection_on_a_plain_handshake(tansu_with_authentication: ManagedProcess) -> None:
    with WireConnection(tansu_with_authentication.address) as conn, pytest.raises(ConnectionError):
        conn.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))


# ------------------------------------------------------------------------------------------ secrets


def test_passwords_never_reach_exceptions_logs_or_output(
    secured_broker: SecuredBroker,
    tansu_with_authentication: ManagedProcess,
    sasl_logs: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    right = {user: password for user, (_, password) in USERS.items()}
    wrong = "Gr3p-Me-If-You-Can-90ab"
    texts: list[str] = []
    attempts: list[tuple[ManagedProcess, str, Mechanism, str]]
    attempts = [(secured_broker, user, mechanism, password) for user, (mechanism, password) in USERS.items()]
    attempts += [(secured_broker, user, mechanism, wrong) for user, (mechanism, _) in USERS.items()]
    attempts += [(tansu_with_authentication, "gateway", "SCRAM-SHA-512", wrong)]
    for broker, user, mechanism, password in attempts:
        client = UpstreamSaslClient(mechanism, user, password)
        with WireConnection(broker.address) as conn:
            try:
                login(conn, client)
            except UpstreamAuthError as exc:
                texts += [str(exc), repr(exc)]
        texts.append(repr(client))
    out, err = capfd.readouterr()
    texts += [
        out,
        err,
        caplog.text,
        secured_broker.log_text(),
        (sasl_logs / "tansu-behind-sasl.log").read_text(),
        tansu_with_authentication.log_text(),
    ]
    everything = "\n".join(texts)
    assert "failed" in everything  # the failing logins did produce error text to search
    for secret in [wrong, *right.values()]:
        assert secret not in everything, "a password leaked into an exception, a log or the output"
