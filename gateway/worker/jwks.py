"""Fetch an OIDC issuer's signing keys over HTTP(S) and keep a sans-IO `TokenValidator` supplied with them.

`JwksClient` does OIDC discovery (`{issuer}/.well-known/openid-configuration`) and fetches `jwks_uri`.
The blocking stdlib HTTP client runs in the loop's default executor with a socket timeout plus an overall
deadline, so the event loop never blocks on the identity provider. Every failure is a `JwksFetchError`
naming the URL and what went wrong.

`RefreshingTokenValidator` is what a session awaits to authenticate a token. The rules it keeps:
* keys are fetched before the first validation and refreshed in the background once they are older than the
  validator's refresh interval (a stale key set keeps serving while the refresh runs);
* a token naming an unknown `kid` triggers at most one refetch per rate-limit interval, shared by every
  session that is waiting on it, then the token is validated once more;
* a failed fetch is retried no sooner than `retry_after_failure_s`, and when no keys were ever loaded the
  session gets a `TokenError("jwks_unavailable")` that says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gateway.enforcement.identity import Principal, TokenError, TokenValidator

log = logging.getLogger(__name__)

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 1 << 20


class JwksFetchError(RuntimeError):
    """Discovery or JWKS retrieval failed; str() names the URL and the cause."""

    def __init__(self, url: str, what: str, detail: str) -> None:
        super().__init__(f"fetching {what} from {url} failed: {detail}")
        self.url = url


class JwksClient:
    """Discovers an issuer's `jwks_uri` and fetches its JWKS. One instance per issuer per worker."""

    def __init__(
        self,
        issuer: str,
        *,
        ca_file: str | None = None,
        timeout_s: float = 5.0,
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        scheme = urlsplit(issuer).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"issuer must be an http(s) URL, got {issuer!r}")
        self.issuer = issuer
        self.discovery_url = issuer.rstrip("/") + DISCOVERY_SUFFIX
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._ssl_context = ssl.create_default_context(cafile=ca_file)
        # Proxies from the environment are deliberately ignored: the gateway talks to its IdP directly, and a
        # stray HTTP_PROXY must not silently route signing keys through a third party.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl_context)
        )
        self._jwks_uri: str | None = None

    async def discover(self) -> dict[str, Any]:
        """The issuer's discovery document, checked to name this issuer and an http(s) jwks_uri."""
        document = await self._get_json(self.discovery_url, "OIDC discovery document")
        if document.get("issuer") != self.issuer:
            raise JwksFetchError(
                self.discovery_url, "OIDC discovery document",
                f"it names issuer {document.get('issuer')!r}, expected {self.issuer!r}",
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
            raise JwksFetchError(self.discovery_url, "OIDC discovery document", "it has no http(s) 'jwks_uri'")
        self._jwks_uri = jwks_uri
        return document

    async def fetch_jwks(self) -> dict[str, Any]:
        """The current JWKS document (discovering jwks_uri on first use or after a failure)."""
        if self._jwks_uri is None:
            await self.discover()
        assert self._jwks_uri is not None
        try:
            jwks = await self._get_json(self._jwks_uri, "JWKS")
        except JwksFetchError:
            self._jwks_uri = None  # the issuer may have moved its keys; discover again next time
            raise
        if not isinstance(jwks.get("keys"), list):
            raise JwksFetchError(self._jwks_uri, "JWKS", "the document has no 'keys' list")
        return jwks

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            status, body = await asyncio.wait_for(
                loop.run_in_executor(None, self._get_blocking, url), timeout=self.timeout_s + 1.0
            )
        except TimeoutError:
            raise JwksFetchError(url, what, f"no answer within {self.timeout_s:g}s") from None
        except urllib.error.HTTPError as exc:
            raise JwksFetchError(url, what, f"HTTP status {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise JwksFetchError(url, what, str(exc.reason)) from None
        except OSError as exc:
            raise JwksFetchError(url, what, str(exc) or type(exc).__name__) from None
        if status != 200:
            raise JwksFetchError(url, what, f"HTTP status {status}")
        if len(body) > self.max_bytes:
            raise JwksFetchError(url, what, f"the document is larger than {self.max_bytes} bytes")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise JwksFetchError(url, what, f"the body is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise JwksFetchError(url, what, "the body is not a JSON object")
        return document

    def _get_blocking(self, url: str) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "streamgate"})
        with self._opener.open(request, timeout=self.timeout_s) as response:
            return int(response.status), response.read(self.max_bytes + 1)


class RefreshingTokenValidator:
    """Async front of a `TokenValidator`: fetches and refreshes its JWKS through a `JwksClient`."""

    def __init__(
        self,
        validator: TokenValidator,
        client: JwksClient,
        *,
        retry_after_failure_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.validator = validator
        self.client = client
        self.retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._inflight: asyncio.Task[bool] | None = None
        self._next_attempt_after = float("-inf")
        self.last_error: str | None = None
        self.fetch_count = 0

    async def validate(self, token: str) -> Principal:
        now = self._clock()
        if self.validator.needs_refresh(now) and now >= self._next_attempt_after:
            if self.validator.status().fetched_at is None:
                await self.refresh()  # nothing to validate with yet: wait for the keys
            else:
                self._start_refresh()  # stale but usable: refresh behind this validation
        try:
            return self.validator.validate(token)
        except TokenError as exc:
            if exc.reason != "unknown_kid":
                raise
            if self._inflight is not None:
                await asyncio.shield(self._inflight)
            elif self._clock() >= self._next_attempt_after and self.validator.may_refetch_for_unknown_kid(
                self._clock()
            ):
                await self.refresh()
            else:
                raise self._explain_unavailable(exc) from None
            try:
                return self.validator.validate(token)
            except TokenError as again:
                raise self._explain_unavailable(again) from None

    @property
    def pending_refresh(self) -> asyncio.Task[bool] | None:
        """The JWKS fetch in flight, if any (background refreshes can be awaited through it)."""
        return self._inflight

    async def refresh(self) -> bool:
        """Fetch the JWKS now (joining a fetch already in flight); True if the validator got new keys."""
        return await asyncio.shield(self._start_refresh())

    def _start_refresh(self) -> asyncio.Task[bool]:
        if self._inflight is None:
            task = asyncio.get_running_loop().create_task(self._fetch_into_validator())
            self._inflight = task
            task.add_done_callback(self._clear_inflight)
        return self._inflight

    def _clear_inflight(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _fetch_into_validator(self) -> bool:
        self.fetch_count += 1
        try:
            jwks = await self.client.fetch_jwks()
            self.validator.set_jwks(jwks, self._clock())
        except (JwksFetchError, ValueError) as exc:
            self.last_error = str(exc)
            self._next_attempt_after = self._clock() + self.retry_after_failure_s
            log.warning("JWKS refresh for %s failed: %s", self.client.issuer, exc)
            return False
        self.last_error = None
        status = self.validator.status()
        for reason in status.skipped:
            log.warning("JWKS of %s: ignored %s", self.client.issuer, reason)
        return True

    def _explain_unavailable(self, exc: TokenError) -> TokenError:
        """Turn 'unknown kid' into 'keys unavailable' when the real cause is an unreachable IdP."""
        if exc.reason == "unknown_kid" and self.validator.status().fetched_at is None and self.last_error:
            return TokenError("jwks_unavailable", f"signing keys of {self.client.issuer} unavailable: {self.last_error}")
        return exc
