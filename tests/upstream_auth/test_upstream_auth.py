"""Transcript tests of the gateway's SASL client towards the broker (no network).

Each test plays the broker's side of the conversation: the requests the client returns are checked, and
the broker's decoded responses are fed back in.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Literal, get_args

import msgspec
import pytest
import scramp  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocols.kafka import codec
from gateway.protocols.kafka.generated.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse
from gateway.protocols.kafka.upstream_auth import (
    MAX_SCRAM_ITERATIONS,
    Mechanism,
    ScramKeyCache,
    UpstreamAuthError,
    UpstreamSaslClient,
)
from tests.upstream_auth.scram_reference import ReferenceScramServer

# RFC 7677 section 3: the SCRAM-SHA-256 example conversation.
RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE = "user", "pencil", "rOprNGfwEbeRWgbNEkqO"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

HANDSHAKE_OK = SaslHandshakeResponse(error_code=0, mechanisms=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])


def fixed(nonce: str) -> Callable[[], str]:
    return lambda: nonce


def auth_response(
    auth_bytes: bytes = b"", *, error_code: int = 0, error_message: str | None = None, lifetime: int = 0
) -> SaslAuthenticateResponse:
    return SaslAuthenticateResponse(
        error_code=error_code,
        error_message=error_message,
        auth_bytes=auth_bytes,
        session_lifetime_ms=lifetime,
    )


def sent(step: tuple[int, int, msgspec.Struct] | None) -> bytes:
    """The auth_bytes of the SaslAuthenticate request a step returned (failing if it returned anything else)."""
    assert step is not None
    api_key, _version, request = step
    assert api_key == 36 and isinstance(request, SaslAuthenticateRequest)
    return request.auth_bytes


def start_scram(client: UpstreamSaslClient) -> bytes:
    """Run the handshake; return the client-first message the client then sends."""
    client.first_request()
    return sent(client.on_response(17, HANDSHAKE_OK))


def rfc_client_after_server_first() -> tuple[UpstreamSaslClient, bytes]:
    client = UpstreamSaslClient("SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed(RFC_CLIENT_NONCE))
    start_scram(client)
    final = sent(client.on_response(36, auth_response(RFC_SERVER_FIRST)))
    return client, final


# ------------------------------------------------------------------------------------------ SCRAM


def test_rfc7677_sha256_conversation_is_reproduced_byte_for_byte() -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed(RFC_CLIENT_NONCE))
    assert client.first_request() == (17, 1, SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
    assert client.on_response(17, HANDSHAKE_OK) == (
        36,
        1,
        SaslAuthenticateRequest(auth_bytes=RFC_CLIENT_FIRST),
    )
    assert client.on_response(36, auth_response(RFC_SERVER_FIRST)) == (
        36,
        1,
        SaslAuthenticateRequest(auth_bytes=RFC_CLIENT_FINAL),
    )
    assert not client.done
    assert client.on_response(36, auth_response(RFC_SERVER_FINAL, lifetime=3_600_000)) is None
    assert client.done
    assert client.session_lifetime_ms == 3_600_000


def test_sha512_conversation_against_the_reference_server() -> None:
    server = ReferenceScramServer(
        "sha512",
        {"gateway": "s3cr3t-for-512"},
        salt=b"0123456789abcdef",
        iterations=4096,
        server_nonce="SRVnonce512",
    )
    client = UpstreamSaslClient("SCRAM-SHA-512", "gateway", "s3cr3t-for-512", nonce=fixed("CLInonce512"))
    client_first = start_scram(client)
    assert client_first == b"n,,n=gateway,r=CLInonce512"
    final = sent(client.on_response(36, auth_response(server.first(client_first))))
    # The proof is what the reference server recomputes from the password; a wrong one raises there.
    server_final = server.final(final)
    assert client.on_response(36, auth_response(server_final, lifetime=60_000)) is None
    assert client.done and client.session_lifetime_ms == 60_000


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("username", ["svc", "odd=na,me"])
def test_scram_against_the_scramp_library_server(mechanism: Mechanism, username: str) -> None:
    # scramp is an independent SCRAM implementation; it checks the proof and signs the server-final message.
    auth_info: tuple[bytes, bytes, bytes, int] = scramp.ScramMechanism(mechanism).make_auth_info(
        "pa55-word", iteration_count=4096
    )
    seen_names: list[str] = []

    def lookup(saslname: str) -> tuple[bytes, bytes, bytes, int]:
        seen_names.append(saslname)
        return auth_info

    server = scramp.ScramMechanism(mechanism).make_server(lookup)
    client = UpstreamSaslClient(mechanism, username, "pa55-word", authenticate_version=2)
    server.set_client_first(start_scram(client).decode())
    step = client.on_response(36, auth_response(server.get_server_first().encode()))
    assert step is not None and step[1] == 2
    server.set_client_final(sent(step).decode())
    assert client.on_response(36, auth_response(server.get_server_final().encode())) is None
    assert client.done
    # scramp un-escapes the saslname before the lookup: it must get back exactly the real user name.
    assert seen_names == [username]


def test_saslname_escaping_reaches_the_reference_server_as_the_real_name() -> None:
    server = ReferenceScramServer(
        "sha256", {"a=b,c": "pw-escaped"}, salt=b"salt-salt-salt!!", iterations=4096, server_nonce="x"
    )
    client = UpstreamSaslClient("SCRAM-SHA-256", "a=b,c", "pw-escaped", nonce=fixed("abc"))
    client_first = start_scram(client)
    assert client_first == b"n,,n=a=3Db=2Cc,r=abc"
    server.first(client_first)
    assert server.user == "a=b,c"


def test_wrong_server_signature_is_refused() -> None:
    client, _ = rfc_client_after_server_first()
    forged = b"v=" + base64.b64encode(b"\x00" * 32)
    with pytest.raises(UpstreamAuthError, match="server signature does not match"):
        client.on_response(36, auth_response(forged))
    assert not client.done


def test_server_final_error_with_error_code_zero_is_refused() -> None:
    # Tansu 0.6.0 answers an unknown user this way; a client that only checked error_code would be "logged in".
    client, _ = rfc_client_after_server_first()
    with pytest.raises(
        UpstreamAuthError, match=r"SCRAM-SHA-256 login as user 'user' failed: .*'unknown-user'"
    ):
        client.on_response(36, auth_response(b"e=unknown-user"))


def test_server_nonce_must_extend_the_client_nonce() -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed(RFC_CLIENT_NONCE))
    start_scram(client)
    replayed = b"r=someoneElsesNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    with pytest.raises(UpstreamAuthError, match="nonce does not extend"):
        client.on_response(36, auth_response(replayed))
    # Not extending at all (the server added nothing) is refused too.
    client = UpstreamSaslClient("SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed(RFC_CLIENT_NONCE))
    start_scram(client)
    with pytest.raises(UpstreamAuthError, match="nonce does not extend"):
        client.on_response(36, auth_response(b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))


@pytest.mark.parametrize("iterations", [1, 4095, MAX_SCRAM_ITERATIONS + 1])
def test_iteration_counts_outside_the_accepted_range_are_refused(iterations: int) -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed("n1"))
    start_scram(client)
    with pytest.raises(UpstreamAuthError, match=f"asked for {iterations} SCRAM iterations"):
        client.on_response(36, auth_response(f"r=n1srv,s=c2FsdA==,i={iterations}".encode()))


@pytest.mark.parametrize(
    ("server_first", "reason"),
    [
        (b"m=ext,r=n1srv,s=c2FsdA==,i=4096", "requires a SCRAM extension"),
        (b"r=n1srv,i=4096", "lacks r=, s= or i="),
        (b"r=n1srv,s=!!notbase64!!,i=4096", "unreadable SCRAM salt"),
        (b"r=n1srv,s=c2FsdA==,i=lots", "unreadable SCRAM salt or iteration count"),
        (b"garbage", "malformed SCRAM server-first"),
        (b"\xff\xfe", "malformed SCRAM server-first"),
        (b"e=other-error", "refused the login: 'other-error'"),
    ],
)
def test_malformed_server_first_messages_are_refused(server_first: bytes, reason: str) -> None:
    client = UpstreamSaslClient("SCRAM-SHA-512", "svc", "pw-malformed", nonce=fixed("n1"))
    start_scram(client)
    with pytest.raises(UpstreamAuthError, match=reason):
        client.on_response(36, auth_response(server_first))


def test_server_extensions_after_the_iteration_count_are_ignored() -> None:
    server = ReferenceScramServer(
        "sha256", {"svc": "pw-ext"}, salt=b"sodium-chloride!", iterations=4096, server_nonce="S"
    )
    client = UpstreamSaslClient("SCRAM-SHA-256", "svc", "pw-ext", nonce=fixed("C"))
    server_first = server.first(start_scram(client))
    # RFC 5802 allows extensions after i=; the signature then covers them, so the reference server must too.
    extended = server_first + b",x=future"
    server._auth_prefix += ",x=future"
    final = sent(client.on_response(36, auth_response(extended)))
    assert client.on_response(36, auth_response(server.final(final))) is None


# ------------------------------------------------------------------------------------------ PLAIN


def test_plain_sends_empty_authzid_user_and_password_then_succeeds() -> None:
    client = UpstreamSaslClient("PLAIN", "gateway", "plain-secret", authenticate_version=2)
    assert client.first_request() == (17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
    assert client.on_response(17, HANDSHAKE_OK) == (
        36,
        2,
        SaslAuthenticateRequest(auth_bytes=b"\x00gateway\x00plain-secret"),
    )
    assert client.on_response(36, auth_response(lifetime=5000)) is None
    assert client.done and client.session_lifetime_ms == 5000


def test_requests_encode_with_the_generated_codecs() -> None:
    versions: tuple[Literal[1, 2], ...] = (1, 2)
    for version in versions:
        client = UpstreamSaslClient("PLAIN", "u", "pw-codec", authenticate_version=version)
        api_key, handshake_version, handshake = client.first_request()
        assert (
            codec.decode_request(
                api_key, handshake_version, codec.encode_request(api_key, handshake_version, handshake)
            )[0]
            == handshake
        )
        step = client.on_response(17, HANDSHAKE_OK)
        assert step is not None
        api_key, auth_version, authenticate = step
        assert auth_version == version
        assert (
            codec.decode_request(
                api_key, auth_version, codec.encode_request(api_key, auth_version, authenticate)
            )[0]
            == authenticate
        )


# ------------------------------------------------------------------------------------------ broker refusals


def test_mechanism_not_enabled_names_the_brokers_list() -> None:
    client = UpstreamSaslClient("PLAIN", "gateway", "pw-not-enabled")
    client.first_request()
    refusal = SaslHandshakeResponse(error_code=33, mechanisms=["SCRAM-SHA-512", "OAUTHBEARER"])
    with pytest.raises(UpstreamAuthError) as caught:
        client.on_response(17, refusal)
    message = str(caught.value)
    assert "PLAIN" in message and "'gateway'" in message
    assert "it enables: 'SCRAM-SHA-512', 'OAUTHBEARER'" in message


def test_refusal_that_echoes_the_requested_mechanism_hints_at_disabled_authentication() -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", "gateway", "pw-echo")
    client.first_request()
    with pytest.raises(UpstreamAuthError, match="is SASL authentication enabled"):
        client.on_response(17, SaslHandshakeResponse(error_code=33, mechanisms=["SCRAM-SHA-256"]))


def test_bad_credentials_carry_the_brokers_error_message() -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", "gateway", "pw-bad-credentials", nonce=fixed("n"))
    start_scram(client)
    failure = auth_response(
        error_code=58,
        error_message="Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-256",
    )
    with pytest.raises(UpstreamAuthError) as caught:
        client.on_response(36, failure)
    assert "rejected the credentials (error code 58)" in str(caught.value)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in str(caught.value)


def test_other_error_codes_are_reported_with_their_number() -> None:
    client = UpstreamSaslClient("PLAIN", "gateway", "pw-other")
    client.first_request()
    client.on_response(17, HANDSHAKE_OK)
    with pytest.raises(UpstreamAuthError, match="error code 34"):
        client.on_response(36, auth_response(error_code=34, error_message="unexpected"))


def test_a_response_of_the_wrong_api_is_refused() -> None:
    client = UpstreamSaslClient("PLAIN", "gateway", "pw-wrong-api")
    client.first_request()
    with pytest.raises(UpstreamAuthError, match="expected a SaslHandshake response, got api key 36"):
        client.on_response(36, auth_response())


def test_the_client_fails_closed_and_cannot_be_reused() -> None:
    client = UpstreamSaslClient("PLAIN", "gateway", "pw-fail-closed")
    with pytest.raises(UpstreamAuthError, match="not valid while not started"):
        client.on_response(17, HANDSHAKE_OK)
    client.first_request()
    with pytest.raises(UpstreamAuthError):
        client.first_request()
    with pytest.raises(UpstreamAuthError):
        client.on_response(17, SaslHandshakeResponse(error_code=33, mechanisms=[]))
    with pytest.raises(UpstreamAuthError, match="not valid while failed"):
        client.on_response(36, auth_response())
    assert not client.done


def test_unexpected_internal_errors_surface_as_upstream_auth_errors() -> None:
    def broken_nonce() -> str:
        raise RuntimeError("entropy source exploded")

    client = UpstreamSaslClient("SCRAM-SHA-256", "gateway", "pw-internal", nonce=broken_nonce)
    client.first_request()
    with pytest.raises(UpstreamAuthError, match=r"internal error .*\(RuntimeError\)") as caught:
        client.on_response(17, HANDSHAKE_OK)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("bad_nonce", ["", "has,comma", "space here", "tab\t"])
def test_nonces_scram_forbids_are_refused(bad_nonce: str) -> None:
    client = UpstreamSaslClient("SCRAM-SHA-256", "gateway", "pw-nonce", nonce=fixed(bad_nonce))
    client.first_request()
    with pytest.raises(UpstreamAuthError, match="nonce"):
        client.on_response(17, HANDSHAKE_OK)


def test_the_default_nonce_is_fresh_and_printable() -> None:
    firsts = {start_scram(UpstreamSaslClient("SCRAM-SHA-256", "u", "pw-default-nonce")) for _ in range(5)}
    assert len(firsts) == 5
    for first in firsts:
        nonce = first.decode().rpartition(",r=")[2]
        assert len(nonce) >= 24 and "," not in nonce and nonce.isprintable()


@pytest.mark.parametrize(
    ("mechanism", "username", "password", "reason"),
    [
        ("GSSAPI", "u", "pw-x", "not supported"),
        ("PLAIN", "", "pw-x", "user name is empty"),
        ("PLAIN", "u", "", "password is empty"),
        ("PLAIN", "u", "pw\x00with-nul", "must not contain NUL"),
    ],
)
def test_invalid_settings_are_refused_at_construction(
    mechanism: str, username: str, password: str, reason: str
) -> None:
    with pytest.raises(UpstreamAuthError, match=reason) as caught:
        UpstreamSaslClient(mechanism, username, password)  # type: ignore[arg-type]  # GSSAPI on purpose
    if password:
        assert password not in str(caught.value)


# ------------------------------------------------------------------------------------------ secrets


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    password=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=4, max_size=24
    ),
    mechanism=st.sampled_from(list(get_args(Mechanism))),
    echoed_at=st.sampled_from(["handshake", "authenticate"]),
)
def test_the_password_never_appears_in_errors_or_repr_even_when_the_broker_echoes_it(
    password: str, mechanism: Mechanism, echoed_at: str
) -> None:
    client = UpstreamSaslClient(mechanism, "gateway", password, nonce=fixed("nonce"))
    client.first_request()
    assert password not in repr(client)
    with pytest.raises(UpstreamAuthError) as caught:
        if echoed_at == "handshake":
            client.on_response(17, SaslHandshakeResponse(error_code=33, mechanisms=[f"X-{password}"]))
        else:
            client.on_response(17, HANDSHAKE_OK)
            client.on_response(
                36, auth_response(error_code=58, error_message=f"bad password {password!s} given")
            )
    assert password not in str(caught.value)
    assert "gateway" in str(caught.value) and mechanism in str(caught.value)
    assert password not in repr(client)


def test_derived_scram_secrets_never_appear_in_errors() -> None:
    client, client_final = rfc_client_after_server_first()
    proof = client_final.rpartition(b",p=")[2].decode()
    with pytest.raises(UpstreamAuthError) as caught:
        client.on_response(36, auth_response(b"v=" + base64.b64encode(b"\x01" * 32)))
    salted = hashlib.pbkdf2_hmac(
        "sha256", RFC_PASSWORD.encode(), base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096
    )
    text = str(caught.value) + repr(client)
    for secret in (
        RFC_PASSWORD,
        proof,
        base64.b64encode(salted).decode(),
        salted.hex(),
        RFC_SERVER_FINAL.decode()[2:],
    ):
        assert secret not in text


# ------------------------------------------------------------------------------------------ key cache


def test_key_cache_runs_pbkdf2_once_for_repeated_logins(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_pbkdf2 = hashlib.pbkdf2_hmac

    def counting_pbkdf2(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        calls.append(iterations)
        return real_pbkdf2(hash_name, password, salt, iterations)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting_pbkdf2)
    cache = ScramKeyCache()
    for _ in range(3):
        client = UpstreamSaslClient(
            "SCRAM-SHA-256", RFC_USER, RFC_PASSWORD, nonce=fixed(RFC_CLIENT_NONCE), key_cache=cache
        )
        start_scram(client)
        assert sent(client.on_response(36, auth_response(RFC_SERVER_FIRST))) == RFC_CLIENT_FINAL
        assert client.on_response(36, auth_response(RFC_SERVER_FINAL)) is None
    assert calls == [4096]
    assert len(cache) == 1 and RFC_PASSWORD not in repr(cache)


def test_key_cache_keeps_credentials_apart_and_stays_bounded() -> None:
    cache = ScramKeyCache(max_entries=2)
    first = cache.keys_for("SCRAM-SHA-256", "u", "password-one", b"salt", 4096)
    second = cache.keys_for("SCRAM-SHA-256", "u", "password-two", b"salt", 4096)
    assert first != second
    cache.keys_for("SCRAM-SHA-512", "u", "password-one", b"salt", 4096)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="at least 1"):
        ScramKeyCache(max_entries=0)
