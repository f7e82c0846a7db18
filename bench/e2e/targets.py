"""What a scenario measures against: the broker itself, Streamgate in front of it, or a peer proxy.

Every target serves the same Tansu broker, started once per run, so the only difference between the numbers
of two targets is the hop in between. A target knows how to start and stop, the bootstrap address clients
use, the client settings its listener demands (SASL for the identity mode; nothing for the others), and which
processes are its own (for RSS sampling through /proc; the broker's memory is not charged to a proxy). A
target that cannot start is reported as unavailable instead of aborting the whole run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.e2e.identity import BenchIdentity
from gateway.devstack.processes import (
    ComponentError,
    ManagedProcess,
    free_port,
    free_port_block,
    start_tansu_proxy,
    wait_for_port,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# Streamgate's gateway config per mode; a new mode is a new YAML file plus a line here.
MODE_CONFIGS: dict[str, str] = {
    "passthrough": "examples/passthrough.yaml",
    "identity": "examples/bench-identity.yaml",
    "masking": "examples/bench-masking.yaml",
}
# Modes whose clients authenticate against the run's development OIDC provider.
IDENTITY_MODES = frozenset({"identity", "masking"})
PASSTHROUGH_MODE = "passthrough"


def streamgate_target_name(mode: str) -> str:
    """The passthrough target is "streamgate"; every other mode is "streamgate-<mode>"."""
    return "streamgate" if mode == PASSTHROUGH_MODE else f"streamgate-{mode}"


# Tansu's node id is 111 and the gateway serves broker node N at node_port_base + N.
NODE_PORT_BLOCK = 200


class TargetUnavailable(RuntimeError):
    """The target could not be started (or died); the message says why and where its log is."""


class Target(ABC):
    """One way to reach the broker. `start` must leave it ready for Kafka clients on `bootstrap`."""

    kind: str = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def start(self, broker: ManagedProcess) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @property
    @abstractmethod
    def bootstrap(self) -> str: ...

    @abstractmethod
    def root_pids(self) -> list[int]:
        """Pids whose process trees are this target's own (their RSS is what the target costs)."""

    def alive(self) -> bool:
        return all(Path(f"/proc/{pid}").exists() for pid in self.root_pids())

    def client_config(self) -> dict[str, Any]:
        """Extra librdkafka settings every client of this target needs (SASL for identity modes)."""
        return {}

    def raw_sasl(self) -> dict[str, str] | None:
        """SASL PLAIN credentials for hand-encoded connections, or None when the listener takes none."""
        return None

    def restart(self, broker: ManagedProcess) -> None:
        """A fresh process (memory measurements must not inherit a previous round's heap)."""
        self.stop()
        self.start(broker)

    def close(self) -> None:
        """Stop for good, removing anything the target made for itself."""
        self.stop()

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class DirectTarget(Target):
    """Clients talk to the broker itself: the reference every other target is compared with."""

    kind = "direct"

    def __init__(self, name: str = "direct") -> None:
        super().__init__(name)
        self._broker: ManagedProcess | None = None

    def start(self, broker: ManagedProcess) -> None:
        self._broker = broker

    def stop(self) -> None:
        self._broker = None  # the broker belongs to the run, not to this target

    def restart(self, broker: ManagedProcess) -> None:
        self.start(broker)  # restarting the shared broker would disturb every other target

    @property
    def bootstrap(self) -> str:
        if self._broker is None:
            raise TargetUnavailable("direct target not started")
        return self._broker.address

    def root_pids(self) -> list[int]:
        return [self._broker.proc.pid] if self._broker else []


class PeerTarget(Target):
    """`tansu proxy` in front of the broker: another Kafka proxy that runs on the same machine."""

    kind = "peer"

    def __init__(self, name: str = "peer", log_dir: Path | None = None) -> None:
        super().__init__(name)
        self._log_dir = log_dir
        self._proxy: ManagedProcess | None = None

    def start(self, broker: ManagedProcess) -> None:
        log_path = self._log_dir / f"{self.name}.log" if self._log_dir else None
        try:
            self._proxy = start_tansu_proxy(broker.address, host=HOST, log_path=log_path)
        except ComponentError as exc:
            raise TargetUnavailable(f"peer proxy did not start: {exc}") from exc

    def stop(self) -> None:
        if self._proxy is not None:
            _stop_group(self._proxy)
            self._proxy = None

    @property
    def bootstrap(self) -> str:
        if self._proxy is None:
            raise TargetUnavailable("peer target not started")
        return self._proxy.address

    def root_pids(self) -> list[int]:
        return [self._proxy.proc.pid] if self._proxy else []

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "command": "tansu proxy"}


class StreamgateTarget(Target):
    """The gateway under test, started as `streamgate run --config <mode's config>` with env overrides."""

    kind = "streamgate"

    def __init__(
        self,
        name: str = "streamgate",
        mode: str = "passthrough",
        workers: int = 1,
        log_dir: Path | None = None,
        start_timeout: float = 30.0,
        identity: BenchIdentity | None = None,
    ) -> None:
        super().__init__(name)
        if mode not in MODE_CONFIGS:
            raise ValueError(f"unknown streamgate mode {mode!r}; known: {', '.join(sorted(MODE_CONFIGS))}")
        self.mode = mode
        self.workers = workers
        self._log_dir = log_dir
        self._start_timeout = start_timeout
        self._identity = identity
        self._process: ManagedProcess | None = None
        self._own_audit_dir: Path | None = None  # only when there is no run directory to put it in

    @property
    def needs_identity(self) -> bool:
        return self.mode in IDENTITY_MODES

    @property
    def audit_dir(self) -> Path | None:
        """Where the identity mode's file sink writes (inside the run's temporary directory)."""
        if not self.needs_identity:
            return None
        if self._log_dir is not None:
            return self._log_dir / f"{self.name}-audit"
        if self._own_audit_dir is None:
            self._own_audit_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-audit-"))
        return self._own_audit_dir

    def client_config(self) -> dict[str, Any]:
        if not self.needs_identity:
            return {}
        return self._require_identity().client_config()

    def raw_sasl(self) -> dict[str, str] | None:
        if not self.needs_identity:
            return None
        return self._require_identity().raw_sasl()

    def _require_identity(self) -> BenchIdentity:
        if self._identity is None:
            raise TargetUnavailable(f"mode {self.mode!r} needs the run's OIDC provider, and none was given")
        return self._identity

    @property
    def config_path(self) -> Path:
        return REPO_ROOT / MODE_CONFIGS[self.mode]

    def start(self, broker: ManagedProcess) -> None:
        executable = _streamgate_executable()
        if executable is None:
            raise TargetUnavailable("the `streamgate` command is not installed in the venv")
        if not self.config_path.exists():
            raise TargetUnavailable(f"config for mode {self.mode!r} missing: {self.config_path}")
        try:
            port = free_port(HOST)
            node_port_base = free_port_block(NODE_PORT_BLOCK, HOST)
        except ComponentError as exc:
            raise TargetUnavailable(f"no ports for streamgate: {exc}") from exc
        env = dict(os.environ)
        env.update(
            {
                "STREAMGATE__KAFKA__LISTEN": f"{HOST}:{port}",
                "STREAMGATE__KAFKA__ADVERTISED_HOST": HOST,
                "STREAMGATE__KAFKA__UPSTREAM__BOOTSTRAP": broker.address,
                "STREAMGATE__KAFKA__NODE_PORT_BASE": str(node_port_base),
                "STREAMGATE_WORKERS": str(self.workers),
            }
        )
        if self.needs_identity:
            identity = self._require_identity()
            audit_dir = self.audit_dir
            assert audit_dir is not None
            audit_dir.mkdir(parents=True, exist_ok=True)
            env["STREAMGATE_BENCH_OIDC_ISSUER"] = identity.issuer
            env["STREAMGATE_BENCH_AUDIT_DIR"] = str(audit_dir)
        log_path = self._log_dir / f"{self.name}.log" if self._log_dir else None
        argv = [executable, "run", "--config", str(self.config_path)]
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetUnavailable(f"cannot start streamgate: {exc}") from exc
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]
        self._process = ManagedProcess(self.name, proc, HOST, port, log_path)
        try:
            wait_for_port(HOST, port, self._start_timeout, proc)
        except ComponentError as exc:
            tail = self._process.log_text()[-2000:]
            self.stop()
            raise TargetUnavailable(f"streamgate did not start: {exc}\n{tail}") from exc

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process)
            self._process = None

    def restart(self, broker: ManagedProcess) -> None:
        self.stop()  # keeps a self-made audit directory: the trail of every round stays in one place
        self.start(broker)

    def close(self) -> None:
        """Stop, and remove an audit directory this target made for itself (none inside a run directory)."""
        self.stop()
        if self._own_audit_dir is not None:
            shutil.rmtree(self._own_audit_dir, ignore_errors=True)
            self._own_audit_dir = None

    @property
    def bootstrap(self) -> str:
        if self._process is None:
            raise TargetUnavailable(f"{self.name} not started")
        return self._process.address

    def root_pids(self) -> list[int]:
        return [self._process.proc.pid] if self._process else []

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "mode": self.mode,
            "workers": self.workers,
            "config": MODE_CONFIGS[self.mode],
            **(
                {"client_auth": "SASL OAUTHBEARER (librdkafka oidc client credentials)"}
                if self.needs_identity
                else {}
            ),
        }


def _streamgate_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("streamgate")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("streamgate")


def _stop_group(process: ManagedProcess) -> None:
    """Stop the process, then anything left in its session (workers of a prefork master)."""
    pgid = process.proc.pid  # started with start_new_session=True, so its pid is its group id
    process.stop()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- process-tree memory -------------------------------------------------------------------------------


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may itself contain spaces or parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root_pids: Iterable[int]) -> list[int]:
    """The given pids and all their live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parent_map().items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    pending = [pid for pid in root_pids if Path(f"/proc/{pid}").exists()]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_kib(root_pids: Iterable[int]) -> int:
    """RSS summed over the process trees (pages shared between forked workers are counted per process)."""
    return sum(rss_kib(pid) for pid in process_tree(root_pids))


def build_targets(
    names: Iterable[str],
    modes: Iterable[str] = ("passthrough",),
    workers: int = 1,
    log_dir: Path | None = None,
    identity: BenchIdentity | None = None,
) -> list[Target]:
    """Targets in the order given; "streamgate" expands to one target per mode (identity modes get `identity`)."""
    targets: list[Target] = []
    for name in names:
        if name == "direct":
            targets.append(DirectTarget())
        elif name == "peer":
            targets.append(PeerTarget(log_dir=log_dir))
        elif name == "streamgate":
            for mode in modes:
                targets.append(
                    StreamgateTarget(
                        streamgate_target_name(mode),
                        mode=mode,
                        workers=workers,
                        log_dir=log_dir,
                        identity=identity,
                    )
                )
        else:
            raise ValueError(f"unknown target {name!r}; known: direct, streamgate, peer")
    return targets
