"""The admin process's contract with the supervisor: ready, heartbeats, drain, end of file, boot failure,
reload; and the same entry point started by a real Supervisor as its auxiliary process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.processes import ManagedProcess
from gateway.store.approvals_sqlite import SqliteApprovalStore
from gateway.supervisor.control import BOOT_FAILURE_EXIT_CODE, HEARTBEAT_INTERVAL, reload_message
from tests.approvals.conftest import make_request
from tests.approvals.helpers import ROOT, WebhookReceiver, http_call, start_admin, wait_until

pytestmark = pytest.mark.integration


def _config(idp: ManagedProcess, workdir: Path, **admin: Any) -> dict[str, Any]:
    return {
        "server": {"drain_timeout": 5},
        "identity": {"oidc": {"issuer": idp.extra["issuer"], "audience": "streamgate"}},
        "admin": {"store": {"path": str(workdir / "approvals.db")}, **admin},
    }


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_ready_heartbeat_and_drain(idp: ManagedProcess, tmp_path: Path) -> None:
    config = _config(idp, tmp_path)
    del config["admin"][
        "store"
    ]  # the default: approvals.sqlite3 in server.state_dir, shared with the workers
    config["server"]["state_dir"] = str(tmp_path / "state")
    admin = start_admin(config, tmp_path)
    assert (tmp_path / "state" / "approvals.sqlite3").is_file()
    try:
        started = time.monotonic()
        admin.wait_for_message("heartbeat", HEARTBEAT_INTERVAL * 3)
        admin.wait_for_message("heartbeat", HEARTBEAT_INTERVAL * 3)
        assert time.monotonic() - started >= HEARTBEAT_INTERVAL * 0.9  # paced, not a flood
        assert http_call("GET", admin.url + "/healthz")[0] == 200
    finally:
        code = admin.stop()
    assert code == 0, admin.log_text()
    assert _refused(admin.port)


def test_master_gone_means_drain(idp: ManagedProcess, tmp_path: Path) -> None:
    admin = start_admin(_config(idp, tmp_path), tmp_path)
    admin.control.shutdown(socket.SHUT_RDWR)  # end of file on the admin's control socket
    assert admin.proc.wait(15) == 0, admin.log_text()
    admin.control.close()


def test_bad_config_is_a_boot_failure(idp: ManagedProcess, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited with 3"):
        start_admin(_config(idp, tmp_path, pending_ttl="soon"), tmp_path)
    assert "admin.pending_ttl" in (tmp_path / "admin.log").read_text()
    assert BOOT_FAILURE_EXIT_CODE == 3


def test_reload_turns_the_webhook_on(idp: ManagedProcess, tmp_path: Path) -> None:
    admin = start_admin(_config(idp, tmp_path), tmp_path)
    store = SqliteApprovalStore(tmp_path / "approvals.db")
    try:
        with WebhookReceiver() as receiver:
            admin.send(
                reload_message(_config(idp, tmp_path, webhook={"url": receiver.url, "format": "json"}))
            )
            assert wait_until(lambda: "admin configuration reloaded" in admin.log_text(), 10)
            record = make_request(store)
            message = receiver.wait_for(1)[0]
            assert message["event"] == "approval_requested" and message["approval"]["id"] == record.id
            assert (
                message["approval"]["requester"]["sub"] == "alice"
                and message["approval"]["status"] == "pending"
            )
    finally:
        store.close()
        assert admin.stop() == 0, admin.log_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_started_by_a_real_supervisor(
    idp: ManagedProcess, tmp_path: Path, token: Callable[[str], str]
) -> None:
    port = _free_port()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(_config(idp, tmp_path)))
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.approvals.supervised_admin", str(config_path), str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    store = SqliteApprovalStore(tmp_path / "approvals.db")
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: not _refused(port) and http_call("GET", url + "/readyz")[0] == 200, 20), (
            log_path.read_text()
        )
        record = make_request(store)
        status, body = http_call(
            "POST",
            f"{url}/api/approvals/{record.id}/approve",
            token=token("carol"),
            body={"reason": "supervised"},
        )
        assert status == 200 and body["decided_by"] == "carol"
        events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        admin_starts = [e for e in events if e.get("event") == "worker_started" and e.get("worker_id") == -1]
        assert len(admin_starts) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()
        assert _refused(port)
        assert "admin process exiting" in log_path.read_text()
    finally:
        store.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_decisions_wait_for_the_audit_trail(
    idp: ManagedProcess, tmp_path: Path, token: Callable[[str], str]
) -> None:
    """With a block-mode audit sink down, nothing is decided (503); once it is back, the decision is made and
    its event reaches the sink."""
    port = _free_port()
    config = _config(idp, tmp_path)
    config["audit"] = {
        "sinks": [
            {
                "type": "syslog",
                "address": f"127.0.0.1:{port}",
                "protocol": "tcp",
                "retry_initial": 0.1,
                "retry_max": 0.2,
            }
        ]
    }
    admin = start_admin(config, tmp_path)
    store = SqliteApprovalStore(tmp_path / "approvals.db")
    received = bytearray()
    try:
        record = make_request(store)
        status, body = http_call("GET", admin.url + "/readyz")
        assert status == 503 and "an audit sink cannot take events" in body["problems"]
        status, body = http_call(
            "POST",
            f"{admin.url}/api/approvals/{record.id}/approve",
            token=token("carol"),
            body={"reason": "ok"},
        )
        assert status == 503 and "audit trail" in body["message"]
        assert store.get(record.id).status == "pending"  # type: ignore[union-attr]

        with socket.create_server(("127.0.0.1", port)) as syslog_server:  # the collector comes back
            syslog_server.settimeout(10)
            connection, _ = syslog_server.accept()
            with connection:
                assert wait_until(lambda: http_call("GET", admin.url + "/readyz")[0] == 200, 10)
                status, body = http_call(
                    "POST",
                    f"{admin.url}/api/approvals/{record.id}/approve",
                    token=token("carol"),
                    body={"reason": "ok"},
                )
                assert status == 200 and body["status"] == "approved"
                connection.settimeout(10)
                while b"approval_granted" not in received:
                    chunk = connection.recv(65536)
                    assert chunk, "the syslog connection closed before the event arrived"
                    received += chunk
        assert b'"approved_by":"carol"' in received
    finally:
        store.close()
        assert admin.stop() == 0, admin.log_text()
