"""TokenValidator and the JWS layer without any process: keys made here, a controllable clock.

The signer below is written independently of gateway/enforcement/jwt.py so a shared encoding bug cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.enforcement.identity import TokenError, TokenValidator
from gateway.enforcement.jwt import JwkError, JwsFormatError, b64url_decode, key_from_jwk, split_compact

ISSUER = "https://idp.test/realms/main"
AUDIENCE = "streamgate"
NOW = 1_700_000_000.0


def enc(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(value: int, size: int | None = None) -> str:
    return enc(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


class Key:
    """A private key plus its public JWK, able to sign a JWS with one algorithm."""

    def __init__(self, alg: str, kid: str, private: Any) -> None:
        self.alg, self.kid, self.private = alg, kid, private

    def jwk(self) -> dict[str, Any]:
        pub = self.private.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "n": uint(nums.n), "e": uint(nums.e)}
        if isinstance(pub, ec.EllipticCurvePublicKey):
            size = (pub.curve.key_size + 7) // 8
            crv = {256: "P-256", 384: "P-384", 521: "P-521"}[pub.curve.key_size]
            nums = pub.public_numbers()
            return {
                "kty": "EC",
                "kid": self.kid,
                "crv": crv,
                "x": uint(nums.x, size),
                "y": uint(nums.y, size),
            }
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        crv = "Ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "Ed448"
        return {"kty": "OKP", "kid": self.kid, "crv": crv, "x": enc(raw)}

    def sign(self, data: bytes) -> bytes:
        digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}.get(self.alg[2:])
        if self.alg.startswith("RS"):
            return self.private.sign(data, padding.PKCS1v15(), digest())
        if self.alg.startswith("PS"):
            return self.private.sign(
                data, padding.PSS(padding.MGF1(digest()), digest().digest_size), digest()
            )
        if self.alg.startswith("ES"):
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(digest())))
            size = (self.private.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self.private.sign(data)

    def token(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **(header or {})}
        signing_input = f"{enc(json.dumps(head).encode())}.{enc(json.dumps(claims).encode())}"
        return f"{signing_input}.{enc(self.sign(signing_input.encode()))}"


def make_key(alg: str, kid: str | None = None) -> Key:
    if alg[:2] in ("RS", "PS"):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif alg == "ES512":
        private = ec.generate_private_key(ec.SECP521R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return Key(alg, kid or f"k-{alg}", private)


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return make_key("RS256", "rsa-1")


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "groups": ["analysts"],
        "email": "alice@example.com",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def validator(*keys: Key, **kwargs: Any) -> TokenValidator:
    kwargs.setdefault("audience", AUDIENCE)
    v = TokenValidator(issuer=ISSUER, now=lambda: NOW, **kwargs)
    v.set_jwks({"keys": [k.jwk() for k in keys]}, fetched_at=NOW)
    return v


def refused(v: TokenValidator, token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        v.validate(token)
    if len(token) > 10:
        assert token not in str(info.value)  # the credential never ends up in a message
    return info.value


@pytest.mark.parametrize(
    "alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
)
def test_every_supported_algorithm_verifies(alg: str) -> None:
    key = make_key(alg)
    v = validator(key, algorithms=[alg])
    principal = v.validate(key.token(claims()))
    assert principal.sub == "alice"
    assert principal.groups == ("analysts",)
    assert principal.email == "alice@example.com"
    assert principal.expires_at == NOW + 300
    assert principal.issuer == ISSUER
    # Flip one byte of the signature: the same token must now fail.
    head, body, sig = key.token(claims()).split(".")
    raw = bytearray(b64url_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    assert refused(v, f"{head}.{body}.{enc(bytes(raw))}").reason == "bad_signature"


def test_ed448_verifies() -> None:
    private = ed448.Ed448PrivateKey.generate()
    key = Key("EdDSA", "ed448", private)
    assert validator(key, algorithms=["EdDSA"]).validate(key.token(claims())).sub == "alice"


def test_claims_digest_is_of_the_payload_not_the_token(rsa_key: Key) -> None:
    token = rsa_key.token(claims())
    payload = b64url_decode(token.split(".")[1])
    principal = validator(rsa_key).validate(token)
    assert principal.claims_digest == hashlib.sha256(payload).hexdigest()
    assert token not in repr(principal)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": NOW - 31}, "expired"),
        ({"nbf": NOW + 31}, "not_yet_valid"),
        ({"iat": NOW + 31}, "issued_in_future"),
        ({"iss": "https://evil.test"}, "bad_issuer"),
        ({"iss": None}, "bad_issuer"),
        ({"aud": "other"}, "bad_audience"),
        ({"aud": ["other", "more"]}, "bad_audience"),
        ({"aud": None}, "bad_audience"),
        ({"aud": 7}, "bad_audience"),
        ({"exp": None}, "missing_claim"),
        ({"exp": "tomorrow"}, "bad_claim"),
        ({"exp": True}, "bad_claim"),
        ({"sub": None}, "missing_claim"),
        ({"sub": ""}, "missing_claim"),
        ({"email": 5}, "bad_claim"),
        ({"groups": [1, 2]}, "bad_claim"),
    ],
)
def test_claim_checks(rsa_key: Key, overrides: dict[str, Any], reason: str) -> None:
    assert refused(validator(rsa_key), rsa_key.token(claims(**overrides))).reason == reason


def test_clock_skew_tolerates_small_differences(rsa_key: Key) -> None:
    v = validator(rsa_key)
    assert v.validate(rsa_key.token(claims(exp=NOW - 29, nbf=NOW + 29, iat=NOW + 29))).sub == "alice"
    strict = validator(rsa_key, clock_skew_s=0)
    assert refused(strict, rsa_key.token(claims(exp=NOW - 1))).reason == "expired"


def test_audience_list_containing_ours_is_accepted(rsa_key: Key) -> None:
    assert validator(rsa_key).validate(rsa_key.token(claims(aud=["account", AUDIENCE]))).sub == "alice"
    several = validator(rsa_key, audience=["kafka", "mqtt"])
    assert several.validate(rsa_key.token(claims(aud="mqtt"))).sub == "alice"


@pytest.mark.parametrize(
    ("path", "token_claims", "groups"),
    [
        ("realm_access.roles", {"realm_access": {"roles": ["a", "b", "a"]}}, ("a", "b")),
        ("groups", {"groups": "solo"}, ("solo",)),
        ("groups", {"groups": None}, ()),
        ("cognito:groups", {"cognito:groups": ["x"]}, ("x",)),
        ("realm_access.roles", {"realm_access": "flat"}, ()),
    ],
)
def test_groups_from_a_configurable_claim_path(
    rsa_key: Key, path: str, token_claims: dict[str, Any], groups: tuple[str, ...]
) -> None:
    v = validator(rsa_key, groups_claim=path)
    assert v.validate(rsa_key.token({**claims(groups=None), **token_claims})).groups == groups


def test_alg_none_and_hmac_are_refused_before_any_key_is_used(rsa_key: Key) -> None:
    v = validator(rsa_key)
    body = enc(json.dumps(claims()).encode())
    unsigned = f"{enc(json.dumps({'alg': 'none', 'kid': rsa_key.kid}).encode())}.{body}."
    assert refused(v, unsigned).reason == "alg_not_allowed"
    unsigned_caps = f"{enc(json.dumps({'alg': 'NONE'}).encode())}.{body}."
    assert refused(v, unsigned_caps).reason == "alg_not_allowed"
    # HS256 keyed with the RSA public key, in every encoding an attacker might guess.
    public = rsa_key.private.public_key()
    secrets = [
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(rsa_key.jwk()).encode(),
    ]
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        for secret in secrets:
            signing_input = f"{enc(json.dumps({'alg': alg, 'kid': rsa_key.kid}).encode())}.{body}"
            forged = f"{signing_input}.{enc(hmac.new(secret, signing_input.encode(), digest).digest())}"
            error = refused(v, forged)
            assert error.reason == "alg_not_allowed" and "symmetric" in str(error)


def test_hmac_can_never_be_configured() -> None:
    with pytest.raises(ValueError, match="HMAC"):
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="unsupported"):
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, algorithms=["none"])


def test_algorithm_outside_the_configured_list(rsa_key: Key) -> None:
    ec_key = make_key("ES256", "ec-1")
    v = validator(rsa_key, ec_key, algorithms=["RS256"])
    assert refused(v, ec_key.token(claims())).reason == "alg_not_allowed"


def test_key_type_must_fit_the_algorithm(rsa_key: Key) -> None:
    # An RSA signature presented as ES256 under the RSA key's kid: the key cannot verify ES256.
    ec_key = make_key("ES256")
    v = validator(rsa_key, ec_key)
    token = rsa_key.token(claims(), header={"alg": "ES256"})
    assert refused(v, token).reason == "alg_not_allowed"
    # A JWK pinned to RS256 cannot verify PS256 even though it is an RSA key.
    pinned = dict(rsa_key.jwk(), alg="RS256")
    pv = TokenValidator(issuer=ISSUER, audience=AUDIENCE, now=lambda: NOW)
    pv.set_jwks({"keys": [pinned]}, NOW)
    ps = Key("PS256", rsa_key.kid, rsa_key.private)
    assert refused(pv, ps.token(claims())).reason == "alg_not_allowed"


def test_unknown_kid_and_wrong_key(rsa_key: Key) -> None:
    other = make_key("RS256", "rsa-2")
    v = validator(rsa_key)
    assert refused(v, other.token(claims())).reason == "unknown_kid"
    # The attacker reuses our kid but signs with their key.
    impostor = Key("RS256", rsa_key.kid, other.private)
    assert refused(v, impostor.token(claims())).reason == "bad_signature"


def test_token_without_kid_tries_fitting_keys_only(rsa_key: Key) -> None:
    v = validator(make_key("ES256"), rsa_key)
    stripped_head = {"alg": "RS256", "typ": "JWT"}
    signing_input = f"{enc(json.dumps(stripped_head).encode())}.{enc(json.dumps(claims()).encode())}"
    kidless = f"{signing_input}.{enc(rsa_key.sign(signing_input.encode()))}"
    assert v.validate(kidless).sub == "alice"
    forged_input = f"{enc(json.dumps(stripped_head).encode())}.{enc(json.dumps(claims(sub='root')).encode())}"
    forged = f"{forged_input}.{enc(make_key('RS256').sign(forged_input.encode()))}"
    assert refused(v, forged).reason == "bad_signature"
    assert refused(v, make_key("RS256").token(claims(), header={"kid": 12})).reason == "malformed"


def test_tampered_payload_fails_signature(rsa_key: Key) -> None:
    token = rsa_key.token(claims())
    head, _, sig = token.split(".")
    promoted = enc(json.dumps(claims(groups=["admins"])).encode())
    assert refused(validator(rsa_key), f"{head}.{promoted}.{sig}").reason == "bad_signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "!!!.e30.",
        "e30.e30.x=",
        "W10.e30.",
        "e30.W10.",
        "bm90IGpzb24.e30.",
        "e30." + "A" * 20000 + ".x",
    ],
)
def test_malformed_tokens(rsa_key: Key, token: str) -> None:
    assert refused(validator(rsa_key), token).reason == "malformed"


def test_typ_and_crit_headers(rsa_key: Key) -> None:
    v = validator(rsa_key)
    assert v.validate(rsa_key.token(claims(), header={"typ": "at+jwt"})).sub == "alice"
    assert v.validate(rsa_key.token(claims(), header={"typ": "application/jwt"})).sub == "alice"
    assert refused(v, rsa_key.token(claims(), header={"typ": "JWE"})).reason == "bad_type"
    assert (
        refused(v, rsa_key.token(claims(), header={"crit": ["exp"], "exp": 1})).reason == "unsupported_crit"
    )


def test_jwks_entries_that_cannot_be_used_are_skipped_not_fatal(rsa_key: Key) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_jwk = Key("RS256", "weak", weak).jwk()
    v = TokenValidator(issuer=ISSUER, audience=AUDIENCE, now=lambda: NOW)
    v.set_jwks(
        {
            "keys": [
                weak_jwk,
                {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                dict(rsa_key.jwk(), use="enc", kid="enc-key"),
                {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": uint(1, 32), "y": uint(1, 32)},
                "garbage",
                rsa_key.jwk(),
                dict(rsa_key.jwk()),  # duplicate kid
            ]
        },
        NOW,
    )
    status = v.status()
    assert status.key_ids == ("rsa-1",)
    assert len(status.skipped) == 6
    assert any("below the 2048-bit minimum" in s for s in status.skipped)
    assert any("unsupported key type 'oct'" in s for s in status.skipped)
    assert v.validate(rsa_key.token(claims())).sub == "alice"
    assert refused(v, Key("RS256", "weak", weak).token(claims())).reason == "unknown_kid"
    with pytest.raises(ValueError, match="no 'keys' list"):
        v.set_jwks({"keys": "nope"}, NOW)
    assert v.status().key_ids == ("rsa-1",)  # a broken document keeps the old keys


def test_refresh_schedule_and_unknown_kid_rate_limit(rsa_key: Key) -> None:
    v = TokenValidator(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_refresh_interval_s=300,
        unknown_kid_refetch_interval_s=30,
        now=lambda: NOW,
    )
    assert v.needs_refresh(NOW)  # nothing loaded yet
    error = refused(v, rsa_key.token(claims()))
    assert error.reason == "unknown_kid" and "no signing keys loaded" in str(error)
    v.set_jwks({"keys": [rsa_key.jwk()]}, NOW)
    assert not v.needs_refresh(NOW + 299)
    assert v.needs_refresh(NOW + 300)
    assert v.may_refetch_for_unknown_kid(NOW)
    assert not v.may_refetch_for_unknown_kid(NOW + 29.9)
    assert v.may_refetch_for_unknown_kid(NOW + 30)
    assert not v.may_refetch_for_unknown_kid(NOW + 31)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenValidator(issuer="", audience=AUDIENCE)
    with pytest.raises(ValueError):
        TokenValidator(issuer=ISSUER, audience=[])
    with pytest.raises(ValueError):
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, groups_claim="a..b")


def test_split_compact_and_jwk_errors() -> None:
    jws = split_compact("e30.eyJhIjoxfQ.")
    assert jws.header == {} and jws.claims == {"a": 1} and jws.signature == b""
    with pytest.raises(JwsFormatError):
        b64url_decode("a")  # impossible length
    with pytest.raises(JwkError, match="unsupported EC curve"):
        key_from_jwk({"kty": "EC", "crv": "secp256k1", "x": "", "y": ""})
    with pytest.raises(JwkError, match="missing"):
        key_from_jwk({"kty": "RSA", "e": "AQAB"})
