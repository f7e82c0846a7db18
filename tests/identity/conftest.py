"""Fixtures for identity-mode tests: a real dev OIDC provider, a real broker, the gateway with a policy."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess
from tests.helpers.gateway import GatewayProcess, start_gateway

USERS: dict[str, dict[str, Any]] = {
    "dave": {"password": "dave-test-password", "groups": ["analysts", "payments-svc"], "email": "dave@example.com"},
}
CLIENTS: dict[str, dict[str, Any]] = {
    "payments-svc": {"secret": "payments-test-secret", "groups": ["payments-svc"]},
    "analytics-svc": {"secret": "analytics-test-secret", "groups": ["analysts"]},
    "admin-svc": {"secret": "admin-test-secret", "groups": ["platform-admins"]},
    "nobody-svc": {"secret": "nobody-test-secret", "groups": []},
    "fraud-svc": {"secret": "fraud-test-secret", "groups": ["fraud-investigators"]},
}

POLICY = """
policy:
  rules:
    - name: payments-writers
      groups: [payments-svc]
      topics: ["payments.*"]
      allow: [produce, describe]
    - name: analysts-read
      groups: [analysts]
      topics: ["payments.*"]
      consumer_groups: ["analytics-*"]
      allow: [consume, describe]
    - name: no-secrets-for-analysts
      groups: [analysts]
      topics: ["payments.secret*"]
      deny: [consume, describe]
    - name: platform-admins
      groups: [platform-admins]
      topics: ["*"]
      consumer_groups: ["*"]
      allow: [create, delete, alter, describe, describe_configs, alter_configs, produce, consume]
"""


def write_identity_config(path: Path, issuer: str, audit_dir: Path, *, extra_audit: str = "",
                          policy: str = POLICY) -> Path:
    path.write_text(
        "kafka:\n  advertised_host: 127.0.0.1\n"
        f"identity:\n  oidc: {{issuer: \"{issuer}\", audience: streamgate, groups_claim: groups, clock_skew: 5}}\n"
        f"{policy}\n"
        f"audit:\n  sinks:\n    - {{type: file, path: {audit_dir}/audit.jsonl, write_through: true}}\n{extra_audit}")
    return path


@pytest.fixture(scope="session")
def idp(session_tmp: Path) -> Iterator[ManagedProcess]:
    handle = start_dev_idp(USERS, CLIENTS, log_path=session_tmp / "idp.log", token_ttl_s=300)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def audit_dir(session_tmp: Path) -> Path:
    d = session_tmp / "audit"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def secure_gateway(tansu: ManagedProcess, idp: ManagedProcess, session_tmp: Path,
                   audit_dir: Path) -> Iterator[GatewayProcess]:
    cfg = write_identity_config(session_tmp / "identity.yaml", idp.extra["issuer"], audit_dir)
    gw = start_gateway(tansu.address, session_tmp, workers=2, config=cfg)
    yield gw
    code = gw.stop()
    assert code == 0, gw.log_text()[-3000:]


def mint(idp: ManagedProcess, **spec: Any) -> str:
    """A token from the provider's test endpoint (`sub`, `groups`, `ttl_s`, `claims`, `header`, `sign`)."""
    claims = dict(spec.pop("claims", {}))
    if "sub" in spec:
        claims["sub"] = spec.pop("sub")
    body = json.dumps({**spec, "claims": claims}).encode()
    req = urllib.request.Request(f"{idp.extra['issuer']}/test/mint", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["token"]


def oidc_conf(gw: GatewayProcess, idp: ManagedProcess, client: str) -> dict[str, str]:
    """librdkafka's own OIDC client-credentials flow: only standard configuration."""
    return {"bootstrap.servers": gw.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": client, "sasl.oauthbearer.client.secret": CLIENTS[client]["secret"],
            "sasl.oauthbearer.token.endpoint.url": idp.extra["token_endpoint"]}


def plain_conf(gw: GatewayProcess, token: str, username: str = "ignored") -> dict[str, str]:
    return {"bootstrap.servers": gw.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": username, "sasl.password": token}


def read_audit(audit_dir: Path) -> list[dict[str, Any]]:
    events = []
    for f in sorted(audit_dir.glob("audit*.jsonl*")):
        for line in f.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def client_token(idp: ManagedProcess, client: str) -> str:
    """An access token from the provider's real token endpoint (client_credentials, client_secret_basic)."""
    credentials = base64.b64encode(f"{client}:{CLIENTS[client]['secret']}".encode()).decode()
    req = urllib.request.Request(idp.extra["token_endpoint"], data=b"grant_type=client_credentials",
                                 headers={"Authorization": f"Basic {credentials}",
                                          "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["access_token"])


def wait_for_audit(audit_dir: Path, matches: Callable[[dict[str, Any]], bool], *, count: int = 1,
                   timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the audit files until at least `count` events satisfy `matches`; return all that do.

    Workers write events as they happen, so a reader may see a line still being written: that read is
    retried, not treated as a broken file.
    """
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while True:
        try:
            found = [e for e in read_audit(audit_dir) if matches(e)]
        except json.JSONDecodeError:
            found = []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
