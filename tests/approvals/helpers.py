"""Test helpers for approvals: the admin process as a real child process, a webhook receiver, tokens."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.devstack.processes import ManagedProcess
from gateway.supervisor.control import ControlReader, drain_message, encode_message
from gateway.supervisor.listeners import bind_listener

ROOT = Path(__file__).resolve().parents[2]


def password_token(idp: ManagedProcess, username: str, password: str) -> str:
    """An access token from the provider's real token endpoint (resource-owner password grant)."""
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": username, "password": password, "client_id": "streamgate-cli"}
    ).encode()
    request = urllib.request.Request(
        idp.extra["token_endpoint"], data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return str(json.loads(response.read())["access_token"])


def mint_token(idp: ManagedProcess, **spec: Any) -> str:
    status, answer = http_call("POST", f"{idp.extra['issuer']}/test/mint", body=spec)
    assert status == 200, answer
    return str(answer["token"])


def http_call(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON or text) for error statuses too."""
    all_headers = dict(headers or {})
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, _decode(response.read(), response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _decode(exc.read(), exc.headers.get("Content-Type", ""))


def _decode(data: bytes, content_type: str) -> Any:
    if "json" in content_type:
        return json.loads(data or b"null")
    return data.decode("utf-8", "replace")


@dataclass
class AdminHandle:
    proc: subprocess.Popen[bytes]
    control: socket.socket
    port: int
    log_path: Path
    messages: list[dict[str, Any]] = field(default_factory=list)
    _reader: ControlReader = field(default_factory=ControlReader)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_control(self, timeout: float) -> list[dict[str, Any]]:
        """Control messages that arrive within `timeout` seconds (at least one unless it timed out)."""
        ready, _, _ = select.select([self.control], [], [], timeout)
        if not ready:
            return []
        data = self.control.recv(65536)
        new = list(self._reader.feed(data)) if data else []
        self.messages.extend(new)
        return new

    def wait_for_message(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"admin process exited with {self.proc.returncode}:\n{self.log_text()}")
            for message in self.read_control(min(0.5, max(0.0, deadline - time.monotonic()))):
                if message["type"] == kind:
                    return message
        raise AssertionError(f"no {kind!r} control message within {timeout}s:\n{self.log_text()}")

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall(encode_message(message))

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                self.send(drain_message(5.0))
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.control.close()
        return int(self.proc.returncode)


def start_admin(config: dict[str, Any], workdir: Path, *, ready_timeout: float = 20.0) -> AdminHandle:
    """Start the admin process (listener on a free loopback port) and wait for its "ready" message."""
    config_path = workdir / "admin-config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    parent_end, child_end = socket.socketpair()
    log_path = workdir / "admin.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.approvals.admin_launcher",
                str(config_path),
                str(child_end.fileno()),
                str(listener.fileno()),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(child_end.fileno(), listener.fileno()),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    child_end.close()
    listener.close()
    handle = AdminHandle(proc, parent_end, port, log_path)
    try:
        handle.wait_for_message("ready", ready_timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


class WebhookReceiver:
    """A real local HTTP server that records webhook POSTs; `statuses` are answered in order (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append((self.path, dict(self.headers), body))
                    if 200 <= status < 300:
                        receiver.received.append(json.loads(body))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(
                    f"expected {count} webhook message(s), got {len(self.received)}: {self.received}"
                )
            return list(self.received)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
