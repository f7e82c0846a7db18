"""Fetch an OIDC issuer's signing keys over HTTP(S) and keep a sans-IO `TokenValidator` supplied with them.

`JwksClient` does OIDC discovery (`{issuer}/.well-known/openid-configuration`) and fetches `jwks_uri` with a
minimal HTTP/1.1 GET on asyncio streams: one connection per request (`Connection: close`), Content-Length,
chunked or read-to-close bodies, a bounded size, a few redirects, and one deadline around the whole exchange.
It owns its socket, so a timeout or error always closes it (no threads, nothing left for the GC), and it
ignores proxy environment variables on purpose: signing keys come from the IdP directly. Every failure is a
`JwksFetchError` naming the URL and what went wrong.

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
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from gateway.enforcement.identity import Principal, TokenError, TokenValidator

log = logging.getLogger(__name__)

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 1 << 20
MAX_HEADER_BYTES = 65536
MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _HttpProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read; the message says what was wrong."""


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
        self._jwks_uri: str | None = None

    async def discover(self) -> dict[str, Any]:
        """The issuer's discovery document, checked to name this issuer and an http(s) jwks_uri."""
        document = await self._get_json(self.discovery_url, "OIDC discovery document")
        if document.get("issuer") != self.issuer:
            raise JwksFetchError(
                self.discovery_url,
                "OIDC discovery document",
                f"it names issuer {document.get('issuer')!r}, expected {self.issuer!r}",
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
            raise JwksFetchError(
                self.discovery_url, "OIDC discovery document", "it has no http(s) 'jwks_uri'"
            )
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
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                status, headers, body = await asyncio.wait_for(self._get(current), timeout=self.timeout_s)
            except TimeoutError:
                raise JwksFetchError(current, what, f"no answer within {self.timeout_s:g}s") from None
            except ConnectionRefusedError:
                raise JwksFetchError(current, what, "connection refused") from None
            except ssl.SSLError as exc:
                raise JwksFetchError(current, what, f"TLS error: {exc}") from None
            except _HttpProtocolError as exc:
                raise JwksFetchError(current, what, str(exc)) from None
            except OSError as exc:
                raise JwksFetchError(current, what, str(exc) or type(exc).__name__) from None
            if status in _REDIRECT_STATUSES and "location" in headers:
                target = urljoin(current, headers["location"])
                if urlsplit(target).scheme not in ("http", "https"):
                    raise JwksFetchError(current, what, f"redirect to a non-http(s) URL {target!r}")
                if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
                    raise JwksFetchError(current, what, "redirect from https down to plain http refused")
                current = target
                continue
            if status != 200:
                raise JwksFetchError(current, what, f"HTTP status {status}")
            try:
                document = json.loads(body)
            except ValueError as exc:
                raise JwksFetchError(current, what, f"the body is not JSON ({exc})") from None
            if not isinstance(document, dict):
                raise JwksFetchError(current, what, "the body is not a JSON object")
            return document
        raise JwksFetchError(url, what, f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        """One GET on its own connection: (status, lower-cased headers, body). Always closes the socket."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=self._ssl_context if secure else None,
            server_hostname=host if secure else None,
            limit=MAX_HEADER_BYTES,
        )
        try:
            host_header = parts.netloc.rsplit("@", 1)[-1]
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\n"
                "User-Agent: streamgate\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            status, headers = await self._read_head(reader)
            body = await self._read_body(reader, headers)
            return status, headers, body
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass  # the peer may already have gone; the socket is closed either way

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise _HttpProtocolError("connection closed before a complete response") from None
        except asyncio.LimitOverrunError:
            raise _HttpProtocolError(f"response headers larger than {MAX_HEADER_BYTES} bytes") from None
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise _HttpProtocolError(f"not an HTTP/1.x response: {lines[0][:60]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _HttpProtocolError(f"malformed header line {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        return int(status_line[1]), headers

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        too_large = _HttpProtocolError(f"the document is larger than {self.max_bytes} bytes")
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = bytearray()
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    try:
                        size = int(size_line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise _HttpProtocolError("malformed chunk size") from None
                    if size == 0:
                        break
                    if len(body) + size > self.max_bytes:
                        raise too_large
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)  # the CRLF after each chunk
                return bytes(body)
            if "content-length" in headers:
                try:
                    length = int(headers["content-length"])
                except ValueError:
                    raise _HttpProtocolError("malformed Content-Length") from None
                if length < 0 or length > self.max_bytes:
                    raise too_large
                return await reader.readexactly(length)
            body_bytes = await reader.read(
                self.max_bytes + 1
            )  # no length: the body ends when the server closes
            while len(body_bytes) <= self.max_bytes:
                more = await reader.read(self.max_bytes + 1 - len(body_bytes))
                if not more:
                    break
                body_bytes += more
            if len(body_bytes) > self.max_bytes:
                raise too_large
            return body_bytes
        except asyncio.IncompleteReadError:
            raise _HttpProtocolError("connection closed in the middle of the body") from None
        except asyncio.LimitOverrunError:
            raise _HttpProtocolError("malformed chunked body") from None


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
            return TokenError(
                "jwks_unavailable", f"signing keys of {self.client.issuer} unavailable: {self.last_error}"
            )
        return exc
