"""Socket I/O for Kafka sessions: one client connection, one upstream connection, one `KafkaSession`.

This is the only place Kafka bytes meet sockets. The protocol decisions are all in
`gateway.protocols.kafka.session`; here we execute its actions, apply TCP back-pressure in both directions
(a slow reader pauses the other side), and log every close that was not a clean client disconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from gateway.enforcement.audit import AuditEvent, ClientInfo, SessionTotals
from gateway.enforcement.audit import Principal as AuditPrincipal
from gateway.protocols.kafka.addresses import AddressBook
from gateway.protocols.kafka.guard import GuardContext, KafkaGuard
from gateway.protocols.kafka.session import (
    AuditRecord,
    AwaitApproval,
    CloseSession,
    KafkaSession,
    MuteClient,
    NodeDiscovered,
    SendToClient,
    SendToUpstream,
    ValidateToken,
)

log = logging.getLogger("streamgate.kafka")
_connection_ids = itertools.count(1)


class ProxyRuntime:
    """What connections of one worker share: the address book, TLS contexts, live connections."""

    def __init__(self, *, book: AddressBook, bootstrap: tuple[str, int], upstream_ssl: ssl.SSLContext | None,
                 upstream_server_name: str | None, connect_timeout: float, max_frame_bytes: int,
                 worker_id: int, on_node: Callable[[int, tuple[str, int]], None],
                 guard_ctx: GuardContext | None = None, identity: Any = None, audit: Any = None,
                 upstream_sasl: Any = None, version_caps: dict[int, int] | None = None) -> None:
        self.book = book
        self.version_caps = version_caps
        self.guard_ctx = guard_ctx  # None: passthrough (no identity, no policy)
        self.identity = identity  # worker.identity_service.IdentityService
        self.audit = audit  # audit.dispatcher.AuditDispatcher
        self.upstream_sasl = upstream_sasl  # config.UpstreamSasl: the gateway's own broker credentials
        self.bootstrap = bootstrap
        self.upstream_ssl = upstream_ssl
        self.upstream_server_name = upstream_server_name
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        self.worker_id = worker_id
        self.on_node = on_node
        self.connections: set[ClientConnection] = set()
        self.draining = False


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, owner: ClientConnection) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner.from_upstream(data)

    def eof_received(self) -> bool | None:
        self.owner.close("the broker closed the connection", level=logging.INFO)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.owner.closing:
            self.owner.close(f"lost the broker connection: {exc or 'closed'}", level=logging.INFO)

    def pause_writing(self) -> None:
        self.owner.client_transport.pause_reading()

    def resume_writing(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.owner.closing and loop.time() >= self.owner.muted_until:
            self.owner.client_transport.resume_reading()


class ClientConnection(asyncio.Protocol):
    """The client side of a session; it opens and owns the upstream connection."""

    def __init__(self, runtime: ProxyRuntime, target: Callable[[], tuple[str, int] | None], listener: str) -> None:
        self.runtime = runtime
        self.target = target
        self.listener = listener
        self.id = next(_connection_ids)
        self.client_transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upstream: asyncio.Transport | None = None
        self.pending_upstream: list[Any] = []
        self.session: KafkaSession | None = None
        self.guard: KafkaGuard | None = None
        self.closing = False
        self.peer = "?"
        self.opened_at = time.monotonic()
        self.muted_until = 0.0

    # ------------------------------------------------------------------------------------------ client
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client_transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        rt = self.runtime
        if rt.guard_ctx is not None:
            self.guard = KafkaGuard(rt.guard_ctx, rt.book.topic_names.get, self.peer,
                                    f"w{rt.worker_id}-c{self.id}")
        upstream_auth = None
        if rt.upstream_sasl is not None:
            from gateway.protocols.kafka.upstream_auth import UpstreamSaslClient

            cred = rt.upstream_sasl
            upstream_auth = UpstreamSaslClient(cred.mechanism, cred.username, cred.password)
        self.session = KafkaSession(rt.book, max_frame_bytes=rt.max_frame_bytes,
                                    client_label=f"{self.peer} (conn {self.id})", guard=self.guard,
                                    upstream_auth=upstream_auth, version_caps=rt.version_caps)
        self._audit_session("session_open")
        self.runtime.connections.add(self)
        self._execute(self.session.start())  # queued ahead of any client bytes
        target = self.target()
        if target is None:
            self.close(f"no broker is known for listener {self.listener}", level=logging.WARNING)
            return
        asyncio.get_running_loop().create_task(self._connect_upstream(target))

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            try:
                self._execute(self.session.client_data(data))
            except Exception:  # a bug must cost this connection, never the worker or anyone else's data
                log.exception("internal error on connection %d from %s", self.id, self.peer)
                self.close("internal error (see the log)", level=logging.ERROR, kind="internal_error")

    def eof_received(self) -> bool | None:
        if self.session is not None:
            truncated = self.session.client_eof()
            if truncated is not None:
                self._execute([truncated])
                return None
        self.close(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.close(None if exc is None else f"client connection lost: {exc}", level=logging.INFO)

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.closing:
            self.upstream.resume_reading()

    # ---------------------------------------------------------------------------------------- upstream
    async def _connect_upstream(self, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        rt = self.runtime
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _UpstreamProtocol(self), target[0], target[1], ssl=rt.upstream_ssl,
                    server_hostname=(rt.upstream_server_name or target[0]) if rt.upstream_ssl else None),
                rt.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.close(f"cannot connect to broker {target[0]}:{target[1]}: {exc or 'timeout'}",
                       level=logging.WARNING)
            return
        if self.closing:
            transport.close()
            return
        self.upstream = transport  # type: ignore[assignment]
        pending, self.pending_upstream = self.pending_upstream, []
        for data in pending:
            transport.write(data)

    def from_upstream(self, data: bytes) -> None:
        if self.session is not None:
            try:
                self._execute(self.session.upstream_data(data))
            except Exception:
                log.exception("internal error on connection %d from %s", self.id, self.peer)
                self.close("internal error (see the log)", level=logging.ERROR, kind="internal_error")

    # ----------------------------------------------------------------------------------------- actions
    def _execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SendToUpstream):
                if self.upstream is None:
                    self.pending_upstream.append(bytes(action.data))
                else:
                    self.upstream.write(action.data)
            elif isinstance(action, SendToClient):
                self.client_transport.write(action.data)
            elif isinstance(action, AuditRecord):
                self._audit(action.event)
            elif isinstance(action, ValidateToken):
                asyncio.get_running_loop().create_task(self._validate(action))
            elif isinstance(action, MuteClient):
                self._mute(action.ms)
            elif isinstance(action, AwaitApproval):
                asyncio.get_running_loop().create_task(self._await_approval(action))
            elif isinstance(action, NodeDiscovered):
                self.runtime.on_node(action.node_id, action.upstream)
            elif isinstance(action, CloseSession):
                self.close(action.reason, level=logging.WARNING, kind=action.kind)
                return
        if self.runtime.draining and self.session is not None and self.session.in_flight == 0:
            self.close("gateway is draining", level=logging.DEBUG)

    def _audit(self, event: AuditEvent) -> None:
        audit = self.runtime.audit
        if audit is None:
            return
        try:  # refusals are recorded even while a blocking sink is down
            if event.decision == "allowed":
                audit.emit(event)
            else:
                audit.record(event)
        except Exception as exc:  # an unencodable event must not stop the session's other actions
            log.error("audit event %s of connection %d could not be recorded: %s", event.kind, self.id, exc)
            audit.record(AuditEvent(kind="audit_event_rejected", connection_id=event.connection_id,
                                    worker=event.worker, protocol="kafka", reason=str(exc)))

    async def _validate(self, action: ValidateToken) -> None:
        identity = self.runtime.identity
        result = await identity.validate(action.credentials.token)
        if not self.closing and self.session is not None:
            self._execute(self.session.token_validated(action.request_id, result))

    async def _await_approval(self, action: AwaitApproval) -> None:
        gate = self.runtime.guard_ctx.approvals if self.runtime.guard_ctx else None
        if gate is not None:
            try:
                await asyncio.gather(*(gate.hold(record, action.hold_s) for record in action.records))
            except Exception as exc:  # the decision is taken again below; a store failure refuses there
                log.warning("waiting for approval on connection %d failed: %s", self.id, exc)
        if not self.closing and self.session is not None:
            self._execute(self.session.approval_resolved(action.request_id))

    def _mute(self, ms: int) -> None:
        """Throttle: stop reading this client for `ms` (responses already queued still go out)."""
        loop = asyncio.get_running_loop()
        self.muted_until = max(self.muted_until, loop.time() + ms / 1000)
        self.client_transport.pause_reading()
        loop.call_at(self.muted_until, self._unmute)

    def _unmute(self) -> None:
        if self.closing or asyncio.get_running_loop().time() < self.muted_until - 0.001:
            return
        if self.upstream is None or not self.upstream.is_closing():
            self.client_transport.resume_reading()

    def check_expiry(self) -> None:
        if self.session is not None and not self.closing:
            self._execute(self.session.check_expiry())

    def _audit_session(self, kind: str, reason: str | None = None, close_kind: str | None = None) -> None:
        if self.runtime.audit is None:
            return
        principal = self.guard.principal if self.guard else None
        totals = None
        if kind == "session_close" and self.session is not None:
            st = self.session.stats
            gs = self.guard.stats if self.guard else None
            totals = SessionTotals(requests=st.requests, bytes_in=st.bytes_from_client,
                                   bytes_out=st.bytes_from_upstream,
                                   records_in=gs.records_in if gs else 0, records_out=gs.records_out if gs else 0,
                                   duration_ms=int((time.monotonic() - self.opened_at) * 1000),
                                   denied=gs.denied if gs else 0)
        self._audit(AuditEvent(
            kind=kind, protocol="kafka", worker=self.runtime.worker_id, connection_id=f"w{self.runtime.worker_id}-c{self.id}",
            principal=AuditPrincipal(sub=principal.sub, email=principal.email, groups=principal.groups)
            if principal else None,
            client=ClientInfo(address=self.peer, client_id=self.session.client_id if self.session else None),
            reason=reason, totals=totals, details={"listener": self.listener, **({"close": close_kind}
                                                                              if close_kind else {})}))

    def close(self, reason: str | None, level: int = logging.INFO, kind: str | None = None) -> None:
        if self.closing:
            return
        self.closing = True
        self._audit_session("session_close", reason, kind)
        if reason:
            log.log(level, "closing connection %d from %s: %s", self.id, self.peer, reason,
                    extra={"conn": self.id, "client": self.peer, "close_kind": kind or "info",
                           "client_id": self.session.client_id if self.session else None})
        self.runtime.connections.discard(self)
        if self.upstream is not None:
            self.upstream.close()
        if self.client_transport is not None:
            self.client_transport.close()

    @property
    def idle(self) -> bool:
        return self.session is None or self.session.in_flight == 0
