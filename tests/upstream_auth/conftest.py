"""Brokers that demand SASL, for the upstream-login tests; each is stopped in fixture teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack.processes import ManagedProcess, start_tansu
from gateway.devstack.secured_broker import SecuredBroker, start_secured_tansu
from gateway.protocols.kafka.upstream_auth import Mechanism

# One user per mechanism, plus a user whose name needs saslname escaping.
USERS: dict[str, tuple[Mechanism, str]] = {
    "svc-scram256": ("SCRAM-SHA-256", "Pw-256-k3q9"),
    "svc-scram512": ("SCRAM-SHA-512", "Pw-512-z8m2"),
    "svc-plain": ("PLAIN", "Pw-plain-r4t7"),
    "odd=na,me": ("SCRAM-SHA-256", "Pw-odd-w1x5"),
}
SHORT_SESSION_MS = 4000


@pytest.fixture(scope="module")
def sasl_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sasl-broker")


@pytest.fixture(scope="module")
def secured_broker(sasl_logs: Path) -> Iterator[SecuredBroker]:
    broker = start_secured_tansu(USERS, log_dir=sasl_logs)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def short_session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Only SCRAM-SHA-512 enabled, sessions of SHORT_SESSION_MS that must be renewed (KIP-368)."""
    broker = start_secured_tansu(
        {"svc-scram512": USERS["svc-scram512"]},
        enabled_mechanisms=("SCRAM-SHA-512",),
        session_lifetime_ms=SHORT_SESSION_MS,
        log_dir=tmp_path_factory.mktemp("short-session"),
    )
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def tansu_with_authentication(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """The real Tansu with its own ``--authentication`` (it has no users, see gateway/devstack/secured_broker.py)."""
    broker = start_tansu(
        extra_args=["--authentication"], log_path=tmp_path_factory.mktemp("tansu-auth") / "tansu.log"
    )
    yield broker
    broker.stop()
