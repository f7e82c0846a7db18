"""Token validation against tokens issued by a real OIDC provider process (issue 4's token cases).

Keys come from the provider's JWKS over HTTP via JwksClient; tokens come from its token endpoint or its
/test/mint endpoint. Every refusal must carry the stable reason code and a message that explains it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess
from gateway.enforcement.identity import TokenError, TokenValidator
from gateway.worker.jwks import JwksClient

pytestmark = pytest.mark.integration


def loaded_validator(idp: ManagedProcess, **kwargs: Any) -> TokenValidator:
    kwargs.setdefault("audience", idp.extra["audience"])
    validator = TokenValidator(issuer=str(idp.extra["issuer"]), **kwargs)
    jwks = asyncio.run(JwksClient(str(idp.extra["issuer"])).fetch_jwks())
    validator.set_jwks(jwks, time.time())
    return validator


@pytest.fixture(scope="module")
def validator(dev_idp: ManagedProcess) -> TokenValidator:
    return loaded_validator(dev_idp)


def refused(validator: TokenValidator, token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        validator.validate(token)
    assert token not in str(info.value)
    assert str(info.value)  # a clear message, not an empty exception
    return info.value


def test_client_credentials_token_is_accepted(
    dev_idp: ManagedProcess,
    validator: TokenValidator,
    http: Callable[..., Any],
    basic_auth: Callable[..., Any],
) -> None:
    status, answer = http(
        str(dev_idp.extra["token_endpoint"]),
        form={"grant_type": "client_credentials"},
        headers=basic_auth("payments-svc", "payments-secret-4b1e"),
    )
    assert status == 200, answer
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 300
    before = time.time()
    principal = validator.validate(answer["access_token"])
    assert principal.sub == "payments-svc"
    assert principal.groups == ("payments-svc",)
    assert principal.email == "payments@example.com"
    assert principal.issuer == dev_idp.extra["issuer"]
    assert before + 290 <= principal.expires_at <= before + 301


def test_password_grant_token_carries_user_groups(
    dev_idp: ManagedProcess, validator: TokenValidator, http: Callable[..., Any]
) -> None:
    status, answer = http(
        str(dev_idp.extra["token_endpoint"]),
        form={"grant_type": "password", "username": "dave", "password": "dave-pw-91c2", "client_id": "cli"},
    )
    assert status == 200, answer
    principal = validator.validate(answer["access_token"])
    assert principal.sub == "dave"
    assert principal.groups == ("analysts", "payments-svc")
    assert principal.email is None


@pytest.mark.parametrize(
    ("spec", "reason", "message_part"),
    [
        ({"claims": {"exp": int(time.time()) - 120}}, "expired", "expired"),
        ({"claims": {"nbf": int(time.time()) + 600}}, "not_yet_valid", "not valid for another"),
        ({"claims": {"iss": "https://evil.example"}}, "bad_issuer", "https://evil.example"),
        ({"claims": {"aud": "some-other-api"}}, "bad_audience", "some-other-api"),
        ({"sign": "unpublished"}, "unknown_kid", "is not in the issuer's JWKS"),
        ({"sign": "none"}, "alg_not_allowed", "alg 'none'"),
        ({"sign": "hs256-public-key"}, "alg_not_allowed", "symmetric algorithm 'HS256'"),
        ({"claims": {"iat": int(time.time()) + 600}}, "issued_in_future", "in the future"),
        ({"claims": {"exp": None}}, "missing_claim", "'exp'"),
        ({"header": {"typ": "id_token+jwt"}}, "bad_type", "not a JWT access token"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-issuer",
        "wrong-audience",
        "unknown-kid",
        "alg-none",
        "hs256-public-key",
        "iat-future",
        "no-exp",
        "bad-typ",
    ],
)
def test_negative_token_cases(
    validator: TokenValidator, mint: Callable[..., str], spec: dict[str, Any], reason: str, message_part: str
) -> None:
    error = refused(validator, mint(**spec))
    assert error.reason == reason
    assert message_part in str(error)


def test_tampered_payload_is_refused(validator: TokenValidator, mint: Callable[..., str]) -> None:
    token = mint(claims={"sub": "intern"}, groups=["interns"])
    assert validator.validate(token).groups == ("interns",)  # the untouched token is fine
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(validator, f"{head}.{forged}.{signature}").reason == "bad_signature"


def test_other_published_key_types(validator: TokenValidator, mint: Callable[..., str]) -> None:
    assert validator.validate(mint(sign="es256", claims={"sub": "ec-user"})).sub == "ec-user"
    assert validator.validate(mint(sign="eddsa", claims={"sub": "ed-user"})).sub == "ed-user"
    # An RS256 signature relabelled ES256 under the RSA key's kid must not be accepted.
    relabelled = mint(header={"alg": "ES256"})
    assert refused(validator, relabelled).reason == "alg_not_allowed"


def test_audience_list_and_string_groups(validator: TokenValidator, mint: Callable[..., str]) -> None:
    principal = validator.validate(mint(claims={"aud": ["account", "streamgate"], "groups": "solo"}))
    assert principal.groups == ("solo",)


def test_groups_from_a_nested_claim_of_a_keycloak_shaped_issuer(
    http: Callable[..., Any], basic_auth: Callable[..., Any]
) -> None:
    clients = {"svc": {"secret": "svc-secret-0d9e", "groups": ["ops", "readers"]}}
    with start_dev_idp({}, clients, groups_claim="realm_access.roles", issuer_path="/realms/demo") as idp:
        issuer = str(idp.extra["issuer"])
        assert issuer.endswith("/realms/demo")
        status, answer = http(
            str(idp.extra["token_endpoint"]),
            form={"grant_type": "client_credentials"},
            headers=basic_auth("svc", "svc-secret-0d9e"),
        )
        assert status == 200, answer
        payload = answer["access_token"].split(".")[1]
        raw_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert raw_claims["realm_access"] == {"roles": ["ops", "readers"]} and "groups" not in raw_claims

        nested = loaded_validator(idp, groups_claim="realm_access.roles")
        assert nested.validate(answer["access_token"]).groups == ("ops", "readers")
        flat = loaded_validator(idp, groups_claim="groups")
        assert flat.validate(answer["access_token"]).groups == ()
