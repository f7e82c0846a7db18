"""A worker process: a uvloop event loop serving Kafka connections on the sockets the supervisor bound.

Rules this module keeps:
- The config in force for *new* connections is the newest one the master sent; live connections keep theirs.
- Broker node ports (node_port_base + node id) are bound here, on the fly, with SO_REUSEPORT, the moment a
  response names a node this worker has not served yet, and before that response reaches the client.
- Drain (SIGTERM or a "drain" message): stop accepting at once, let every connection finish the requests it
  has in flight, close idle connections, exit 0 within the drain timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from gateway.admin.config import approval_store_path
from gateway.audit.dispatcher import AuditDispatcher
from gateway.config import Config, from_plain, parse_host_port
from gateway.enforcement.limits import LimitsEngine
from gateway.enforcement.policy import Policy
from gateway.logsetup import configure_logging
from gateway.masking.detectors import BUILTIN_DETECTORS
from gateway.masking.registry import MaskerRegistry
from gateway.protocols.kafka import codec, framing
from gateway.protocols.kafka.addresses import AddressBook
from gateway.protocols.kafka.generated.metadata import MetadataRequest
from gateway.protocols.kafka.guard import GuardContext
from gateway.store.approvals_base import open_approval_store
from gateway.store.approvals_gate import ApprovalGate
from gateway.store.limits_sqlite import SqliteWindowStore
from gateway.supervisor.context import WorkerContext
from gateway.supervisor.control import (
    BOOT_FAILURE_EXIT_CODE,
    DRAIN,
    RELOAD,
)
from gateway.worker.control_channel import ControlChannel
from gateway.worker.identity_service import IdentityService
from gateway.worker.kafka_proxy import ClientConnection, ProxyRuntime

log = logging.getLogger("streamgate.worker")


def server_ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.kafka.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca:
        ctx.load_verify_locations(tls.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def upstream_ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.kafka.upstream.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca)
    if tls.cert and tls.key:
        ctx.load_cert_chain(tls.cert, tls.key)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Worker:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.config: Config = from_plain(ctx.config)
        self.loop = asyncio.get_event_loop()
        self.control: ControlChannel | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.node_servers: dict[int, asyncio.AbstractServer] = {}
        self.done = asyncio.Event()
        self.draining = False
        self.runtime = self._make_runtime(self.config)

    def _make_runtime(self, config: Config) -> ProxyRuntime:
        k = config.kafka
        book = AddressBook(k.effective_advertised_host, k.node_port_base)
        guard_ctx = identity = audit = None
        if not config.passthrough:
            assert config.identity is not None
            audit = AuditDispatcher.from_config(config.audit, self.ctx.worker_id)
            identity = IdentityService(config.identity.oidc)
            limits = None
            if config.limits.rules or config.limits.bulk_read or config.limits.content:
                path = config.limits.store_path or str(Path(config.server.state_dir) / "limits.sqlite3")
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                limits = LimitsEngine(config.limits, SqliteWindowStore(path),
                                      known_detectors=BUILTIN_DETECTORS | set(config.masking.custom_detectors))
            approvals = None
            if config.needs_approvals:
                store_path = approval_store_path(config.admin, config.server.state_dir)
                Path(store_path).parent.mkdir(parents=True, exist_ok=True)
                approvals = ApprovalGate(
                    open_approval_store(config.admin.store.type, store_path,
                                        busy_timeout_s=config.admin.store.busy_timeout),
                    deny_cooldown_s=config.admin.deny_cooldown_s, poll_interval_s=config.admin.hold_poll_interval_s)
            guard_ctx = GuardContext(policy=Policy(config.policy.rules), audit_available=audit.available,
                                     clock=time.time, worker_id=self.ctx.worker_id,
                                     mechanisms=tuple(config.identity.mechanisms),
                                     maskers=MaskerRegistry(config.masking), limits=limits,
                                     partition_count=book.topic_partitions.get, approvals=approvals)
        return ProxyRuntime(
            book=book, bootstrap=parse_host_port(k.upstream.bootstrap), upstream_ssl=upstream_ssl_context(config),
            upstream_server_name=k.upstream.tls.server_name if k.upstream.tls else None,
            connect_timeout=k.upstream.connect_timeout, max_frame_bytes=k.max_frame_bytes,
            worker_id=self.ctx.worker_id, on_node=self._ensure_node_listener, guard_ctx=guard_ctx,
            identity=identity, audit=audit, upstream_sasl=k.upstream.sasl, version_caps=k.version_caps)

    # ------------------------------------------------------------------------------------------ start
    async def start(self) -> None:
        rt = self.runtime
        if rt.audit is not None:
            await rt.audit.start()
        if rt.identity is not None:
            await rt.identity.refresh()  # a failure is logged; validations retry the fetch
            self.loop.call_later(1.0, self._sweep_expired)
        sock = self.ctx.listeners["kafka"]
        server = await self.loop.create_server(
            lambda: ClientConnection(self.runtime, lambda: self.runtime.bootstrap, "bootstrap"),
            sock=sock, ssl=server_ssl_context(self.config), backlog=1024)
        self.servers.append(server)
        self.loop.add_signal_handler(signal.SIGTERM, self.begin_drain, self.config.server.drain_timeout)
        self.loop.add_signal_handler(signal.SIGINT, self.begin_drain, self.config.server.drain_timeout)
        self.control = ControlChannel(self.ctx.control, self.loop, on_message=self._handle_control,
                                      on_master_gone=lambda: self.begin_drain(self.config.server.drain_timeout))
        self.control.start()
        self.loop.create_task(self._discover_nodes_periodically())

    async def _discover_nodes_periodically(self) -> None:
        """Learn the broker's nodes from the bootstrap broker and bind their ports, at start and every minute.

        Without this, a client that reconnects straight to a node port (from cached metadata) after a worker
        restart, or lands on another replica, would find nothing listening there.
        """
        while not self.draining:
            try:
                for node_id, address in await fetch_broker_nodes(self.runtime):
                    discovered: list[tuple[int, tuple[str, int]]] = []
                    self.runtime.book.learn(node_id, address[0], address[1], discovered)
                    self._ensure_node_listener(node_id, address)
            except (TimeoutError, OSError, EOFError, ssl.SSLError, ValueError) as exc:
                log.warning("broker node discovery from %s:%d failed: %s", *self.runtime.bootstrap, exc)
            await asyncio.sleep(60)

    def _sweep_expired(self) -> None:
        """Close connections whose token expired without re-authentication (checked every second)."""
        if self.done.is_set():
            return
        for conn in list(self.runtime.connections):
            conn.check_expiry()
        self.loop.call_later(1.0, self._sweep_expired)

    def _ensure_node_listener(self, node_id: int, upstream: tuple[str, int]) -> None:
        """Bind node_port_base + node_id in this worker (if not yet) so the rewritten address answers."""
        if node_id in self.node_servers or self.draining:
            return
        host = self.config.kafka.listen_host
        port = self.runtime.book.gateway_port(node_id)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.error("cannot bind node port %s:%d for broker node %d: %s", host, port, node_id, exc)
            return
        book = self.runtime.book

        def target() -> tuple[str, int] | None:
            return book.nodes.get(node_id)

        # Bound and listening now; accepting starts when the loop runs the task (connections wait in backlog).
        self.node_servers[node_id] = None  # type: ignore[assignment]
        task = self.loop.create_task(self.loop.create_server(
            lambda: ClientConnection(self.runtime, target, f"node {node_id}"), sock=sock,
            ssl=server_ssl_context(self.config), backlog=1024))
        task.add_done_callback(lambda t: self._node_server_started(node_id, t))
        log.info("serving broker node %d (%s:%d) at %s:%d", node_id, upstream[0], upstream[1], host, port)

    def _node_server_started(self, node_id: int, task: asyncio.Task[asyncio.AbstractServer]) -> None:
        if task.exception() is not None:
            log.error("node listener for broker node %d failed: %s", node_id, task.exception())
            self.node_servers.pop(node_id, None)
            return
        self.node_servers[node_id] = task.result()
        if self.draining:
            task.result().close()

    # ---------------------------------------------------------------------------------------- control

    def _handle_control(self, message: dict[str, Any]) -> None:
        if message["type"] == RELOAD:
            try:
                new = from_plain(message["config"])
            except Exception as exc:  # validated by the master already; keep serving with the old config
                log.error("reload rejected in worker, keeping the previous config: %s", exc)
                return
            old_kafka = self.config.kafka
            old_identity, old_audit = self.config.identity, self.config.audit
            if (new.kafka.listen, new.kafka.node_port_base, new.kafka.advertised_host, new.kafka.tls) != (
                    old_kafka.listen, old_kafka.node_port_base, old_kafka.advertised_host, old_kafka.tls):
                log.warning("kafka.listen, node_port_base, advertised_host and tls changes need a restart; "
                            "the other changes apply now")
            self.config = new
            rt = self.runtime  # updated in place: live connections keep their sessions, new ones see this
            k = new.kafka
            rt.bootstrap = parse_host_port(k.upstream.bootstrap)
            rt.upstream_ssl = upstream_ssl_context(new)
            rt.upstream_server_name = k.upstream.tls.server_name if k.upstream.tls else None
            rt.connect_timeout = k.upstream.connect_timeout
            rt.max_frame_bytes = k.max_frame_bytes
            rt.upstream_sasl = k.upstream.sasl
            rt.version_caps = k.version_caps
            if rt.guard_ctx is not None and new.identity is not None:
                # policy changes apply to live connections too, at their next request (revocation works)
                rt.guard_ctx.policy = Policy(new.policy.rules)
                rt.guard_ctx.maskers = MaskerRegistry(new.masking)
                rt.guard_ctx.mechanisms = tuple(new.identity.mechanisms)
            elif (rt.guard_ctx is None) != new.passthrough:
                log.warning("switching between passthrough and identity mode needs a restart")
            if new.identity != old_identity or new.audit != old_audit:
                log.warning("identity and audit changes need a restart; the other changes apply now")
            log.info("configuration reloaded; new connections use it")
        elif message["type"] == DRAIN:
            self.begin_drain(float(message.get("timeout", self.config.server.drain_timeout)))

    # ------------------------------------------------------------------------------------------ drain
    def begin_drain(self, timeout: float) -> None:
        if self.draining:
            return
        self.draining = True
        for server in [*self.servers, *(s for s in self.node_servers.values() if s is not None)]:
            server.close()
        log.info("draining: stopped accepting; waiting up to %.1fs for in-flight requests", timeout)
        self.loop.create_task(self._drain(timeout))

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.runtime.draining = True
        while True:
            conns = list(self.runtime.connections)
            for conn in conns:
                conn.runtime.draining = True
                if conn.idle:
                    conn.close("gateway is draining", level=logging.DEBUG)
            busy = [c for c in conns if not c.closing]
            if not busy or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.runtime.connections):
            conn.close("drain timeout reached with requests in flight", level=logging.WARNING)
        if self.runtime.audit is not None:
            await self.runtime.audit.aclose()
        if self.control is not None:
            self.control.stop()
        self.done.set()


async def fetch_broker_nodes(rt: ProxyRuntime) -> list[tuple[int, tuple[str, int]]]:
    """One Metadata v1 request (no topics) to the bootstrap broker: its list of nodes and their addresses."""
    host, port = rt.bootstrap
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        host, port, ssl=rt.upstream_ssl,
        server_hostname=(rt.upstream_server_name or host) if rt.upstream_ssl else None), rt.connect_timeout)
    try:
        request = MetadataRequest(topics=[])
        writer.write(framing.encode_frame([framing.request_header(3, 1, 1, "streamgate-discovery", 1),
                                           codec.encode_request(3, 1, request)]))
        size = framing.read_size(await asyncio.wait_for(reader.readexactly(4), rt.connect_timeout), 0)
        if not 4 <= size <= rt.max_frame_bytes:
            raise ValueError(f"impossible Metadata response length {size}")
        payload = await asyncio.wait_for(reader.readexactly(size), rt.connect_timeout)
        body, _ = codec.decode_response(3, 1, payload, 4)
        return [(b.node_id, (b.host, b.port)) for b in body.brokers]
    finally:
        writer.close()


def run_worker(ctx: WorkerContext) -> int:
    """Worker entry point (called by the supervisor in the forked child)."""
    try:
        config = from_plain(ctx.config)
        configure_logging(config.server.log_format, config.server.log_level, worker_id=ctx.worker_id)
        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        ctx.control.setblocking(False)
        worker = Worker(ctx)
        loop.run_until_complete(worker.start())
    except Exception as exc:
        logging.getLogger("streamgate.worker").error("worker %d failed to boot: %s", ctx.worker_id, exc)
        return BOOT_FAILURE_EXIT_CODE
    log.info("worker %d serving (pid %d)", ctx.worker_id, os.getpid())
    try:
        loop.run_until_complete(worker.done.wait())
        # let transports flush their last writes
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    log.info("worker %d exiting", ctx.worker_id)
    return 0
