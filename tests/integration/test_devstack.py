"""`make run`'s stack: the printed client commands work exactly as printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gateway.devstack.processes import free_port
from tests.helpers.gateway import ROOT

pytestmark = pytest.mark.integration


def test_devstack_prints_commands_that_work(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMGATE")}
    env["STREAMGATE_DEVSTACK_DIR"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "devstack", "--port", str(port), "--workers", "2"],
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
        commands = [ln.strip() for ln in lines if ln.strip().startswith(("kcat ", "printf "))]
        assert len(commands) == 3, commands
        for command in commands:
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT)
            assert result.returncode == 0, (command, result.stderr)
            if " -L" in command:
                assert f"127.0.0.1:{port + 8 + 111}" in result.stdout
            if " -C " in command:
                assert "k1 => hello" in result.stdout and "k2 => world" in result.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
