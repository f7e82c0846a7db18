"""Start the real gateway (`streamgate run`) as a subprocess for integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.devstack.processes import free_port, free_port_block, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    node_port_base: int
    upstream: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    admin_port: int = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def wait_for_log(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match[str]:
        """Wait until the log (from byte offset `start`) matches `pattern`; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.log_text()[start:])
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"log never matched {pattern!r}; tail:\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_gateway(upstream: str, tmp: Path, *, workers: int = 2, config: Path | None = None,
                  extra_env: dict[str, str] | None = None, wait_ready: bool = True) -> GatewayProcess:
    port = free_port()
    admin_port = free_port()
    base = free_port_block(130)  # Tansu's node id is 111
    env = dict(os.environ)
    env.update({
        "STREAMGATE__KAFKA__LISTEN": f"127.0.0.1:{port}",
        "STREAMGATE__KAFKA__NODE_PORT_BASE": str(base),
        "STREAMGATE__KAFKA__UPSTREAM__BOOTSTRAP": upstream,
        "STREAMGATE_WORKERS": str(workers),
        "STREAMGATE__ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
        "STREAMGATE__SERVER__STATE_DIR": str(tmp / f"state-{port}"),
    })
    env.update(extra_env or {})
    log_path = tmp / f"gateway-{port}.log"
    cfg = config or ROOT / "examples" / "passthrough.yaml"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    gw = GatewayProcess(proc, port, base, upstream, log_path, env)
    gw.admin_port = admin_port
    if wait_ready:
        wait_for_port("127.0.0.1", port, 30, proc)
        # every worker reports it is serving before we hand the gateway to a test
        deadline = time.monotonic() + 30
        while gw.log_text().count("serving (pid") < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"gateway workers did not start; log:\n{gw.log_text()[-3000:]}")
            time.sleep(0.05)
    return gw
