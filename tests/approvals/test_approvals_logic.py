"""The sans-IO approval rules: who may decide, state machine, grant TTL, the gate, justification, audit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.enforcement import approvals, audit
from gateway.enforcement.approvals import ApprovalRefused, Requester
from gateway.enforcement.decisions import ApprovalSpec, Resource

SPEC = ApprovalSpec("pii", ("security-oncall", "bob-the-lead"), grant_ttl_s=600.0, hold_s=10.0)
TOPIC = Resource.topic("customers.pii.accounts")
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Who:
    sub: str
    groups: tuple[str, ...] = ()


CAROL = Who("carol", ("security-oncall",))
LEAD = Who("bob-the-lead")  # a reviewer by subject, not by group
ALICE = Who("alice", ("analysts",))
ERIN = Who("erin", ("security-oncall", "analysts"))


def pending(requester: str = "alice", groups: tuple[str, ...] = ("analysts",)) -> approvals.ApprovalRecord:
    return approvals.new_request(
        Requester(requester, None, groups, "10.0.0.1:5000", "app"), "consume", TOPIC, SPEC, T0
    )


def test_new_request_copies_rule_and_requester() -> None:
    record = approvals.new_request(
        Requester("alice", "a@x", ("analysts",), "10.0.0.1:5000", "nb;justification=  INC-1  "),
        "consume",
        TOPIC,
        SPEC,
        T0,
    )
    assert record.status == "pending"
    assert record.key == ("alice", "consume", "topic", "customers.pii.accounts")
    assert record.reviewers == SPEC.reviewers and record.grant_ttl_s == 600.0 and record.rule == "pii"
    assert record.justification == "INC-1"
    assert record.created_at == T0 and record.decided_by is None


@pytest.mark.parametrize("who", [CAROL, LEAD])
def test_reviewer_by_group_or_subject_approves_and_grant_lasts_ttl_from_approval(who: Who) -> None:
    approved = approvals.decide(pending(), "approve", who, "  ticket INC-1\x1b\x07 ", T0 + 30)
    assert approved.status == "approved"
    assert approved.decided_by == who.sub and approved.decided_at == T0 + 30
    assert approved.reason == "ticket INC-1"  # trimmed, control characters removed
    assert approved.grant_expires_at == T0 + 30 + 600
    assert approvals.is_grant_active(approved, T0 + 629)
    assert not approvals.is_grant_active(approved, T0 + 630)
    assert approvals.effective_status(approved, T0 + 630) == "expired"


def test_requester_cannot_approve_or_deny_own_request_even_as_reviewer() -> None:
    record = pending("erin", ERIN.groups)
    for verb in ("approve", "deny"):
        with pytest.raises(ApprovalRefused) as refused:
            approvals.decide(record, verb, ERIN, "mine", T0)  # type: ignore[arg-type]
        assert refused.value.code == "self_approval" and refused.value.http_status == 403


def test_non_reviewer_refused_before_state_is_revealed() -> None:
    approved = approvals.decide(pending(), "approve", CAROL, "ok", T0)
    with pytest.raises(ApprovalRefused) as refused:
        approvals.decide(approved, "approve", Who("mallory", ("interns",)), "me too", T0)
    assert refused.value.code == "not_reviewer"


@pytest.mark.parametrize("reason", ["", "   ", None, 42, "\x00\x07"])
def test_reason_required(reason: object) -> None:
    with pytest.raises(ApprovalRefused) as refused:
        approvals.decide(pending(), "approve", CAROL, reason, T0)
    assert refused.value.code == "reason_required" and refused.value.http_status == 400


def test_state_machine_table_is_enforced() -> None:
    denied = approvals.decide(pending(), "deny", CAROL, "no ticket", T0)
    assert denied.status == "denied" and denied.grant_expires_at is None
    for verb in ("approve", "deny", "revoke"):
        with pytest.raises(ApprovalRefused) as refused:
            approvals.decide(denied, verb, CAROL, "again", T0 + 1)  # type: ignore[arg-type]
        assert refused.value.code == "conflict" and refused.value.http_status == 409
    with pytest.raises(ApprovalRefused):
        approvals.decide(pending(), "revoke", CAROL, "nothing granted yet", T0)
    with pytest.raises(ApprovalRefused):
        approvals.expire(denied, T0, "late")
    # every pair not in the table is refused; every pair in it leads where the table says
    for status in approvals.STATUSES:
        for verb in ("approve", "deny", "revoke", "expire"):
            assert ((status, verb) in approvals.TRANSITIONS) == (
                (status, verb)
                in {
                    ("pending", "approve"),
                    ("pending", "deny"),
                    ("pending", "expire"),
                    ("approved", "revoke"),
                    ("approved", "expire"),
                }
            )


def test_revoke_by_reviewer_or_requester_and_only_while_active() -> None:
    approved = approvals.decide(pending(), "approve", CAROL, "ok", T0)
    by_requester = approvals.decide(approved, "revoke", ALICE, "done with it", T0 + 5)
    assert by_requester.status == "revoked" and by_requester.decided_by == "alice"
    assert not approvals.is_grant_active(by_requester, T0 + 6)
    assert by_requester.grant_expires_at == approved.grant_expires_at  # the trail keeps the original end
    with pytest.raises(ApprovalRefused) as refused:
        approvals.decide(approved, "revoke", Who("mallory"), "x", T0 + 5)
    assert refused.value.code == "not_reviewer"
    with pytest.raises(ApprovalRefused) as refused:
        approvals.decide(approved, "revoke", CAROL, "too late", T0 + 601)  # the grant already ran out
    assert refused.value.code == "conflict"


def test_expire_pending_and_grant() -> None:
    assert approvals.pending_expired(pending(), T0 + 100, 100)
    assert not approvals.pending_expired(pending(), T0 + 99, 100)
    expired = approvals.expire(pending(), T0 + 100, "nobody decided")
    assert expired.status == "expired" and expired.reason == "nobody decided" and expired.decided_by is None
    approved = approvals.decide(pending(), "approve", CAROL, "ok", T0)
    lapsed = approvals.expire(approved, T0 + 700, "grant expired")
    assert lapsed.status == "expired" and lapsed.decided_by == "carol" and lapsed.reason == "ok"


def test_visibility_and_ui_permissions() -> None:
    record = pending()
    assert approvals.may_view(record, ALICE) and approvals.may_view(record, CAROL)
    assert not approvals.may_view(record, Who("mallory", ("interns",)))
    assert approvals.may_decide(record, CAROL) and not approvals.may_decide(record, ALICE)
    approved = approvals.decide(record, "approve", CAROL, "ok", T0)
    assert approvals.may_revoke(approved, ALICE, T0 + 1) and approvals.may_revoke(approved, LEAD, T0 + 1)
    assert not approvals.may_revoke(approved, CAROL, T0 + 601)


def test_gate_step() -> None:
    record = pending()
    approved = approvals.decide(record, "approve", CAROL, "ok", T0)
    denied = approvals.decide(record, "deny", CAROL, "no", T0 + 10)
    assert approvals.gate_step(approved, approved, T0 + 1, 300).outcome == "granted"
    assert approvals.gate_step(None, None, T0, 300) == approvals.GateStep("hold", None, create=True)
    assert approvals.gate_step(None, record, T0, 300) == approvals.GateStep("hold", record)
    assert approvals.gate_step(None, denied, T0 + 309, 300) == approvals.GateStep("denied", denied)
    assert approvals.gate_step(
        None, denied, T0 + 310, 300
    ).create  # cooldown over: a new request may be filed
    # an expired grant is not a grant: the latest (approved, lapsed) record leads to a new request
    assert approvals.gate_step(approved, approved, T0 + 601, 300).create


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        (None, None),
        ("", None),
        ("plain-client", None),
        ("nb;justification=INC-4711 refund investigation", "INC-4711 refund investigation"),
        ("nb;JUSTIFICATION=Upper case marker", "Upper case marker"),
        ("nb;justification=   ", None),
        ("nb;justification=line\u202eone\x1b[2J", "line one [2J"),
        ("nb;justification=" + "x" * 900, "x" * approvals.MAX_JUSTIFICATION_CHARS),
        (
            "nb;justification=see eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln please",
            "see [token removed] please",
        ),
    ],
)
def test_parse_justification(client_id: str | None, expected: str | None) -> None:
    assert approvals.parse_justification(client_id) == expected


def test_client_messages_say_what_to_do() -> None:
    record = pending()
    assert "pending" in approvals.client_message(record, T0) and record.id in approvals.client_message(
        record, T0
    )
    assert "security-oncall" in approvals.client_message(record, T0)
    denied = approvals.decide(record, "deny", CAROL, "no ticket", T0)
    assert approvals.client_message(denied, T0) == "approval denied by carol: no ticket"


_REASON = {
    approvals.KIND_DENIED: "no ticket",
    approvals.KIND_REVOKED: "incident closed",
    approvals.KIND_EXPIRED: "nobody decided",
}


@pytest.mark.parametrize(
    "kind",
    [
        approvals.KIND_REQUESTED,
        approvals.KIND_GRANTED,
        approvals.KIND_DENIED,
        approvals.KIND_REVOKED,
        approvals.KIND_EXPIRED,
    ],
)
def test_audit_events_name_requester_reviewer_rule_topic_reason(kind: str) -> None:
    record = approvals.new_request(
        Requester("alice", "alice@example.com", ("analysts",), "10.0.0.1:5000", "nb;justification=INC-9"),
        "consume",
        TOPIC,
        SPEC,
        T0,
    )
    if kind in (approvals.KIND_GRANTED, approvals.KIND_REVOKED):
        record = approvals.decide(record, "approve", CAROL, "approved for INC-9", T0 + 1)
    if kind == approvals.KIND_REVOKED:
        record = approvals.decide(record, "revoke", CAROL, "incident closed", T0 + 2)
    if kind == approvals.KIND_DENIED:
        record = approvals.decide(record, "deny", CAROL, "no ticket", T0 + 1)
    if kind == approvals.KIND_EXPIRED:
        record = approvals.expire(record, T0 + 90000, "nobody decided")
    event = audit.decode_event(audit.encode_event(approvals.approval_event(kind, record, worker="admin")))
    assert event.kind == kind
    assert event.principal is not None and event.principal.sub == "alice"
    assert event.principal.groups == ("analysts",)
    assert event.rule == "pii"
    assert event.resource is not None and event.resource.topic == "customers.pii.accounts"
    assert event.details is not None and event.details["request_id"] == record.id
    assert event.details["justification"] == "INC-9"
    assert event.client is not None and event.client.address == "10.0.0.1:5000"
    if kind == approvals.KIND_GRANTED:
        assert event.approved_by == "carol" and event.decision == "approved"
        assert event.reason == "approved for INC-9" and "grant_expires_at" in event.details
    elif kind == approvals.KIND_REQUESTED:
        assert event.decision == "held" and event.approved_by is None and "pending" in (event.reason or "")
    else:
        assert event.approved_by is None and event.reason == record.reason == _REASON[kind]
    if kind in (approvals.KIND_DENIED, approvals.KIND_REVOKED):
        assert event.details["decided_by"] == "carol"


def test_audit_event_of_a_lapsed_grant_says_it_expired() -> None:
    approved = approvals.decide(pending(), "approve", CAROL, "INC-1", T0)
    lapsed = approvals.expire(approved, T0 + 700, "grant expired")
    event = approvals.approval_event(approvals.KIND_EXPIRED, lapsed)
    assert event.reason == f"grant expired at {audit.rfc3339_ms(T0 + 600)}"
    assert event.details is not None and event.details["decided_by"] == "carol" and event.approved_by is None
