"""Who is asking: OIDC access-token validation into a `Principal` (sans-IO).

`TokenValidator` holds the issuer's JWKS (handed to it by `gateway/worker/jwks.py`, which does the HTTP) and
turns a bearer token into a `Principal` or a `TokenError` with a stable `reason` code. The rules it keeps:

* The signature is checked before any claim is believed, with a key chosen by `kid` whose type fits the
  algorithm; `none` and every HMAC algorithm are refused outright (see `gateway.enforcement.jwt`).
* `iss` must equal the configured issuer; `aud` (string or list) must contain the configured audience;
  `exp` is required; `exp`, `nbf` and `iat` are compared with the configured clock skew.
* The raw token is never stored, logged or put into an error message: a `Principal` keeps only a digest of
  the claims, so audit records can correlate sessions without holding a replayable credential.
* The validator knows when its keys are stale (`needs_refresh`) and rate-limits refetches caused by unknown
  key ids (`may_refetch_for_unknown_kid`), so a client spraying random `kid`s cannot make the gateway hammer
  its identity provider.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.enforcement.jwt import (
    HMAC_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    JwkError,
    JwsFormatError,
    VerificationKey,
    key_from_jwk,
    split_compact,
    verify_signature,
)

DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)
# Token `typ` values we accept when present (RFC 9068 access tokens use at+jwt; most IdPs send JWT).
_ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated identity. `claims_digest` is SHA-256 over the token's payload bytes, never the token."""

    sub: str
    email: str | None
    groups: tuple[str, ...]
    expires_at: float
    issuer: str
    claims_digest: str

    def __str__(self) -> str:
        return f"{self.sub} (groups: {', '.join(self.groups) or 'none'})"


class TokenError(Exception):
    """A token was refused. `reason` is a stable short code for audit events and metrics; str() explains.

    Reasons: malformed, alg_not_allowed, unsupported_crit, bad_type, unknown_kid, bad_signature, bad_issuer,
    bad_audience, expired, not_yet_valid, issued_in_future, missing_claim, bad_claim; and jwks_unavailable
    (raised by gateway/worker/jwks.py when the issuer's keys could never be fetched).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class JwksStatus:
    """What the validator currently trusts (for health checks and logs; no key material)."""

    key_ids: tuple[str | None, ...]
    skipped: tuple[str, ...]  # why some JWKS entries were ignored
    fetched_at: float | None


class TokenValidator:
    """Validates OIDC JWT access tokens against one issuer, audience and JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        groups_claim: str = "groups",
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        clock_skew_s: float = 30.0,
        email_claim: str = "email",
        subject_claim: str = "sub",
        jwks_refresh_interval_s: float = 300.0,
        unknown_kid_refetch_interval_s: float = 30.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not issuer:
            raise ValueError("identity.oidc.issuer must be set")
        self.issuer = issuer
        self.audiences: frozenset[str] = frozenset([audience] if isinstance(audience, str) else audience)
        if not self.audiences or not all(self.audiences):
            raise ValueError("identity.oidc.audience must name at least one non-empty audience")
        self.algorithms = frozenset(algorithms)
        hmac = self.algorithms & HMAC_ALGORITHMS
        if hmac:
            raise ValueError(f"HMAC algorithms are never accepted for OIDC tokens: {', '.join(sorted(hmac))}")
        unknown = self.algorithms - SUPPORTED_ALGORITHMS
        if unknown:
            raise ValueError(
                f"unsupported token algorithms {', '.join(sorted(unknown))}; "
                f"supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
            )
        if not self.algorithms:
            raise ValueError("at least one token algorithm must be allowed")
        if not groups_claim or any(not part for part in groups_claim.split(".")):
            raise ValueError(f"invalid groups claim path {groups_claim!r}")
        self.groups_path = tuple(groups_claim.split("."))
        self.groups_claim = groups_claim
        self.email_claim = email_claim
        self.subject_claim = subject_claim
        self.clock_skew_s = float(clock_skew_s)
        self.jwks_refresh_interval_s = float(jwks_refresh_interval_s)
        self.unknown_kid_refetch_interval_s = float(unknown_kid_refetch_interval_s)
        self._now = now
        self._keys_by_kid: dict[str, VerificationKey] = {}
        self._keys_without_kid: list[VerificationKey] = []
        self._skipped: tuple[str, ...] = ()
        self._fetched_at: float | None = None
        self._last_unknown_kid_refetch: float = -math.inf

    # ---- keys ------------------------------------------------------------------------------------------

    def set_jwks(self, jwks: dict[str, Any], fetched_at: float) -> None:
        """Replace the trusted keys with those in a JWKS document. Unusable entries are skipped, not fatal.

        Raises ValueError if the document has no `keys` list at all (the old keys are kept then).
        """
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document has no 'keys' list")  # noqa: TRY004 - a bad document, not a bad call
        by_kid: dict[str, VerificationKey] = {}
        without_kid: list[VerificationKey] = []
        skipped: list[str] = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                skipped.append(f"keys[{position}]: not an object")
                continue
            try:
                key = key_from_jwk(entry)
            except (JwkError, JwsFormatError) as exc:
                skipped.append(f"keys[{position}] (kid {entry.get('kid')!r}): {exc}")
                continue
            if key.kid is None:
                without_kid.append(key)
            elif key.kid in by_kid:
                skipped.append(f"keys[{position}]: duplicate kid {key.kid!r}")
            else:
                by_kid[key.kid] = key
        self._keys_by_kid = by_kid
        self._keys_without_kid = without_kid
        self._skipped = tuple(skipped)
        self._fetched_at = fetched_at

    def status(self) -> JwksStatus:
        kids: list[str | None] = list(self._keys_by_kid)
        kids.extend(None for _ in self._keys_without_kid)
        return JwksStatus(tuple(kids), self._skipped, self._fetched_at)

    def needs_refresh(self, now: float) -> bool:
        """True when no JWKS was ever loaded or the loaded one is older than the refresh interval."""
        return self._fetched_at is None or now - self._fetched_at >= self.jwks_refresh_interval_s

    def may_refetch_for_unknown_kid(self, now: float) -> bool:
        """Claim the right to refetch the JWKS because a token named an unknown `kid`.

        Returns True at most once per `unknown_kid_refetch_interval_s` and records the claim, so concurrent
        sessions presenting unknown kids trigger one fetch, not one each.
        """
        if now - self._last_unknown_kid_refetch < self.unknown_kid_refetch_interval_s:
            return False
        self._last_unknown_kid_refetch = now
        return True

    # ---- validation ------------------------------------------------------------------------------------

    def validate(self, token: str) -> Principal:
        """The principal the token proves, or TokenError. Never echoes the token itself."""
        try:
            jws = split_compact(token.strip())
        except JwsFormatError as exc:
            raise TokenError("malformed", f"token is not a valid JWT: {exc}") from None

        header = jws.header
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenError("malformed", "token header has no 'alg'")
        if alg.lower() == "none":
            raise TokenError("alg_not_allowed", "unsigned tokens (alg 'none') are refused")
        if alg in HMAC_ALGORITHMS or alg.upper().startswith("HS"):
            raise TokenError(
                "alg_not_allowed",
                f"symmetric algorithm {alg!r} is refused; OIDC tokens must be signed "
                "with the issuer's public key",
            )
        if alg not in self.algorithms:
            raise TokenError(
                "alg_not_allowed",
                f"algorithm {alg!r} is not in the allow-list ({', '.join(sorted(self.algorithms))})",
            )
        if "crit" in header:
            # RFC 7515 section 4.1.11: we understand no extensions, so any critical one makes the token invalid.
            raise TokenError(
                "unsupported_crit", "token header lists critical extensions this gateway does not support"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES):
            raise TokenError("bad_type", f"token type {typ!r} is not a JWT access token")

        self._verify_signature(jws.header, alg, jws.signing_input, jws.signature)
        return self._principal_from_claims(jws.claims, jws.payload_bytes)

    def _verify_signature(
        self, header: dict[str, Any], alg: str, signing_input: bytes, signature: bytes
    ) -> None:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed", "token header 'kid' is not a string")
        if kid is not None:
            key = self._keys_by_kid.get(kid)
            if key is None:
                if self._fetched_at is None:
                    raise TokenError("unknown_kid", f"no signing keys loaded yet from {self.issuer}")
                raise TokenError("unknown_kid", f"signing key id {kid!r} is not in the issuer's JWKS")
            if not key.fits(alg):
                raise TokenError(
                    "alg_not_allowed", f"key {kid!r} ({key.kty}) cannot be used with algorithm {alg}"
                )
            if not verify_signature(alg, key, signing_input, signature):
                raise TokenError("bad_signature", "token signature does not verify")
            return
        # No kid: only keys that fit the algorithm are tried (some IdPs publish a single kid-less key).
        candidates = [k for k in self._keys_without_kid if k.fits(alg)]
        if not candidates:
            candidates = [k for k in self._keys_by_kid.values() if k.fits(alg)]
        if not candidates:
            raise TokenError("unknown_kid", f"token has no 'kid' and the JWKS has no {alg} key")
        if not any(verify_signature(alg, k, signing_input, signature) for k in candidates):
            raise TokenError("bad_signature", "token signature does not verify")

    def _principal_from_claims(self, claims: dict[str, Any], payload_bytes: bytes) -> Principal:
        now = self._now()
        skew = self.clock_skew_s

        iss = claims.get("iss")
        if iss != self.issuer:
            raise TokenError(
                "bad_issuer", f"token issuer {_short(iss)} is not the configured issuer {self.issuer!r}"
            )

        aud = claims.get("aud")
        if isinstance(aud, str):
            audiences = {aud}
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            audiences = set(aud)
        elif aud is None:
            raise TokenError("bad_audience", "token has no 'aud' claim")
        else:
            raise TokenError("bad_audience", "token 'aud' claim is neither a string nor a list of strings")
        if not audiences & self.audiences:
            raise TokenError(
                "bad_audience",
                f"token audience {_short(sorted(audiences))} does not include {' or '.join(sorted(self.audiences))!r}",
            )

        exp = _numeric_date(claims, "exp", required=True)
        assert exp is not None
        if now > exp + skew:
            raise TokenError(
                "expired", f"token expired {now - exp:.0f}s ago (clock skew allowance {skew:g}s)"
            )
        nbf = _numeric_date(claims, "nbf", required=False)
        if nbf is not None and now + skew < nbf:
            raise TokenError("not_yet_valid", f"token is not valid for another {nbf - now:.0f}s")
        iat = _numeric_date(claims, "iat", required=False)
        if iat is not None and now + skew < iat:
            raise TokenError("issued_in_future", f"token claims to be issued {iat - now:.0f}s in the future")

        sub = claims.get(self.subject_claim)
        if not isinstance(sub, str) or not sub:
            raise TokenError("missing_claim", f"token has no '{self.subject_claim}' (subject) string claim")
        email = claims.get(self.email_claim)
        if email is not None and not isinstance(email, str):
            raise TokenError("bad_claim", f"token claim '{self.email_claim}' is not a string")

        return Principal(
            sub=sub,
            email=email,
            groups=self._groups(claims),
            expires_at=float(exp),
            issuer=self.issuer,
            claims_digest=hashlib.sha256(payload_bytes).hexdigest(),
        )

    def _groups(self, claims: dict[str, Any]) -> tuple[str, ...]:
        value: Any = claims
        for part in self.groups_path:
            if not isinstance(value, dict) or part not in value:
                return ()  # a principal without the claim simply has no groups
            value = value[part]
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(g, str) for g in value):
            return tuple(dict.fromkeys(value))
        raise TokenError(
            "bad_claim", f"groups claim '{self.groups_claim}' is neither a string nor a list of strings"
        )


def _numeric_date(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenError("missing_claim", f"token has no '{name}' claim")
        return None
    # bool is an int subclass in Python; `"exp": true` is not a date.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError("bad_claim", f"token claim '{name}' is not a NumericDate")
    return float(value)


def _short(value: Any, limit: int = 80) -> str:
    """repr() of an attacker-controlled claim value, cut so error messages stay bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
