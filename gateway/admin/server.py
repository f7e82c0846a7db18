"""The admin process: an asyncio HTTP/1.1 server for the approvals API and reviewer page, plus its chores.

Started by the supervisor as an auxiliary singleton (`run_admin(ctx)`, listener "admin"), like a worker:
it sends {"type": "ready"} once serving, a heartbeat every HEARTBEAT_INTERVAL seconds, applies "reload"
messages and drains on "drain", SIGTERM or end-of-file on the control socket.

Besides serving HTTP it runs two background chores:
* the **sweeper** (every `admin.sweep_interval`): marks pending requests older than `admin.pending_ttl` and
  grants past their TTL as expired and audits each (`approval_expired`); prunes records and store events older
  than `admin.retention` once an hour. Grants stop working at their expiry time whether or not the sweeper
  ran: workers compare the expiry with the clock.
* the **event pump** (every 250 ms, only when `admin.webhook` is set): claims new store events (requests filed
  by any worker, decisions made by any admin process) and queues one webhook message per event.

Rules kept here: the server never blocks on the webhook; connections are bounded in number, head size, body
size and idle time; the Authorization header is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from gateway.admin.api import AdminApi
from gateway.admin.config import AdminConfig, admin_config_from_plain, approval_store_path
from gateway.admin.http import (
    HttpError,
    Request,
    Response,
    body_length,
    continue_line,
    parse_head,
    render,
)
from gateway.admin.webhook import WebhookSender
from gateway.enforcement.identity import Principal, TokenError
from gateway.logsetup import configure_logging
from gateway.store.approvals_base import ApprovalStore, StoreError, open_approval_store
from gateway.supervisor.context import WorkerContext
from gateway.supervisor.control import (
    BOOT_FAILURE_EXIT_CODE,
    DRAIN,
    RELOAD,
)
from gateway.worker.control_channel import ControlChannel

log = logging.getLogger("streamgate.admin")

LISTENER_NAME: Final = "admin"
WEBHOOK_CONSUMER: Final = "webhook"
EVENT_PUMP_INTERVAL_S: Final = 0.25
PRUNE_INTERVAL_S: Final = 3600.0
MAX_CONNECTIONS: Final = 256
IDLE_TIMEOUT_S: Final = 60.0  # a keep-alive connection, or a client sending its head too slowly
BODY_TIMEOUT_S: Final = 10.0


class HttpServer:
    """Serves `handler` on a listening socket with HTTP/1.1 keep-alive, within fixed limits."""

    def __init__(
        self,
        handler: Callable[[Request], Awaitable[Response]],
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._idle: set[asyncio.StreamWriter] = set()
        self._closing = False
        self.requests = 0

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=16 * 1024 + 4)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop accepting and close idle connections; busy ones close after their response."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._idle):
            writer.close()

    async def wait_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for writer in list(self._connections):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or len(self._connections) >= self.max_connections:
            writer.write(render(Response.error(503, "too many connections"), keep_alive=False))
            writer.close()
            return
        self._connections.add(writer)
        try:
            while not self._closing:
                self._idle.add(writer)
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout_s)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    return  # the client went away or idled out between requests
                except asyncio.LimitOverrunError:
                    writer.write(render(Response.error(431, "request head too large"), keep_alive=False))
                    return
                finally:
                    self._idle.discard(writer)
                keep_alive = await self._one_request(head, reader, writer)
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _one_request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        started = time.monotonic()
        try:
            request = parse_head(head)
            length = body_length(request)
            if length:
                if request.headers.get("expect", "").lower() == "100-continue":
                    writer.write(continue_line())
                request.body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT_S)
        except HttpError as exc:
            writer.write(render(Response.error(exc.status, str(exc), exc.headers), keep_alive=False))
            return False
        except (asyncio.IncompleteReadError, TimeoutError):
            writer.write(render(Response.error(408, "incomplete request body"), keep_alive=False))
            return False
        self.requests += 1
        try:
            response = await self.handler(request)
        except Exception:
            log.exception("admin request %s %s failed", request.method, request.path[:100])
            response = Response.error(500, "internal error (see the gateway log)")
        keep_alive = request.keep_alive and not self._closing
        writer.write(render(response, keep_alive=keep_alive, head_only=request.method == "HEAD"))
        log.debug(
            "%s %s -> %d in %.1f ms",
            request.method,
            request.path[:200],
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return keep_alive


def oidc_authenticator(config: dict[str, Any]) -> tuple[Callable[[str], Awaitable[Principal]], Any] | None:
    """A bearer-token validator for the configured `identity.oidc` (reviewers' IdP), or None without one.

    Returns (authenticate, identity service); the service's `refresh()` loads the signing keys.
    """
    identity = config.get("identity") or {}
    if not identity.get("oidc"):
        return None
    from gateway.config import OidcConfig
    from gateway.worker.identity_service import IdentityService

    service = IdentityService(msgspec.convert(identity["oidc"], OidcConfig))

    async def authenticate(token: str) -> Principal:
        result = await service.validate(token)
        if isinstance(result, TokenError):
            raise result
        return result

    return authenticate, service


class AdminProcess:
    """Everything the admin process runs; `start()` on the loop, then wait for `done`."""

    def __init__(self, ctx: WorkerContext, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.loop = asyncio.get_event_loop()
        self.config: AdminConfig = admin_config_from_plain(ctx.config)
        self.drain_timeout = float((ctx.config.get("server") or {}).get("drain_timeout", 30.0))
        state_dir = (ctx.config.get("server") or {}).get("state_dir")
        self.store: ApprovalStore = open_approval_store(
            self.config.store.type,
            approval_store_path(self.config, state_dir),
            busy_timeout_s=self.config.store.busy_timeout,
        )
        auth = oidc_authenticator(ctx.config)
        self.identity = auth[1] if auth else None
        self.audit = self._make_audit(ctx.config)
        self.api = AdminApi(
            self.store, auth[0] if auth else None, clock=clock, audit=self.audit, readiness=self.readiness
        )
        self.server = HttpServer(self.api.handle)
        self.webhook = self._make_webhook(self.config)
        self.control: ControlChannel | None = None
        self.done = asyncio.Event()
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_prune = 0.0
        self._pumped_version = -1

    @staticmethod
    def _make_audit(config: dict[str, Any]) -> Any:
        audit_section = config.get("audit") or {}
        if not audit_section.get("sinks"):
            return None
        from gateway.audit.config import AuditConfig
        from gateway.audit.dispatcher import AuditDispatcher

        return AuditDispatcher.from_config(msgspec.convert(audit_section, AuditConfig), "admin")

    def _make_webhook(self, config: AdminConfig) -> WebhookSender | None:
        if config.webhook is None:
            return None
        return WebhookSender(config.webhook, config.public_url)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.audit is not None:
            await self.audit.start()
        if self.identity is not None:
            await self.identity.refresh()  # a failure is logged; validations retry the fetch
        else:
            log.warning("no identity.oidc configured: the approvals API answers 503 until one is")
        await self.server.start(self.ctx.listeners[LISTENER_NAME])
        if self.webhook is not None:
            self.store.claim_events(WEBHOOK_CONSUMER, 0)  # registers the consumer: history is not replayed
            self.webhook.start()
        self.loop.add_signal_handler(signal.SIGTERM, self.begin_drain, self.drain_timeout)
        self.loop.add_signal_handler(signal.SIGINT, self.begin_drain, self.drain_timeout)
        self.control = ControlChannel(self.ctx.control, self.loop, on_message=self._handle_control,
                                      on_master_gone=lambda: self.begin_drain(self.drain_timeout))
        self.control.start()
        self._tasks.append(self.loop.create_task(self._sweep_periodically()))
        self._tasks.append(self.loop.create_task(self._pump_events()))
        host, port = self.server.address
        log.info("admin API and reviewer page on http://%s:%d/", host, port)

    def readiness(self) -> list[str]:
        problems = []
        try:
            self.store.version()
        except StoreError as exc:
            problems.append(f"approval store: {exc}")
        if self.identity is None:
            problems.append("no identity provider configured")
        elif self.identity.keys.validator.status().fetched_at is None:
            problems.append("identity provider signing keys not loaded yet")
        if self.audit is not None and not self.audit.available():
            problems.append("an audit sink cannot take events")
        if self.draining:
            problems.append("draining")
        return problems

    # -- chores ----------------------------------------------------------------------------------------

    async def _sweep_periodically(self) -> None:
        while not self.draining:
            self.sweep()
            await asyncio.sleep(self.config.sweep_interval_s)

    def sweep(self) -> None:
        now = self.clock()
        try:
            expired = self.store.expire_pending(now, self.config.pending_ttl_s)
            expired += self.store.expire_grants(now)
            self.api.audit_expired(expired)
            if now - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune = now
                pruned = self.store.prune(now - self.config.retention_s)
                if pruned:
                    log.info(
                        "pruned %d decided approval request(s) older than %s", pruned, self.config.retention
                    )
        except StoreError as exc:
            log.warning("approval sweep failed: %s", exc)

    async def _pump_events(self) -> None:
        while not self.draining:
            if self.webhook is not None:
                try:
                    version = self.store.version()
                    if version != self._pumped_version:
                        events = self.store.claim_events(WEBHOOK_CONSUMER, 100)
                        for event in events:
                            self.webhook.enqueue(event)
                        if len(events) < 100:
                            self._pumped_version = version
                except StoreError as exc:
                    log.warning("reading approval events for the webhook failed: %s", exc)
            await asyncio.sleep(EVENT_PUMP_INTERVAL_S)

    # -- control channel -------------------------------------------------------------------------------


    def _handle_control(self, message: dict[str, Any]) -> None:
        if message["type"] == RELOAD:
            self.reload(message.get("config") or {})
        elif message["type"] == DRAIN:
            self.begin_drain(float(message.get("timeout", self.drain_timeout)))

    def reload(self, plain: dict[str, Any]) -> None:
        try:
            new = admin_config_from_plain(plain)
        except ValueError as exc:
            log.error("reload rejected by the admin process, keeping the previous config: %s", exc)
            return
        old = self.config
        if (
            (new.listen, new.store) != (old.listen, old.store)
            or plain.get("identity") != self.ctx.config.get("identity")
            or plain.get("audit") != self.ctx.config.get("audit")
        ):
            log.warning(
                "admin.listen, admin.store, identity and audit changes need a restart; "
                "the other changes apply now"
            )
        self.config = new
        self.drain_timeout = float((plain.get("server") or {}).get("drain_timeout", self.drain_timeout))
        if new.webhook is None:
            if self.webhook is not None:
                self.loop.create_task(self.webhook.aclose(self.drain_timeout))
                self.webhook = None
        elif self.webhook is None:
            self.webhook = self._make_webhook(new)
            assert self.webhook is not None
            self.store.claim_events(WEBHOOK_CONSUMER, 0)
            self.webhook.start()
        else:
            self.webhook.reconfigure(new.webhook, new.public_url)
        log.info("admin configuration reloaded")

    # -- drain -----------------------------------------------------------------------------------------

    def begin_drain(self, timeout: float) -> None:
        if self.draining:
            return
        self.draining = True
        self.server.close()
        log.info("admin process draining (up to %.1fs)", timeout)
        self.loop.create_task(self._drain(timeout))

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        await self.server.wait_closed(timeout)
        for task in self._tasks:
            task.cancel()
        if self.webhook is not None:
            await self.webhook.aclose(max(0.0, min(5.0, deadline - time.monotonic())))
        if self.audit is not None:
            await self.audit.aclose()
        self.store.close()
        if self.control is not None:
            self.control.stop()
        self.done.set()


def run_admin(ctx: WorkerContext) -> int:
    """Admin process entry point (the supervisor calls it in the forked child, listener "admin")."""
    try:
        server_section = ctx.config.get("server") or {}
        configure_logging(
            server_section.get("log_format", "text"),
            server_section.get("log_level", "info"),
            worker_id=ctx.worker_id,
        )
        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        ctx.control.setblocking(False)
        process = AdminProcess(ctx)
        loop.run_until_complete(process.start())
    except Exception as exc:
        log.error("admin process failed to boot: %s", exc)
        return BOOT_FAILURE_EXIT_CODE
    log.info("admin process serving (pid %d)", os.getpid())
    try:
        loop.run_until_complete(process.done.wait())
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    log.info("admin process exiting")
    return 0
