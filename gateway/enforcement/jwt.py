"""JWS compact serialization and public-key signature verification for OIDC access tokens (sans-IO).

The rule this module keeps: a signature is only ever checked with an asymmetric public key whose type and
curve fit the token's `alg` (RFC 7518 section 3). HMAC algorithms and `none` are not implemented at all, so
the classic "verify an HS256 token with the RSA public key as the HMAC secret" forgery has no code path to
succeed through. Parsing is strict: wrong base64url alphabet, padding, non-object JSON or oversized tokens
are malformed, never "best effort".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Every algorithm this module can verify. Anything else (none, HS*, RSA1_5 ...) is refused by name.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGORITHMS: frozenset[str] = frozenset({"HS256", "HS384", "HS512"})
MAX_TOKEN_BYTES = 16384  # larger than any sane access token; bounds the work an unauthenticated client causes
MIN_RSA_BITS = 2048  # RFC 7518 section 3.3

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_CURVE_FOR_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class JwsFormatError(ValueError):
    """The token is not a well-formed JWS compact serialization."""


class JwkError(ValueError):
    """A JWK cannot be used as a verification key; the message says why (never contains key material)."""


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 section 2); anything outside the alphabet is an error."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise JwsFormatError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwsFormatError("invalid base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class CompactJws:
    """The three parts of a compact JWS, decoded; `signing_input` is what the signature covers."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    payload_bytes: bytes


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise JwsFormatError(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise JwsFormatError(f"{what} is not a JSON object")
    return value


def split_compact(token: str) -> CompactJws:
    """Split and decode `header.payload.signature`; JWE (five parts) and JSON serialization are refused."""
    if len(token) > MAX_TOKEN_BYTES:
        raise JwsFormatError(f"token longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsFormatError(f"expected 3 dot-separated parts, got {len(parts)}")
    header_segment, payload_segment, signature_segment = parts
    header = _json_object(b64url_decode(header_segment), "header")
    payload_bytes = b64url_decode(payload_segment)
    claims = _json_object(payload_bytes, "payload")
    signature = b64url_decode(signature_segment)
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return CompactJws(header, claims, signing_input, signature, payload_bytes)


# --------------------------------------------------------------------------------------------------------
# JWK -> verification key
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key from a JWKS, with the metadata that restricts what it may verify."""

    kid: str | None
    kty: str
    alg: str | None  # the JWK's own `alg`, if it pins one
    curve: str | None
    key: PublicKey

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a token signed with `alg` (type, curve and the JWK's own pin)."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg.startswith(("RS", "PS")):
            return self.kty == "RSA"
        if alg in _EC_CURVE_FOR_ALG:
            return self.kty == "EC" and self.curve == _EC_CURVE_FOR_ALG[alg]
        if alg == "EdDSA":
            return self.kty == "OKP"
        return False


def _b64url_uint(jwk: dict[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise JwkError(f"missing or non-string {name!r}")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except JwsFormatError as exc:
        raise JwkError(f"{name!r} is not base64url") from exc


def key_from_jwk(jwk: dict[str, Any]) -> VerificationKey:
    """Build a verification key from one JWKS entry (public parameters only)."""
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JwkError("'kid' is not a string")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise JwkError("'alg' is not a string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise JwkError(f"key use is {use!r}, not 'sig'")
    key_ops = jwk.get("key_ops")
    if isinstance(key_ops, list) and "verify" not in key_ops:
        raise JwkError("key_ops does not include 'verify'")
    try:
        if kty == "RSA":
            public_numbers = rsa.RSAPublicNumbers(_b64url_uint(jwk, "e"), _b64url_uint(jwk, "n"))
            rsa_key = public_numbers.public_key()
            if rsa_key.key_size < MIN_RSA_BITS:
                raise JwkError(f"RSA key of {rsa_key.key_size} bits is below the {MIN_RSA_BITS}-bit minimum")
            return VerificationKey(kid, "RSA", alg, None, rsa_key)
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in _EC_CURVES:
                raise JwkError(f"unsupported EC curve {crv!r}")
            curve_type, size = _EC_CURVES[crv]
            for coordinate in ("x", "y"):
                raw = jwk.get(coordinate)
                if not isinstance(raw, str) or len(b64url_decode(raw)) != size:
                    raise JwkError(f"EC coordinate {coordinate!r} must be {size} bytes")
            ec_numbers = ec.EllipticCurvePublicNumbers(
                _b64url_uint(jwk, "x"), _b64url_uint(jwk, "y"), curve_type()
            )
            return VerificationKey(kid, "EC", alg, crv, ec_numbers.public_key())
        if kty == "OKP":
            crv = jwk.get("crv")
            raw_x = jwk.get("x")
            if not isinstance(raw_x, str):
                raise JwkError("missing OKP 'x'")
            x = b64url_decode(raw_x)
            if crv == "Ed25519":
                return VerificationKey(kid, "OKP", alg, crv, ed25519.Ed25519PublicKey.from_public_bytes(x))
            if crv == "Ed448":
                return VerificationKey(kid, "OKP", alg, crv, ed448.Ed448PublicKey.from_public_bytes(x))
            raise JwkError(f"unsupported OKP curve {crv!r}")
    except JwkError:
        raise
    except (ValueError, JwsFormatError) as exc:
        # cryptography raises ValueError for points off the curve, bad lengths, e < 3 ...
        raise JwkError(f"invalid {kty} key parameters: {exc}") from None
    raise JwkError(f"unsupported key type {kty!r}")


# --------------------------------------------------------------------------------------------------------
# Signature verification
# --------------------------------------------------------------------------------------------------------


def verify_signature(alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid `alg` signature over `signing_input` by `key`.

    Raises ValueError for an algorithm outside SUPPORTED_ALGORITHMS or a key that does not fit it: callers
    must have checked both, and a mismatch here is a programming error, not a bad token.
    """
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} is not supported")
    if not key.fits(alg):
        raise ValueError(f"a {key.kty} key cannot verify {alg}")
    public = key.key
    try:
        if alg.startswith("RS"):
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(signature, signing_input, padding.PKCS1v15(), _HASHES[alg[2:]]())
        elif alg.startswith("PS"):
            assert isinstance(public, rsa.RSAPublicKey)
            digest = _HASHES[alg[2:]]()
            # RFC 7518 section 3.5: the salt is as long as the hash output.
            pss = padding.PSS(mgf=padding.MGF1(_HASHES[alg[2:]]()), salt_length=digest.digest_size)
            public.verify(signature, signing_input, pss, digest)
        elif alg.startswith("ES"):
            assert isinstance(public, ec.EllipticCurvePublicKey)
            size = _EC_CURVES[_EC_CURVE_FOR_ALG[alg]][1]
            # JWS carries ECDSA signatures as fixed-width R || S, not DER (RFC 7518 section 3.4).
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_HASHES[alg[2:]]()))
        else:  # EdDSA
            assert isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
            public.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True
