"""Session-wide fixtures: a real Tansu broker and the real gateway in front of it (2 workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack.processes import ManagedProcess, start_tansu
from tests.helpers.gateway import GatewayProcess, start_gateway


def pytest_sessionstart(session: pytest.Session) -> None:
    # A native extension that silently failed to build must fail the run, not fall back to the twin.
    from tests.native.extension_check import assert_native_loaded

    assert_native_loaded()


def pytest_report_header(config: pytest.Config) -> list[str]:
    from gateway import native

    return [f"streamgate native implementation: {native.IMPLEMENTATION}"]


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streamgate")


@pytest.fixture(scope="session")
def tansu(session_tmp: Path) -> Iterator[ManagedProcess]:
    broker = start_tansu(log_path=session_tmp / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def gateway(tansu: ManagedProcess, session_tmp: Path) -> Iterator[GatewayProcess]:
    gw = start_gateway(tansu.address, session_tmp, workers=int(os.environ.get("STREAMGATE_TEST_WORKERS", "2")))
    yield gw
    code = gw.stop()
    assert code == 0, f"gateway exited with {code}; log tail:\n{gw.log_text()[-3000:]}"
