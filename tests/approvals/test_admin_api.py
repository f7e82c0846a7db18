"""The admin process as the supervisor runs it, against the real development OIDC provider: API auth cases,
decisions, visibility, webhook delivery to a real local HTTP listener, audit events, the sweeper and the
CLI."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.admin import cli as admin_cli
from gateway.devstack.processes import ManagedProcess
from gateway.enforcement import approvals
from gateway.store.approvals_sqlite import SqliteApprovalStore
from tests.approvals.conftest import make_request
from tests.approvals.helpers import (
    AdminHandle,
    WebhookReceiver,
    http_call,
    mint_token,
    start_admin,
    wait_until,
)

pytestmark = pytest.mark.integration


class Env:
    def __init__(
        self, admin: AdminHandle, store: SqliteApprovalStore, webhook: WebhookReceiver, audit_dir: Path
    ):
        self.admin, self.store, self.webhook, self.audit_dir = admin, store, webhook, audit_dir

    def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        return http_call(method, self.admin.url + path, token=token, body=body)

    def audit_events(self) -> list[dict[str, Any]]:
        path = self.audit_dir / "audit.wadmin.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_audit(self, kind: str, request_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [
                e
                for e in self.audit_events()
                if e["kind"] == kind and (e.get("details") or {}).get("request_id") == request_id
            ]
            return bool(found)

        assert wait_until(look, 10), f"no {kind} audit event for {request_id}: {self.audit_events()}"
        return found[0]

    def webhook_messages(self, request_id: str) -> list[dict[str, Any]]:
        return [m for m in self.webhook.received if request_id in json.dumps(m)]

    def wait_webhook(self, request_id: str, count: int) -> list[dict[str, Any]]:
        assert wait_until(lambda: len(self.webhook_messages(request_id)) >= count, 10), self.webhook.received
        return self.webhook_messages(request_id)


@pytest.fixture(scope="module")
def env(idp: ManagedProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("admin")
    db = workdir / "approvals.db"
    with WebhookReceiver(statuses=[503]) as webhook:  # the first delivery fails: the retry must get through
        config = {
            "server": {"log_level": "debug", "drain_timeout": 5},
            "identity": {"oidc": {"issuer": idp.extra["issuer"], "audience": "streamgate"}},
            "audit": {"sinks": [{"type": "file", "path": str(workdir / "audit.jsonl")}]},
            "admin": {
                "store": {"path": str(db)},
                "sweep_interval": "200ms",
                "public_url": "https://gw.example",
                "webhook": {"url": webhook.url, "format": "slack"},
            },
        }
        admin = start_admin(config, workdir)
        store = SqliteApprovalStore(db)
        try:
            yield Env(admin, store, webhook, workdir)
        finally:
            store.close()
            code = admin.stop()
            log = admin.log_text()
            assert code == 0, log
            assert webhook.url.split("/", 3)[3] not in log  # the webhook URL's secret path never logged
            for user_token in ("eyJ",):
                assert user_token not in log


def test_health_and_page(env: Env) -> None:
    assert env.api("GET", "/healthz") == (200, {"status": "ok"})
    assert wait_until(lambda: env.api("GET", "/readyz")[0] == 200, 10)
    conn = http.client.HTTPConnection("127.0.0.1", env.admin.port, timeout=10)
    try:
        conn.request("GET", "/")
        page = conn.getresponse()
        html = page.read().decode()
        assert page.status == 200 and page.getheader("Content-Type", "").startswith("text/html")
        assert "script-src 'self'" in page.getheader("Content-Security-Policy", "")
        assert '<script src="/static/app.js"' in html
        conn.request("GET", "/static/app.js")  # the same keep-alive connection
        script = conn.getresponse()
        assert script.status == 200 and "textContent" in script.read().decode()
        conn.request("GET", "/nope")
        missing = conn.getresponse()
        missing.read()
        assert missing.status == 404
    finally:
        conn.close()


def test_unauthenticated_and_invalid_tokens_get_401(env: Env, idp: ManagedProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", env.admin.port, timeout=10)
    try:
        conn.request("GET", "/api/approvals")
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 401 and answer.getheader("WWW-Authenticate", "").startswith("Bearer")
        assert "bearer token is required" in body["message"]
        conn.request("GET", "/api/approvals", headers={"Authorization": "Basic Y2Fyb2w6eA=="})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 401
    finally:
        conn.close()
    forged = mint_token(idp, claims={"sub": "carol"}, groups=["security-oncall"], sign="unpublished")
    wrong_audience = mint_token(
        idp, claims={"sub": "carol", "aud": "someone-else"}, groups=["security-oncall"]
    )
    expired = mint_token(idp, claims={"sub": "carol"}, groups=["security-oncall"], ttl_s=-120)
    unsigned = mint_token(idp, claims={"sub": "carol"}, groups=["security-oncall"], sign="none")
    for bad, reason in (
        (forged, "unknown_kid"),
        (wrong_audience, "bad_audience"),
        (expired, "expired"),
        (unsigned, "alg_not_allowed"),
        ("not-a-jwt", "malformed"),
    ):
        status, body = env.api("GET", "/api/approvals", bad)
        assert (status, body["message"]) == (401, f"invalid token ({reason})"), body
        assert bad not in json.dumps(body)


def test_whoami_and_visibility(env: Env, token: Callable[[str], str]) -> None:
    assert env.api("GET", "/api/whoami", token("carol")) == (
        200,
        {"sub": "carol", "email": "carol@example.com", "groups": ["security-oncall"]},
    )
    record = make_request(env.store, "alice")
    for viewer in ("carol", "alice"):
        status, body = env.api("GET", "/api/approvals?status=pending", token(viewer))
        assert status == 200 and record.id in [a["id"] for a in body["approvals"]], viewer
    status, body = env.api("GET", "/api/approvals?status=pending", token("mallory"))
    assert status == 200 and record.id not in [a["id"] for a in body["approvals"]]
    status, body = env.api("GET", f"/api/approvals/{record.id}", token("carol"))
    assert status == 200 and body["can_decide"] and not body["is_requester"]
    assert body["justification"] == "INC-4711 refund investigation" and body["status"] == "pending"
    assert body["requester"] == {"sub": "alice", "email": "alice@example.com", "groups": ["analysts"]}
    status, body = env.api("GET", f"/api/approvals/{record.id}", token("alice"))
    assert status == 200 and not body["can_decide"] and body["is_requester"]
    assert env.api("GET", f"/api/approvals/{record.id}", token("mallory"))[0] == 403
    assert env.api("GET", "/api/approvals/00000000-0000-4000-8000-000000000000", token("carol"))[0] == 404
    assert env.api("GET", "/api/approvals?status=granted", token("carol"))[0] == 400
    assert env.api("GET", "/api/approvals?limit=0", token("carol"))[0] == 400


def test_decision_refusals(env: Env, token: Callable[[str], str]) -> None:
    own = make_request(env.store, "erin", groups=("security-oncall", "analysts"))
    status, body = env.api("POST", f"/api/approvals/{own.id}/approve", token("erin"), {"reason": "I need it"})
    assert (status, body["code"]) == (403, "self_approval")
    status, body = env.api("POST", f"/api/approvals/{own.id}/approve", token("mallory"), {"reason": "sure"})
    assert (status, body["code"]) == (403, "not_reviewer")
    status, body = env.api("POST", f"/api/approvals/{own.id}/approve", token("carol"), {})
    assert (status, body["code"]) == (400, "reason_required")
    status, body = env.api("POST", f"/api/approvals/{own.id}/approve", token("carol"), ["reason"])
    assert status == 400
    assert env.api("GET", f"/api/approvals/{own.id}/approve", token("carol"))[0] == 405
    status, _ = env.api(
        "POST", "/api/approvals/00000000-0000-4000-8000-000000000000/deny", token("carol"), {"reason": "x"}
    )
    assert status == 404
    assert env.store.get(own.id).status == "pending"  # type: ignore[union-attr]
    status, body = env.api("POST", f"/api/approvals/{own.id}/deny", token("carol"), {"reason": "no ticket"})
    assert status == 200 and body["status"] == "denied"
    status, body = env.api("POST", f"/api/approvals/{own.id}/approve", token("carol"), {"reason": "oops"})
    assert (status, body["code"]) == (409, "conflict")
    denied = env.wait_audit(approvals.KIND_DENIED, own.id)
    assert denied["principal"]["sub"] == "erin" and denied["details"]["decided_by"] == "carol"
    assert denied["reason"] == "no ticket" and denied["decision"] == "denied"


def test_approve_and_revoke_with_audit_and_webhook(env: Env, token: Callable[[str], str]) -> None:
    record = make_request(env.store, "alice", resource=approvals.Resource.topic("customers.pii.cards"))
    status, body = env.api(
        "POST", f"/api/approvals/{record.id}/approve", token("carol"), {"reason": "INC-4711 approved"}
    )
    assert status == 200 and body["status"] == "approved" and body["grant_active"]
    stored = env.store.get(record.id)
    assert stored is not None and stored.status == "approved" and stored.decided_by == "carol"
    assert env.store.active_grant("alice", "consume", record.resource, time.time()) is not None

    granted = env.wait_audit(approvals.KIND_GRANTED, record.id)
    assert granted["principal"]["sub"] == "alice" and granted["approved_by"] == "carol"
    assert granted["rule"] == "customer-pii-needs-approval" and granted["reason"] == "INC-4711 approved"
    assert granted["resource"]["topic"] == "customers.pii.cards" and granted["worker"] == "admin"

    requested, approved = env.wait_webhook(record.id, 2)[:2]
    assert requested["text"].startswith("Approval requested: alice")
    assert {
        "type": "button",
        "text": {"type": "plain_text", "text": "Review"},
        "url": f"https://gw.example/#request={record.id}",
    } in requested["blocks"][-1]["elements"]
    assert approved["text"].startswith("Approval granted") and "approved by carol" in approved["text"]
    assert any("INC-4711 approved" in field["text"] for field in approved["blocks"][2]["fields"])

    status, body = env.api("POST", f"/api/approvals/{record.id}/revoke", token("carol"), {"reason": "closed"})
    assert status == 200 and body["status"] == "revoked" and not body["grant_active"]
    assert env.store.active_grant("alice", "consume", record.resource, time.time()) is None
    assert env.wait_audit(approvals.KIND_REVOKED, record.id)["details"]["decided_by"] == "carol"
    assert env.wait_webhook(record.id, 3)[2]["text"].startswith("Approval revoked")
    assert (
        env.api("POST", f"/api/approvals/{record.id}/revoke", token("carol"), {"reason": "again"})[0] == 409
    )


def test_webhook_retried_after_a_failure(env: Env, token: Callable[[str], str]) -> None:
    # The receiver answered 503 to the very first delivery (fixture); every message still arrived once.
    record = make_request(env.store, "dave")
    env.wait_webhook(record.id, 1)
    assert env.webhook.requests[0][0] == "/hooks/secret-path"
    paths = [path for path, _, _ in env.webhook.requests]
    assert len(paths) == len(env.webhook.received) + 1  # exactly one extra (failed) attempt
    ids = [m["blocks"][3]["elements"][0]["text"] + m["text"][:20] for m in env.webhook.received]
    assert len(ids) == len(set(ids))  # no duplicates


def test_sweeper_expires_and_audits(env: Env, token: Callable[[str], str]) -> None:
    stale = make_request(env.store, "frank", now=time.time() - 2 * 86400)  # older than the 24h pending TTL
    assert wait_until(lambda: env.store.get(stale.id).status == "expired", 10)  # type: ignore[union-attr]
    expired = env.wait_audit(approvals.KIND_EXPIRED, stale.id)
    assert expired["principal"]["sub"] == "frank" and "no reviewer decided" in expired["reason"]
    assert env.wait_webhook(stale.id, 2)[1]["text"].startswith("Approval expired")


def _cli(env: Env, token: str, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="streamgate")
    admin_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["approvals", *argv, "--admin", env.admin.url, "--token", token])
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli(env: Env, token: Callable[[str], str], tmp_path: Path) -> None:
    record = make_request(env.store, "alice", resource=approvals.Resource.topic("customers.pii.cli"))
    code, out, _ = _cli(env, token("carol"), "list")
    assert code == 0 and record.id in out and "customers.pii.cli" in out and "INC-4711" in out
    code, out, _ = _cli(env, token("carol"), "list", "--json", "--status", "pending")
    assert code == 0 and record.id in [a["id"] for a in json.loads(out)]
    code, out, _ = _cli(env, token("carol"), "show", record.id)
    assert code == 0 and "wants          consume on topic customers.pii.cli" in out
    code, _, err = _cli(env, token("alice"), "approve", record.id, "--reason", "please")
    assert code == 1 and "cannot approve their own request" in err
    code, out, _ = _cli(env, token("carol"), "approve", record.id, "--reason", "via CLI")
    assert code == 0 and out.startswith(f"{record.id}: approved by carol, grant until ")
    assert env.store.get(record.id).reason == "via CLI"  # type: ignore[union-attr]
    code, out, _ = _cli(env, token("carol"), "revoke", record.id, "-r", "done")
    assert code == 0 and "revoked by carol" in out
    # token from a file; unreachable admin is exit 2
    token_file = tmp_path / "token"
    token_file.write_text(token("carol") + "\n")
    parser = argparse.ArgumentParser(prog="streamgate")
    admin_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["approvals", "list", "--admin", "http://127.0.0.1:9", "--token-file", str(token_file)]
    )
    err = io.StringIO()
    assert args.func(args, io.StringIO(), err) == 2 and "cannot reach the admin API" in err.getvalue()
    assert token("carol") not in err.getvalue()
