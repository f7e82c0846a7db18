"""Token validation for a worker: the sans-IO validator plus the JWKS fetches it needs (I/O lives here).

Keys are fetched at start and every `jwks_refresh_interval`; a token naming an unknown `kid` triggers at most
one refetch per `unknown_kid_refetch_interval` (rate-limited across all sessions of the worker), then is
validated once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.config import OidcConfig
from gateway.enforcement.identity import Principal, TokenError, TokenValidator
from gateway.worker.jwks import JwksClient, JwksFetchError

log = logging.getLogger("streamgate.identity")


class IdentityService:
    def __init__(self, oidc: OidcConfig, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.validator = TokenValidator(
            issuer=oidc.issuer, audience=oidc.audience, groups_claim=oidc.groups_claim,
            algorithms=oidc.algorithms, clock_skew_s=oidc.clock_skew, email_claim=oidc.email_claim,
            subject_claim=oidc.subject_claim, jwks_refresh_interval_s=oidc.jwks_refresh_interval,
            unknown_kid_refetch_interval_s=oidc.unknown_kid_refetch_interval, now=clock)
        self.client = JwksClient(oidc.issuer, ca_file=oidc.ca_file)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        async with self._lock:
            try:
                jwks = await self.client.fetch_jwks()
            except JwksFetchError as exc:
                log.error("cannot fetch the identity provider's keys: %s", exc)
                return False
            self.validator.set_jwks(jwks, self.clock())
            status = self.validator.status()
            log.info("identity provider keys loaded (%d keys)%s", len(status.key_ids),
                     f"; skipped: {'; '.join(status.skipped)}" if status.skipped else "")
            return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._refresh_periodically())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _refresh_periodically(self) -> None:
        delay = 0.5
        while True:
            if self.validator.needs_refresh(self.clock()):
                ok = await self.refresh()
                delay = 1.0 if ok else min(delay * 2, 30.0)
            else:
                delay = 1.0
            await asyncio.sleep(delay)

    async def validate(self, token: str) -> Principal | TokenError:
        try:
            return self.validator.validate(token)
        except TokenError as exc:
            if exc.reason != "unknown_kid" or not self.validator.may_refetch_for_unknown_kid(self.clock()):
                return exc
        if not await self.refresh():
            return TokenError("unknown_kid", "the token's signing key is unknown and the identity provider's "
                                             "keys could not be fetched")
        try:
            return self.validator.validate(token)
        except TokenError as exc:
            return exc
