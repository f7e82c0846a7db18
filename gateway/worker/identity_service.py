"""Token validation for a worker: the sans-IO validator plus the JWKS fetches it needs (I/O lives here).

Keys are fetched at start and refreshed when older than `jwks_refresh_interval` (behind a validation, so no
client waits for it); a token naming an unknown `kid` triggers at most one refetch per
`unknown_kid_refetch_interval` across all sessions of the worker (see worker/jwks.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.config import OidcConfig
from gateway.enforcement.identity import Principal, TokenError, TokenValidator
from gateway.worker.jwks import JwksClient, RefreshingTokenValidator


class IdentityService:
    def __init__(self, oidc: OidcConfig, clock: Callable[[], float] = time.time) -> None:
        validator = TokenValidator(
            issuer=oidc.issuer, audience=oidc.audience, groups_claim=oidc.groups_claim,
            algorithms=oidc.algorithms, clock_skew_s=oidc.clock_skew, email_claim=oidc.email_claim,
            subject_claim=oidc.subject_claim, jwks_refresh_interval_s=oidc.jwks_refresh_interval,
            unknown_kid_refetch_interval_s=oidc.unknown_kid_refetch_interval, now=clock)
        self.keys = RefreshingTokenValidator(validator, JwksClient(oidc.issuer, ca_file=oidc.ca_file), clock=clock)

    async def refresh(self) -> bool:
        return await self.keys.refresh()

    async def validate(self, token: str) -> Principal | TokenError:
        try:
            return await self.keys.validate(token)
        except TokenError as exc:
            return exc
