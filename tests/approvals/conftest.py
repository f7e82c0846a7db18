"""Fixtures for approvals tests: a real development OIDC provider with reviewer and requester identities,
tokens from its real token endpoint, a fresh approval store per test, and sample records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess
from gateway.enforcement import approvals
from gateway.enforcement.decisions import ApprovalSpec, Resource
from gateway.store.approvals_sqlite import SqliteApprovalStore
from tests.approvals.helpers import password_token

# carol and erin review (security-oncall); erin and alice are analysts who request access; mallory is neither.
USERS: dict[str, dict[str, Any]] = {
    "carol": {"password": "carol-pw-3d1", "groups": ["security-oncall"], "email": "carol@example.com"},
    "erin": {
        "password": "erin-pw-8c2",
        "groups": ["security-oncall", "analysts"],
        "email": "erin@example.com",
    },
    "alice": {"password": "alice-pw-5b7", "groups": ["analysts"], "email": "alice@example.com"},
    "mallory": {"password": "mallory-pw-0a9", "groups": ["interns"]},
}
CLIENTS: dict[str, dict[str, Any]] = {"streamgate-cli": {"groups": []}}
SPEC = ApprovalSpec("customer-pii-needs-approval", ("security-oncall",), grant_ttl_s=3600.0, hold_s=5.0)
PII = Resource.topic("customers.pii.accounts")


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    provider = start_dev_idp(USERS, CLIENTS, log_path=tmp_path_factory.mktemp("idp") / "dev-idp.log")
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def token(idp: ManagedProcess) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def _token(user: str) -> str:
        if user not in cache:
            cache[user] = password_token(idp, user, USERS[user]["password"])
        return cache[user]

    return _token


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteApprovalStore]:
    s = SqliteApprovalStore(tmp_path / "approvals.db")
    yield s
    s.close()


def make_request(
    store: SqliteApprovalStore,
    requester: str = "alice",
    *,
    groups: tuple[str, ...] = ("analysts",),
    resource: Resource = PII,
    spec: ApprovalSpec = SPEC,
    client_id: str | None = "fraud-notebook;justification=INC-4711 refund investigation",
    now: float | None = None,
) -> approvals.ApprovalRecord:
    record, created = store.request_or_existing(
        approvals.new_request(
            approvals.Requester(requester, f"{requester}@example.com", groups, "127.0.0.1:50123", client_id),
            "consume",
            resource,
            spec,
            time.time() if now is None else now,
        )
    )
    assert created
    return record
