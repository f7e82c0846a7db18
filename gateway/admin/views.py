"""How approval records look outside the gateway: the JSON of the admin API and webhooks, and the chat text.

One function per shape, so the API, the webhook and the CLI agree on field names. Times are RFC 3339 UTC
strings. `status` is the effective status (an approved request whose grant ran out shows `expired` even
before the sweeper marks it). Everything here is sans-IO.
"""

from __future__ import annotations

from typing import Any

from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRecord
from gateway.enforcement.audit import rfc3339_ms
from gateway.enforcement.decisions import PolicySubject
from gateway.store.approvals_base import StoreEvent


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339_ms(value)


def record_json(record: ApprovalRecord, now: float, viewer: PolicySubject | None = None) -> dict[str, Any]:
    """The API representation; with `viewer`, also what that principal may do with it."""
    data: dict[str, Any] = {
        "id": record.id,
        "status": approvals.effective_status(record, now),
        "requester": {
            "sub": record.requester_sub,
            "email": record.requester_email,
            "groups": list(record.requester_groups),
        },
        "action": record.action,
        "resource": {"kind": record.resource_kind, "name": record.resource_name},
        "rule": record.rule,
        "reviewers": list(record.reviewers),
        "client": {"address": record.client_address, "client_id": record.client_id},
        "justification": record.justification,
        "created_at": _time(record.created_at),
        "decided_by": record.decided_by,
        "decided_at": _time(record.decided_at),
        "reason": record.reason,
        "grant_ttl_seconds": record.grant_ttl_s,
        "grant_expires_at": _time(record.grant_expires_at),
        "grant_active": approvals.is_grant_active(record, now),
    }
    if viewer is not None:
        data["can_decide"] = approvals.may_decide(record, viewer)
        data["can_revoke"] = approvals.may_revoke(record, viewer, now)
        data["is_requester"] = viewer.sub == record.requester_sub
    return data


_HEADLINES = {
    "requested": "Approval requested",
    "approved": "Approval granted",
    "denied": "Approval denied",
    "revoked": "Approval revoked",
    "expired": "Approval expired",
}


def event_json(event: StoreEvent, public_url: str | None) -> dict[str, Any]:
    """The `json` webhook payload."""
    data: dict[str, Any] = {
        "event": approvals.AUDIT_KIND_OF_EVENT[event.kind],
        "seq": event.seq,
        "at": rfc3339_ms(event.at),
        "actor": event.actor,
        "approval": record_json(event.record, event.at),
    }
    if public_url:
        data["url"] = review_link(public_url, event.record.id)
    return data


def review_link(public_url: str, request_id: str) -> str:
    return f"{public_url.rstrip('/')}/#request={request_id}"


def _escape_mrkdwn(text: str) -> str:
    """Slack treats &, < and > as control characters (links, mentions); user text must not inject them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def event_slack(event: StoreEvent, public_url: str | None) -> dict[str, Any]:
    """The `slack` webhook payload: Slack-compatible `text` (notification fallback) plus `blocks`."""
    record = event.record
    who = record.requester_sub + (f" ({record.requester_email})" if record.requester_email else "")
    summary = (
        f"{_HEADLINES[event.kind]}: {who} wants {record.action} on {record.resource_kind} "
        f"{record.resource_name} (rule {record.rule})"
    )
    if event.kind in ("approved", "denied", "revoked") and record.decided_by:
        summary += f"; {event.kind} by {record.decided_by}"
    fields = [
        ("Requester", who),
        ("Action", f"{record.action} on {record.resource_kind} {record.resource_name}"),
        ("Rule", record.rule),
        ("Reviewers", ", ".join(record.reviewers)),
        ("Client", " ".join(filter(None, [record.client_id, record.client_address])) or "-"),
    ]
    if record.justification:
        fields.append(("Justification", record.justification))
    if event.kind != "requested":
        if record.decided_by:
            fields.append(("Decided by", record.decided_by))
        if record.reason:
            fields.append(("Reason", record.reason))
        if event.kind == "approved" and record.grant_expires_at is not None:
            fields.append(("Grant expires", rfc3339_ms(record.grant_expires_at)))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _HEADLINES[event.kind][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape_mrkdwn(summary)[:3000]}},
        {
            "type": "section",
            # Slack allows at most 10 fields of 2000 characters each.
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{_escape_mrkdwn(value)[:1900]}"}
                for label, value in fields[:10]
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"request `{record.id}`"}]},
    ]
    if public_url and event.kind == "requested":
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Review"},
                        "url": review_link(public_url, record.id),
                    }
                ],
            }
        )
    return {"text": summary, "blocks": blocks}
