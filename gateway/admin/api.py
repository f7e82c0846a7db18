"""The admin process's routes: the approvals JSON API, health checks and the reviewer web page.

    GET  /                                  reviewer page (HTML; its script and style under /static/)
    GET  /healthz                           200 while the process serves
    GET  /readyz                            200: store answers, signing keys loaded, audit up
    GET  /api/whoami                        the caller's subject, email and groups
    GET  /api/approvals?status=pending      requests the caller may see (status: comma-separated, or "all")
    GET  /api/approvals/{id}
    POST /api/approvals/{id}/approve        body {"reason": "..."}; likewise /deny and /revoke

Rules kept here:
* Every `/api/` route needs `Authorization: Bearer <OIDC access token>` of the configured issuer: 401 without
  one or with an invalid one (the answer names the refusal reason code, never echoes the token), 503 when the
  issuer's keys cannot be fetched.
* A caller sees the requests they may review and their own (`approvals.may_view`); a request they may not see
  answers 403 like a decision they may not make (ids are random UUIDs, so 403 leaks nothing guessable).
* Decision refusals map from `ApprovalRefused.code`: not_reviewer/self_approval 403, reason_required 400,
  conflict 409, not_found 404.
* Every decision is audited before the API answers. With an audit sink configured and unable to take events
  (a `block` sink down), decisions are refused with 503: nothing is decided that the trail would not show.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Literal, Protocol

from gateway.admin.http import HttpError, Request, Response
from gateway.admin.views import record_json
from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRecord, ApprovalRefused
from gateway.enforcement.audit import AuditEvent
from gateway.enforcement.identity import Principal, TokenError
from gateway.store.approvals_base import ApprovalStore, StoreError

log = logging.getLogger("streamgate.admin")

STATIC_DIR: Final = Path(__file__).with_name("static")
_STATIC_FILES: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
# The page loads only its own script and style and talks only to this origin.
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DECISION_ROUTE = re.compile(r"^/api/approvals/([0-9a-fA-F-]{1,64})/(approve|deny|revoke)$")
_RECORD_ROUTE = re.compile(r"^/api/approvals/([0-9a-fA-F-]{1,64})$")
MAX_LIST_LIMIT: Final = 500


class AuditOutlet(Protocol):
    """What the API needs of `gateway.audit.dispatcher.AuditDispatcher`."""

    def available(self) -> bool: ...

    def emit(self, event: AuditEvent) -> bool: ...

    def record(self, event: AuditEvent) -> None: ...


Authenticator = Callable[[str], Awaitable[Principal]]


class AdminApi:
    def __init__(
        self,
        store: ApprovalStore,
        authenticate: Authenticator | None,
        *,
        clock: Callable[[], float],
        audit: AuditOutlet | None = None,
        readiness: Callable[[], list[str]] = list,
        static_dir: Path = STATIC_DIR,
        audit_worker: str = "admin",
    ) -> None:
        """`authenticate` validates a bearer token (None: no identity configured, every /api/ call is 503);
        `readiness` returns what keeps the process from being ready (empty: ready)."""
        self.store = store
        self.authenticate = authenticate
        self.clock = clock
        self.audit = audit
        self.readiness = readiness
        self.audit_worker = audit_worker
        self._static: dict[str, tuple[bytes, str]] = {}
        for route, (name, content_type) in _STATIC_FILES.items():
            self._static[route] = ((static_dir / name).read_bytes(), content_type)

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HttpError as exc:
            return Response.error(exc.status, str(exc), exc.headers)
        except StoreError as exc:
            log.error("approval store error: %s", exc)
            return Response.error(503, "the approval store is unavailable")

    async def _route(self, request: Request) -> Response:
        path = request.path
        if path in _STATIC_FILES:
            _allow(request, "GET", "HEAD")
            body, content_type = self._static[path]
            headers = [("Content-Security-Policy", PAGE_CSP)] if path == "/" else []
            return Response(200, body, content_type, headers)
        if path == "/healthz":
            _allow(request, "GET", "HEAD")
            return Response.json(200, {"status": "ok"})
        if path == "/readyz":
            _allow(request, "GET", "HEAD")
            problems = self.readiness()
            if problems:
                return Response.json(503, {"status": "not ready", "problems": problems})
            return Response.json(200, {"status": "ready"})
        if not path.startswith("/api/"):
            raise HttpError(404, f"no such page: {path[:100]}")

        principal = await self._principal(request)
        if path == "/api/whoami":
            _allow(request, "GET")
            return Response.json(
                200, {"sub": principal.sub, "email": principal.email, "groups": list(principal.groups)}
            )
        if path == "/api/approvals":
            _allow(request, "GET")
            return self._list(request, principal)
        match = _RECORD_ROUTE.match(path)
        if match:
            _allow(request, "GET")
            record = self._visible_record(match.group(1), principal)
            return Response.json(200, record_json(record, self.clock(), principal))
        match = _DECISION_ROUTE.match(path)
        if match:
            _allow(request, "POST")
            verb: Literal["approve", "deny", "revoke"] = match.group(2)  # type: ignore[assignment]
            return self._decide(match.group(1), verb, request, principal)
        raise HttpError(404, f"no such API route: {path[:100]}")

    # -- authentication --------------------------------------------------------------------------------

    async def _principal(self, request: Request) -> Principal:
        if self.authenticate is None:
            raise HttpError(503, "no identity provider is configured (identity.oidc); the API is disabled")
        challenge = 'Bearer realm="streamgate-admin"'
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(
                401,
                "a bearer token is required (Authorization: Bearer <token>)",
                [("WWW-Authenticate", challenge)],
            )
        try:
            return await self.authenticate(token.strip())
        except TokenError as exc:
            if exc.reason == "jwks_unavailable":
                log.warning("cannot validate a reviewer token: %s", exc)
                raise HttpError(503, "the identity provider's signing keys are unavailable") from None
            # The reason code is safe to return; the message may quote claims, so it stays in our log only.
            log.info("admin API refused a token: %s (%s)", exc.reason, exc)
            raise HttpError(
                401,
                f"invalid token ({exc.reason})",
                [("WWW-Authenticate", f'{challenge}, error="invalid_token"')],
            ) from None

    # -- approvals -------------------------------------------------------------------------------------

    def _list(self, request: Request, principal: Principal) -> Response:
        status_param = request.query.get("status", ["pending"])[-1]
        statuses: list[str] | None = None
        if status_param not in ("all", ""):
            statuses = [s.strip() for s in status_param.split(",") if s.strip()]
            unknown = [s for s in statuses if s not in approvals.STATUSES]
            if unknown:
                raise HttpError(
                    400,
                    f"unknown status {unknown[0][:40]!r}; use {', '.join(approvals.STATUSES)} "
                    "or all (comma-separated for several)",
                )
        limit_param = request.query.get("limit", ["100"])[-1]
        if not limit_param.isdigit() or not 1 <= int(limit_param) <= MAX_LIST_LIMIT:
            raise HttpError(400, f"limit must be a number from 1 to {MAX_LIST_LIMIT}")
        limit = int(limit_param)
        now = self.clock()
        # Filter after reading (visibility depends on groups, which the store does not index); read generously
        # so a reviewer of a few requests among many still sees a full page.
        records = approvals.visible(self.store.list(statuses, limit * 10), principal)[:limit]
        return Response.json(200, {"approvals": [record_json(r, now, principal) for r in records]})

    def _visible_record(self, request_id: str, principal: Principal) -> ApprovalRecord:
        record = self.store.get(request_id)
        if record is None:
            raise HttpError(404, f"no approval request {request_id}")
        if not approvals.may_view(record, principal):
            raise HttpError(403, f"{principal.sub} is neither a reviewer nor the requester of {request_id}")
        return record

    def _decide(
        self,
        request_id: str,
        verb: Literal["approve", "deny", "revoke"],
        request: Request,
        principal: Principal,
    ) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, 'the body must be a JSON object like {"reason": "..."}')
        if self.audit is not None and not self.audit.available():
            raise HttpError(503, "the audit trail cannot record decisions right now; try again shortly")
        now = self.clock()
        method = {"approve": self.store.approve, "deny": self.store.deny, "revoke": self.store.revoke}[verb]
        try:
            record = method(request_id, principal, body.get("reason"), now)  # type: ignore[arg-type]
        except ApprovalRefused as exc:
            return Response.error(exc.http_status, str(exc), code=exc.code)
        self._audit(_AUDIT_KIND[verb], record)
        log.info("approval request %s %s by %s: %s", record.id, _PAST[verb], principal.sub, record.describe())
        return Response.json(200, record_json(record, now, principal))

    def _audit(self, kind: str, record: ApprovalRecord) -> None:
        if self.audit is None:
            return
        event = approvals.approval_event(kind, record, worker=self.audit_worker)
        if not self.audit.emit(event):
            self.audit.record(
                event
            )  # the decision is made; make sure the trail gets it when the sink is back

    def audit_expired(self, records: list[ApprovalRecord]) -> None:
        """Audit the expiries the sweeper applied."""
        for record in records:
            self._audit(approvals.KIND_EXPIRED, record)


_AUDIT_KIND: Final = {
    "approve": approvals.KIND_GRANTED,
    "deny": approvals.KIND_DENIED,
    "revoke": approvals.KIND_REVOKED,
}
_PAST: Final = {"approve": "approved", "deny": "denied", "revoke": "revoked"}


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise HttpError(405, f"{request.method} is not allowed here", [("Allow", ", ".join(methods))])
