"""`streamgate policy explain` and `streamgate audit verify` on the files a real gateway wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers.gateway import ROOT
from tests.identity.conftest import POLICY, oidc_conf, write_identity_config

pytestmark = pytest.mark.integration


def streamgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_policy_explain_names_the_deciding_rule(tmp_path):
    cfg = write_identity_config(tmp_path / "c.yaml", "http://127.0.0.1:9", tmp_path, policy=POLICY)
    allowed = streamgate("policy", "explain", "--config", str(cfg), "--sub", "alice", "--groups", "analysts",
                         "--action", "consume", "--topic", "payments.eu")
    assert allowed.returncode == 0, allowed.stderr
    assert "decision: ALLOW by rule 'analysts-read'" in allowed.stdout
    denied = streamgate("policy", "explain", "--config", str(cfg), "--sub", "alice", "--groups",
                        "analysts,payments-svc", "--action", "consume", "--topic", "payments.secret-x")
    assert denied.returncode == 1
    assert "decision: DENY by rule 'no-secrets-for-analysts'" in denied.stdout
    nothing = streamgate("policy", "explain", "--config", str(cfg), "--sub", "mallory", "--action", "produce",
                         "--topic", "payments.eu")
    assert nothing.returncode == 1 and "by default (no rule matched)" in nothing.stdout


def test_audit_verify_on_gateway_output_and_each_tampering(secure_gateway, idp, audit_dir, tmp_path):
    from confluent_kafka.admin import AdminClient

    AdminClient(oidc_conf(secure_gateway, idp, "admin-svc")).list_topics(timeout=20)  # at least a few events
    copy = tmp_path / "copy"
    shutil.copytree(audit_dir, copy)
    ok = streamgate("audit", "verify", str(copy))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:")
    chain = max(copy.glob("audit.w*.jsonl"), key=lambda p: len(p.read_text().splitlines()))
    original = chain.read_text().splitlines(keepends=True)
    assert len(original) >= 4

    def tampered(lines: list[str]) -> subprocess.CompletedProcess[str]:
        chain.write_text("".join(lines))
        result = streamgate("audit", "verify", str(copy))
        chain.write_text("".join(original))
        return result

    edited = list(original)
    event = json.loads(edited[2])
    event["decision"] = "denied" if event.get("decision") != "denied" else "allowed"
    edited[2] = json.dumps(event, separators=(",", ":")) + "\n"
    dropped = original[:2] + original[3:]
    reordered = original[:1] + [original[2], original[1]] + original[3:]
    inserted = original[:2] + [original[1]] + original[2:]
    for name, lines in (("edit", edited), ("drop", dropped), ("reorder", reordered), ("insert", inserted)):
        result = tampered(lines)
        assert result.returncode == 1, name
        assert "FAILED" in result.stdout and f"{chain.name}:" in result.stdout, (name, result.stdout)
