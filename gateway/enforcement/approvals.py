"""Just-in-time approvals: records, who may decide them, their state machine, their audit events (sans-IO).

A policy rule with an `approval` block makes a principal's first data request on a matching topic create an
approval request and wait for a reviewer. This module is the part of that feature that needs no I/O: the
stores (`gateway/store/`), the admin HTTP process (`gateway/admin/`) and the worker's hold path all apply the
rules kept here, so they cannot disagree.

Rules kept here
---------------
* **State machine** (the whole table is `TRANSITIONS`)::

      pending  --approve-->  approved  --revoke-->  revoked
      pending  --deny----->  denied
      pending  --expire--->  expired     (nobody decided within the pending TTL)
      approved --expire--->  expired     (the grant's TTL ran out)

  Every other transition is refused with `ApprovalRefused("conflict")`; denied, revoked and expired are final.
  A later request of the same principal for the same resource creates a new record.
* **Who may approve or deny:** a principal whose subject or one of whose IdP groups is listed in the
  request's `reviewers` (copied from the rule when the request was created), and never the requester: a
  requester who is also a reviewer still cannot approve or deny their own request (`self_approval`).
* **Who may revoke a grant:** any reviewer of it, and the requester (giving up one's own access is safe).
* **A reason is required** for approve, deny and revoke: it is what the audit trail and the requester see.
* **A grant lasts `grant_ttl_s`** from the moment of approval, not from the moment of the request.
  `is_grant_active` is the only test of whether a grant lets traffic through; it compares with the clock, so
  expiry takes effect at the next request even before a sweeper marks the record `expired`.
* **Justification convention:** a requester explains why in the Kafka (or MQTT) *client id*, after the marker
  `;justification=`, e.g. `client.id=fraud-notebook;justification=INC-4711 refund investigation`. Everything
  after the marker (trimmed, control characters removed, at most `MAX_JUSTIFICATION_CHARS`) is the
  justification. A client id is the one free-text field every Kafka and MQTT client lets its user set without
  asking the identity team for a new token claim.
* **Audit events** for approvals name the requester as `principal`, the reviewer as `approved_by` (for grants)
  or in `details.decided_by`, the rule, the resource topic and the reason (`approval_event`). User-controlled
  text that looks like a token is dropped before it can reach an event (the audit encoder would refuse it).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from gateway.enforcement import audit
from gateway.enforcement.decisions import ApprovalSpec, PolicySubject, Resource, ResourceKind

ApprovalStatus = Literal["pending", "approved", "denied", "expired", "revoked"]
STATUSES: Final[tuple[str, ...]] = get_args(ApprovalStatus)
FINAL_STATUSES: Final = frozenset({"denied", "expired", "revoked"})

Verb = Literal["approve", "deny", "revoke", "expire"]

# (status before, verb) -> status after. Everything that affects the state machine lives in this table.
TRANSITIONS: Final[dict[tuple[str, str], ApprovalStatus]] = {
    ("pending", "approve"): "approved",
    ("pending", "deny"): "denied",
    ("pending", "expire"): "expired",
    ("approved", "revoke"): "revoked",
    ("approved", "expire"): "expired",
}

# Audit event kinds (AuditEvent.kind) of the approval feature.
KIND_REQUESTED: Final = "approval_requested"
KIND_GRANTED: Final = "approval_granted"
KIND_DENIED: Final = "approval_denied"
KIND_REVOKED: Final = "approval_revoked"
KIND_EXPIRED: Final = "approval_expired"

# Store event kinds (what happened to a record), one per state change, and their audit kinds.
EventKind = Literal["requested", "approved", "denied", "revoked", "expired"]
AUDIT_KIND_OF_EVENT: Final[dict[str, str]] = {
    "requested": KIND_REQUESTED,
    "approved": KIND_GRANTED,
    "denied": KIND_DENIED,
    "revoked": KIND_REVOKED,
    "expired": KIND_EXPIRED,
}
_EVENT_OF_VERB: Final[dict[str, EventKind]] = {
    "approve": "approved",
    "deny": "denied",
    "revoke": "revoked",
    "expire": "expired",
}

JUSTIFICATION_MARKER: Final = ";justification="
MAX_JUSTIFICATION_CHARS: Final = 500
MAX_REASON_CHARS: Final = 2000
_TOKEN_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


class ApprovalRefused(Exception):
    """A decision was refused. `code` is stable (HTTP status in brackets, as the admin API maps it):

    not_reviewer [403], self_approval [403], reason_required [400], conflict [409] (the record is not in a
    state that allows the verb), not_found [404] (raised by stores).
    """

    HTTP_STATUS: Final[dict[str, int]] = {
        "not_reviewer": 403,
        "self_approval": 403,
        "reason_required": 400,
        "conflict": 409,
        "not_found": 404,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS.get(self.code, 400)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked for access (from the validated token) and from where."""

    sub: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    client_address: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approval request and, once decided, its outcome. Times are UNIX seconds.

    `reviewers` and `grant_ttl_s` are copied from the rule when the request is created, so a later policy
    change does not change who may decide a request already waiting.
    """

    id: str
    requester_sub: str
    requester_email: str | None
    requester_groups: tuple[str, ...]
    action: str
    resource_kind: ResourceKind
    resource_name: str
    rule: str
    reviewers: tuple[str, ...]
    grant_ttl_s: float
    client_address: str | None
    client_id: str | None
    justification: str | None
    created_at: float
    status: ApprovalStatus = "pending"
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str | None = None
    grant_expires_at: float | None = None

    @property
    def resource(self) -> Resource:
        return Resource(self.resource_kind, self.resource_name)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two requests "the same": (requester sub, action, resource kind, resource name)."""
        return (self.requester_sub, self.action, self.resource_kind, self.resource_name)

    def describe(self) -> str:
        return f"{self.requester_sub} wants {self.action} on {self.resource} (rule {self.rule!r})"


def new_request(
    requester: Requester,
    action: str,
    resource: Resource,
    spec: ApprovalSpec,
    now: float,
    *,
    request_id: str | None = None,
) -> ApprovalRecord:
    """A fresh pending record; the justification is taken from the client id (see module docstring)."""
    return ApprovalRecord(
        id=request_id or str(uuid.uuid4()),
        requester_sub=requester.sub,
        requester_email=requester.email,
        requester_groups=tuple(requester.groups),
        action=action,
        resource_kind=resource.kind,
        resource_name=resource.name,
        rule=spec.rule,
        reviewers=tuple(spec.reviewers),
        grant_ttl_s=float(spec.grant_ttl_s),
        client_address=requester.client_address,
        client_id=requester.client_id,
        justification=parse_justification(requester.client_id),
        created_at=now,
    )


# --------------------------------------------------------------------------------------------------------
# who may decide


def is_reviewer(record: ApprovalRecord, who: PolicySubject) -> bool:
    """True when `who`'s subject or one of its groups is among the record's reviewers."""
    reviewers = set(record.reviewers)
    return who.sub in reviewers or any(group in reviewers for group in who.groups)


def may_decide(record: ApprovalRecord, who: PolicySubject) -> bool:
    """Whether `who` may approve or deny this record now (for user interfaces; `decide` is authoritative)."""
    return record.status == "pending" and is_reviewer(record, who) and who.sub != record.requester_sub


def may_revoke(record: ApprovalRecord, who: PolicySubject, now: float) -> bool:
    return is_grant_active(record, now) and (is_reviewer(record, who) or who.sub == record.requester_sub)


def may_view(record: ApprovalRecord, who: PolicySubject) -> bool:
    """Reviewers of a request and its requester may see it; nobody else learns who asked for what."""
    return who.sub == record.requester_sub or is_reviewer(record, who)


# --------------------------------------------------------------------------------------------------------
# transitions


def clean_reason(reason: object) -> str:
    """The reason as stored: trimmed, control characters removed, bounded; ApprovalRefused when empty."""
    if not isinstance(reason, str):
        raise ApprovalRefused("reason_required", "a reason (a non-empty string) is required")
    text = _printable(reason)[:MAX_REASON_CHARS].strip()
    if not text:
        raise ApprovalRefused("reason_required", "a reason is required")
    return text


def decide(
    record: ApprovalRecord,
    verb: Literal["approve", "deny", "revoke"],
    who: PolicySubject,
    reason: object,
    now: float,
) -> ApprovalRecord:
    """The record after `who` applies `verb` with `reason` at `now`, or ApprovalRefused saying why not.

    Checks, in order: the principal may apply the verb at all (so a stranger learns nothing about the state),
    the verb is possible in the record's state (an expired grant counts as expired), and a reason is given.
    """
    if verb == "revoke":
        if not (is_reviewer(record, who) or who.sub == record.requester_sub):
            raise ApprovalRefused(
                "not_reviewer", f"{who.sub} is neither a reviewer of request {record.id} nor its requester"
            )
    else:
        if who.sub == record.requester_sub:
            raise ApprovalRefused("self_approval", f"{who.sub} cannot {verb} their own request")
        if not is_reviewer(record, who):
            raise ApprovalRefused(
                "not_reviewer",
                f"{who.sub} is not a reviewer of request {record.id} "
                f"(reviewers: {', '.join(record.reviewers)})",
            )
    status = effective_status(record, now)
    after = TRANSITIONS.get((status, verb))
    if after is None:
        raise ApprovalRefused("conflict", f"request {record.id} is {status}; it cannot be {_PAST[verb]}")
    text = clean_reason(reason)
    # A revoked record keeps the expiry it had, so the trail shows how much of the grant was cut short.
    grant_expires_at = now + record.grant_ttl_s if verb == "approve" else record.grant_expires_at
    return dataclasses.replace(
        record,
        status=after,
        decided_by=who.sub,
        decided_at=now,
        reason=text,
        grant_expires_at=grant_expires_at,
    )


def expire(record: ApprovalRecord, now: float, reason: str) -> ApprovalRecord:
    """The record marked expired by the system (no reviewer); ApprovalRefused('conflict') if it is final."""
    after = TRANSITIONS.get((record.status, "expire"))
    if after is None:
        raise ApprovalRefused("conflict", f"request {record.id} is {record.status}; it cannot expire")
    if record.status == "approved":
        # The grant ended when its TTL said, whenever the sweep noticed; keep that time and the approver.
        return dataclasses.replace(record, status=after)
    return dataclasses.replace(record, status=after, decided_at=now, reason=reason)


def event_kind_of(verb: Verb) -> EventKind:
    return _EVENT_OF_VERB[verb]


_PAST = {"approve": "approved", "deny": "denied", "revoke": "revoked", "expire": "expired"}


def is_grant_active(record: ApprovalRecord, now: float) -> bool:
    """The one test of whether an approval lets traffic through at `now`."""
    return (
        record.status == "approved" and record.grant_expires_at is not None and now < record.grant_expires_at
    )


def effective_status(record: ApprovalRecord, now: float) -> ApprovalStatus:
    """The status with time applied: an approved record whose grant ran out is expired already."""
    if record.status == "approved" and not is_grant_active(record, now):
        return "expired"
    return record.status


def pending_expired(record: ApprovalRecord, now: float, pending_ttl_s: float) -> bool:
    return record.status == "pending" and now - record.created_at >= pending_ttl_s


# --------------------------------------------------------------------------------------------------------
# what a worker does with a request that needs approval

GateOutcome = Literal["granted", "hold", "denied"]


@dataclass(frozen=True, slots=True)
class GateStep:
    """What to do with one request that needs approval.

    granted: serve it (`record` is the active grant). hold: wait up to the rule's hold time for `record` (a
    pending request) to be decided, then ask again; `create` says no pending request exists yet and one must
    be created. denied: refuse it (`record` is the recent denial), without creating a new request.
    """

    outcome: GateOutcome
    record: ApprovalRecord | None
    create: bool = False


def gate_step(
    grant: ApprovalRecord | None,
    latest: ApprovalRecord | None,
    now: float,
    deny_cooldown_s: float,
) -> GateStep:
    """Decide from the principal's active grant (if any) and latest record for the same key.

    A denial stands for `deny_cooldown_s`: retries within it are refused at once instead of filing a new
    request every time the client reconnects (reviewers are not paged in a loop). After it, a new request may
    be filed.
    """
    if grant is not None and is_grant_active(grant, now):
        return GateStep("granted", grant)
    if latest is not None:
        if latest.status == "pending":
            return GateStep("hold", latest)
        if latest.status == "denied" and now - (latest.decided_at or latest.created_at) < deny_cooldown_s:
            return GateStep("denied", latest)
    return GateStep("hold", None, create=True)


def client_message(record: ApprovalRecord, now: float) -> str:
    """What the client's error (and the worker's log) says about a request that is not granted."""
    status = effective_status(record, now)
    if status == "pending":
        return (
            f"approval pending: request {record.id} for {record.action} on {record.resource} "
            "awaits a reviewer "
            f"({', '.join(record.reviewers)}); retry after it is approved"
        )
    if status == "denied":
        return f"approval denied by {record.decided_by}: {record.reason}"
    if status == "revoked":
        return f"approval revoked by {record.decided_by}: {record.reason}"
    if status == "expired":
        return f"approval request {record.id} expired; a new request is filed at the next attempt"
    return f"approved by {record.decided_by} until the grant expires"


# --------------------------------------------------------------------------------------------------------
# justification and text hygiene


def parse_justification(client_id: str | None) -> str | None:
    """The text after `;justification=` in a client id (case-insensitive marker), cleaned; None if absent."""
    if not client_id:
        return None
    position = client_id.lower().find(JUSTIFICATION_MARKER)
    if position < 0:
        return None
    text = client_id[position + len(JUSTIFICATION_MARKER) :]
    text = _TOKEN_SHAPE.sub("[token removed]", _printable(text))
    text = text.strip()[:MAX_JUSTIFICATION_CHARS].strip()
    return text or None


def _printable(text: str) -> str:
    """Control and format characters (terminal escapes, bidi overrides) replaced by spaces; newlines kept."""
    return "".join(ch if ch == "\n" or not unicodedata.category(ch).startswith("C") else " " for ch in text)


# --------------------------------------------------------------------------------------------------------
# audit


def approval_event(
    kind: str,
    record: ApprovalRecord,
    *,
    connection_id: str | None = None,
    worker: int | str | None = None,
    protocol: str | None = None,
) -> audit.AuditEvent:
    """The audit event for one approval state change (`kind` is one of the KIND_* constants)."""
    details: dict[str, audit.DetailValue] = {"request_id": record.id, "action": record.action}
    if record.justification:
        details["justification"] = _TOKEN_SHAPE.sub("[token removed]", record.justification)
    if record.decided_by and kind != KIND_REQUESTED:
        details["decided_by"] = record.decided_by
    if record.grant_expires_at is not None and kind == KIND_GRANTED:
        details["grant_expires_at"] = audit.rfc3339_ms(record.grant_expires_at)
    if kind == KIND_REQUESTED:
        details["reviewers"] = ",".join(record.reviewers)
    decision: audit.Decision | None = {
        KIND_REQUESTED: "held",
        KIND_GRANTED: "approved",
        KIND_DENIED: "denied",
        KIND_REVOKED: "denied",
    }.get(kind)  # type: ignore[assignment]
    return audit.AuditEvent(
        kind=kind,
        principal=audit.Principal(
            sub=record.requester_sub, email=record.requester_email, groups=record.requester_groups
        ),
        client=audit.ClientInfo(address=record.client_address, client_id=record.client_id),
        connection_id=connection_id,
        worker=worker,
        protocol=protocol,
        resource=audit.Resource(
            topic=record.resource_name, kind=None if record.resource_kind == "topic" else record.resource_kind
        ),
        decision=decision,
        rule=record.rule,
        reason=_audit_reason(kind, record),
        approved_by=record.decided_by if kind == KIND_GRANTED else None,
        details=details,
    )


def _audit_reason(kind: str, record: ApprovalRecord) -> str | None:
    if kind == KIND_REQUESTED:
        return client_message(record, record.created_at)
    if kind == KIND_EXPIRED and record.grant_expires_at is not None:
        # A lapsed grant keeps its approval reason in the record; the event says why access ended.
        return f"grant expired at {audit.rfc3339_ms(record.grant_expires_at)}"
    return record.reason


def visible(records: Iterable[ApprovalRecord], who: PolicySubject) -> list[ApprovalRecord]:
    return [record for record in records if may_view(record, who)]
