"""What every scenario needs from the run: the broker, topics, and client processes with bounded waits.

Topics are created and deleted through the broker directly (never through a target), each measurement on
a fresh topic, so no target reads or writes on top of data another target left behind, and the memory
broker does not grow over the run. Client workloads (`bench.e2e.clients`) run as child processes; every
wait on them has a deadline and a child that overstays it is killed. A workload's credentials (the
target's `client_config` and `raw_sasl`) travel in the child's environment, never on its command line,
where any user of the machine could read them.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.e2e.clients import CREDENTIAL_PARAMS, CREDENTIALS_ENV, RESULT_PREFIX
from gateway.devstack.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TIMEOUT_S = 15.0


class ClientError(RuntimeError):
    """A client workload failed, produced no result or overstayed its deadline."""


class ClientProcess:
    """One running workload: `python -m bench.e2e.clients WORKLOAD JSON` with a bounded result read."""

    def __init__(self, workload: str, params: dict[str, Any]) -> None:
        self.workload = workload
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self._buffer = b""
        public, credentials = split_credentials(params)
        env = dict(os.environ)
        env.pop(CREDENTIALS_ENV, None)
        if credentials:
            env[CREDENTIALS_ENV] = json.dumps(credentials)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.e2e.clients", workload, json.dumps(public)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO_ROOT,
            env=env,
        )

    def read_result(self, timeout: float) -> dict[str, Any]:
        """Wait (at most `timeout` s) for the workload's RESULT line and return it decoded."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                for line in self._buffer.split(b"\n")[:-1]:
                    if line.startswith(RESULT_PREFIX.encode()):
                        self._buffer = b""
                        return json.loads(line[len(RESULT_PREFIX) :])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise ClientError(
                        f"{self.workload} gave no result within {timeout:.0f}s{self._stderr_tail()}"
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    code = self.proc.wait(5)
                    raise ClientError(
                        f"{self.workload} exited with {code} and no result{self._stderr_tail()}"
                    )
                self._buffer += chunk

    def finish(self, timeout: float = 30.0) -> int:
        """Tell the workload to finish (newline on stdin, then EOF) and reap it."""
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"\n")
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        finally:
            with contextlib.suppress(OSError):
                assert self.proc.stdout is not None
                self.proc.stdout.close()
            self._stderr.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            tail = self._stderr.read()[-1500:].decode(errors="replace").strip()
            return f"; stderr: {tail}" if tail else ""
        return ""


def split_credentials(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params for argv, credentials for the environment); empty credentials are dropped."""
    public = {key: value for key, value in params.items() if key not in CREDENTIAL_PARAMS}
    credentials = {key: params[key] for key in CREDENTIAL_PARAMS if params.get(key)}
    return public, credentials


def run_client(workload: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a workload to completion and return its result (ClientError on failure or overstay)."""
    client = ClientProcess(workload, params)
    try:
        return client.read_result(timeout)
    finally:
        client.finish(timeout=10.0)


@dataclass
class BenchContext:
    """Per-run state handed to every scenario."""

    broker: ManagedProcess
    profile: str
    log_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _topic_counter: int = 0
    _admin: Any = None

    def _admin_client(self) -> Any:
        # One admin client for the run: creating one per topic would add a connection setup each time.
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({"bootstrap.servers": self.direct_bootstrap, "log_level": 3})
        return self._admin

    def close(self) -> None:
        self._admin = None  # librdkafka tears the client down when the last reference goes

    @property
    def direct_bootstrap(self) -> str:
        return self.broker.address

    def new_topic(self, label: str, partitions: int = 1) -> str:
        """Create a fresh topic through the broker directly and wait until it exists."""
        from confluent_kafka.admin import NewTopic

        self._topic_counter += 1
        name = f"bench-{self.run_id}-{self._topic_counter:04d}-{label}"
        futures = self._admin_client().create_topics(
            [NewTopic(name, partitions, 1)], operation_timeout=ADMIN_TIMEOUT_S
        )
        futures[name].result(ADMIN_TIMEOUT_S)
        return name

    def delete_topic(self, name: str) -> None:
        """Delete a topic (best effort: a failed delete costs broker memory, not correctness)."""
        with contextlib.suppress(Exception):
            self._admin_client().delete_topics([name], operation_timeout=ADMIN_TIMEOUT_S)[name].result(
                ADMIN_TIMEOUT_S
            )

    def probe(self, bootstrap: str, label: str, client_config: dict[str, Any] | None = None) -> None:
        """One acknowledged send through `bootstrap` on a throwaway topic (ClientError if it fails)."""
        topic = self.new_topic(f"probe-{label}")
        try:
            run_client(
                "probe",
                {
                    "bootstrap": bootstrap,
                    "topic": topic,
                    "max_seconds": 15.0,
                    "client_config": client_config or {},
                },
                timeout=40.0,
            )
        finally:
            self.delete_topic(topic)
