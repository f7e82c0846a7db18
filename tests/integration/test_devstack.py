"""`make run`'s stack: the printed client commands work exactly as printed and show what they claim."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gateway.devstack.processes import free_port, free_port_block
from tests.helpers.gateway import ROOT

pytestmark = pytest.mark.integration


def test_devstack_prints_commands_that_work(tmp_path):
    port = free_port()
    base = free_port_block(130)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMGATE")}
    env["STREAMGATE_DEVSTACK_DIR"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "devstack", "--port", str(port), "--workers", "2",
                             "--node-port-base", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "Ctrl-C stops everything" in line:
                break
        text = "\n".join(lines)
        assert "Try it" in text, text
        commands = [ln.strip() for ln in lines
                    if ln.strip().startswith(("kcat ", "printf ", "timeout ", ".venv/bin/streamgate "))]
        assert len(commands) == 8, commands

        def sh(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=90, cwd=ROOT)

        write, read, denied, listing, explain, held, pending, approve = (sh(c) for c in commands)
        assert write.returncode == 0, write.stderr
        assert read.returncode == 0, read.stderr
        assert ('order-1 => {"card":{"number":"************1111"},"customer":{"ssn":"[REDACTED]"},'
                '"note":"paid by [REDACTED:EMAIL]"} (offset 0)') in read.stdout, read.stdout
        assert "Topic authorization failed" in denied.stderr + denied.stdout
        assert listing.returncode == 0, listing.stderr
        assert "payments.orders" in listing.stdout and "payments.secret-keys" not in listing.stdout
        assert f"127.0.0.1:{base + 111}" in listing.stdout
        assert "decision: DENY by rule 'no-secrets-for-analysts'" in explain.stdout
        assert "Ann Example" not in held.stdout, "customer PII was delivered without approval"
        assert "analytics-svc" in pending.stdout and "customers.pii.profiles" in pending.stdout, pending.stdout
        assert approve.returncode == 0, approve.stderr + approve.stdout
        after = sh(commands[5])
        assert "Ann Example" in after.stdout, after.stderr
        verify = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", str(tmp_path / "audit")],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert verify.returncode == 0, verify.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
