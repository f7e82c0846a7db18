"""Fixtures that run the supervisor as a real process (tests.supervisor.run_echo) and follow its JSON log.

Tests synchronise on log events (`wait_for_event`) and on client round trips, each with a deadline; the
supervisor's whole process group is SIGKILLed in teardown so no worker outlives a test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
Record = dict[str, Any]


class EchoClient:
    """A line client for the echo worker, with a timeout on every operation so a stall fails the test."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def send_line(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def read_line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def request(self, line: str) -> str:
        self.send_line(line)
        return self.read_line()

    def whoami(self) -> dict[str, Any]:
        return json.loads(self.request("whoami"))

    def close(self) -> None:
        self.sock.close()


class SupervisorProcess:
    def __init__(self, config_path: Path, args: list[str]) -> None:
        self.config_path = config_path
        self.records: list[Record] = []
        self.raw_lines: list[str] = []
        self._changed = threading.Condition()
        self._clients: list[EchoClient] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.supervisor.run_echo", "--config", str(config_path), *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so teardown can reach every worker
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.raw_lines.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.records.append(record)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ log events

    def mark(self) -> int:
        """A position in the log; pass it as `since` to wait only for later events."""
        with self._changed:
            return len(self.records)

    def events(self, event: str, since: int = 0, **fields: Any) -> list[Record]:
        with self._changed:
            return [record for record in self.records[since:] if _matches(record, event, fields)]

    def wait_for_event(self, event: str, since: int = 0, timeout: float = 10.0, **fields: Any) -> Record:
        return self.wait_for_events(event, 1, since=since, timeout=timeout, **fields)[0]

    def wait_for_events(
        self, event: str, count: int, since: int = 0, timeout: float = 10.0, **fields: Any
    ) -> list[Record]:
        def found() -> list[Record] | None:
            matching = [record for record in self.records[since:] if _matches(record, event, fields)]
            return matching if len(matching) >= count else None

        return self._wait(found, timeout, f"{count} x {event} {fields}")

    def _wait(self, probe: Callable[[], Any], timeout: float, description: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (result := probe()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {description}\n{self.log_tail()}"
                    )
                self._changed.wait(remaining)
            return result

    def log_tail(self, lines: int = 40) -> str:
        return "--- supervisor log tail ---\n" + "\n".join(self.raw_lines[-lines:])

    def log_text(self) -> str:
        with self._changed:
            return "\n".join(self.raw_lines)

    # ------------------------------------------------------------ process and clients

    @property
    def port(self) -> int:
        return int(self.wait_for_event("listener_bound", listener="echo")["port"])

    def wait_until_ready(self, workers: int, since: int = 0, timeout: float = 15.0) -> list[Record]:
        return self.wait_for_events("worker_ready", workers, since=since, timeout=timeout)

    def connect(self) -> EchoClient:
        client = EchoClient(self.port)
        self._clients.append(client)
        return client

    def client_of_worker(self, worker_id: int, attempts: int = 200) -> tuple[EchoClient, dict[str, Any]]:
        """A connection served by `worker_id` (SO_REUSEPORT hashes connections, so try until one lands)."""
        for _ in range(attempts):
            client = self.connect()
            identity = client.whoami()
            if identity["worker_id"] == worker_id:
                return client, identity
            client.close()
        raise AssertionError(f"no connection reached worker {worker_id} in {attempts} attempts")

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still running after {timeout}s\n{self.log_tail()}") from None

    def write_config(self, text: str) -> None:
        # Write then rename, so a SIGHUP can never read a half-written file.
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(self.config_path)

    def shutdown(self) -> None:
        for client in self._clients:
            client.close()
        # SIGKILL the whole group: the master if it still runs, and any worker a failed test left behind.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def _matches(record: Record, event: str, fields: dict[str, Any]) -> bool:
    return record.get("event") == event and all(record.get(key) == value for key, value in fields.items())


StartSupervisor = Callable[..., SupervisorProcess]


@pytest.fixture
def start_supervisor(tmp_path: Path) -> Iterator[StartSupervisor]:
    """start_supervisor(config={...} or config_text="...", workers=2, drain_timeout=5, heartbeat_timeout=30)."""
    started: list[SupervisorProcess] = []

    def start(
        config: dict[str, Any] | None = None,
        config_text: str | None = None,
        workers: int = 2,
        drain_timeout: float = 5.0,
        heartbeat_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> SupervisorProcess:
        config_path = tmp_path / f"config-{len(started)}.json"
        if config_text is None:
            config_text = json.dumps({"generation": 1} if config is None else config)
        config_path.write_text(config_text)
        args = ["--workers", str(workers), "--drain-timeout", str(drain_timeout)]
        args += ["--heartbeat-timeout", str(heartbeat_timeout), *extra_args]
        process = SupervisorProcess(config_path, args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.shutdown()
