"""The audit entry point a worker uses: stamps, encodes and fans events out to every configured sink.

Rules kept here:
- `emit(event) -> bool` is synchronous and cheap: one set-emptiness check, then encode (which enforces the
  no-secrets guard) and append. It returns False, and records nothing, when any sink is `blocking` (a
  `block`-mode sink is down or backed up, or a `spool`-mode sink's spool is full): the caller must then
  refuse the request, and may describe the refusal with `record()`.
- `record(event)` is for events that do not gate a request (refusals, session close, internal notices): it
  is always accepted and delivered to every sink that can take it.
- Events are handed to sinks once per event-loop iteration (`call_soon`), as one batch; sinks marked
  `immediate` (a file sink with `write_through`) get each event inside `emit()`.
- Sink state changes are themselves audited (`audit_sink_state`, `audit_spool_overflow`), so a gap in one
  sink is visible in the others.

Multiple worker processes: each worker builds its own dispatcher with its worker id; file chains and spool
directories are per worker (see chainfiles.py), so no two processes ever append to the same file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.audit.config import (
    AuditConfig,
    FileSinkConfig,
    HttpSinkConfig,
    KafkaSinkConfig,
    SinkConfigBase,
    SyslogSinkConfig,
    sink_name,
)
from gateway.audit.sinks import AuditSink, FileSink, SinkOptions
from gateway.audit.spool import Spool
from gateway.enforcement.audit import (
    KIND_SINK_STATE,
    KIND_SPOOL_OVERFLOW,
    AuditEvent,
    DetailValue,
    encode_event,
    rfc3339_ms,
)

log = logging.getLogger("streamgate.audit")


class AuditDispatcher:
    """Fan-out of audit events to sinks, on the worker's event loop. See the module docstring."""

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        worker_id: int | str,
        *,
        clock: Callable[[], float] = time.time,
        close_timeout: float = 5.0,
    ) -> None:
        self.sinks = list(sinks)
        self.worker_id = worker_id
        self.close_timeout = close_timeout
        self._clock = clock
        self._immediate = [s for s in self.sinks if s.immediate]
        self._batched = [s for s in self.sinks if not s.immediate]
        self._blocked: set[str] = set()
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.emitted = 0
        self.refused = 0

    @classmethod
    def from_config(
        cls, config: AuditConfig, worker_id: int | str, *, clock: Callable[[], float] = time.time
    ) -> AuditDispatcher:
        return cls(
            build_sinks(config, worker_id, clock=clock),
            worker_id,
            clock=clock,
            close_timeout=config.close_timeout,
        )

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every sink (a sink that is down at start is not an error: it blocks or spools)."""
        self._loop = asyncio.get_running_loop()
        for sink in self.sinks:
            sink.bind(self)
        for sink in self.sinks:
            await sink.start()
        self._blocked = {s.name for s in self.sinks if s.blocking}

    async def aclose(self) -> None:
        """Hand over pending events, then let each sink deliver (or spool) what it holds."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        await asyncio.gather(*(sink.aclose(self.close_timeout) for sink in self.sinks))

    # -- the hot path --------------------------------------------------------------------------------------

    def available(self) -> bool:
        """False while some sink refuses new gated events: the request must be refused."""
        return not self._blocked and not self._closed

    def emit(self, event: AuditEvent) -> bool:
        """Record the event of a request about to be served; False: not recorded, refuse the request."""
        if self._blocked or self._closed:
            self.refused += 1
            return False
        self._enqueue(event)
        return True

    def record(self, event: AuditEvent) -> None:
        """Record an event that does not gate a request (refusal, session close, notices)."""
        if self._closed:
            log.error("audit event %r recorded after the dispatcher closed; not delivered", event.kind)
            return
        self._enqueue(event)

    def _enqueue(self, event: AuditEvent) -> None:
        if not event.ts:
            event.ts = rfc3339_ms(self._clock())
        if event.worker is None:
            event.worker = self.worker_id
        data = encode_event(event)
        self.emitted += 1
        for sink in self._immediate:
            sink.accept((data,))
        if not self._batched:
            return
        self._pending.append(data)
        if not self._flush_scheduled:
            if self._loop is None:
                raise RuntimeError("AuditDispatcher.start() must be awaited before events are emitted")
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        for sink in self._batched:
            try:
                sink.accept(batch)
            except Exception:  # one broken sink must not starve the others
                log.exception("audit sink %s failed to accept events", sink.name)

    # -- SinkListener --------------------------------------------------------------------------------------

    def sink_state_changed(self, sink: AuditSink, reason: str) -> None:
        was_blocked = sink.name in self._blocked
        if sink.blocking:
            self._blocked.add(sink.name)
        else:
            self._blocked.discard(sink.name)
        if self._closed or self._loop is None:
            return
        details: dict[str, DetailValue] = {
            "sink": sink.name,
            "sink_type": sink.type_name,
            "healthy": sink.healthy,
            "blocking": sink.blocking,
            "on_failure": sink.on_failure,
            "reason": reason or None,
        }
        if sink.blocking and not was_blocked and sink.on_failure == "spool":
            spool = sink.spool
            self.record(
                AuditEvent(
                    kind=KIND_SPOOL_OVERFLOW,
                    reason="spool full: requests are refused",
                    details={
                        **details,
                        "spool_bytes": spool.disk_bytes if spool else 0,
                        "spool_max_bytes": spool.max_bytes if spool else 0,
                    },
                )
            )
        else:
            self.record(AuditEvent(kind=KIND_SINK_STATE, details=details))

    def internal_event(self, kind: str, details: dict[str, DetailValue]) -> bytes:
        return encode_event(
            AuditEvent(ts=rfc3339_ms(self._clock()), kind=kind, worker=self.worker_id, details=details)
        )

    # -- introspection -------------------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        return {
            "emitted": self.emitted,
            "refused": self.refused,
            "blocked_by": sorted(self._blocked),
            "sinks": {sink.name: sink.stats() for sink in self.sinks},
        }


def build_sinks(
    config: AuditConfig, worker_id: int | str, *, clock: Callable[[], float] = time.time
) -> list[AuditSink]:
    """Instantiate the configured sinks for one worker (spools under `<spool.path>/w<worker>/<sink name>`)."""
    sinks: list[AuditSink] = []
    hostname = socket.gethostname()
    for index, cfg in enumerate(config.sinks):
        name = sink_name(cfg, index)
        common = _common_options(cfg, name, worker_id)
        if isinstance(cfg, SyslogSinkConfig | HttpSinkConfig | KafkaSinkConfig):
            common["batch_size"] = cfg.batch_size
        if isinstance(cfg, HttpSinkConfig):
            common["flush_interval"] = cfg.flush_interval
        if isinstance(cfg, FileSinkConfig):
            sinks.append(
                FileSink(
                    name,
                    cfg.path,
                    worker_id,
                    max_bytes=cfg.max_bytes,
                    backups=cfg.backups,
                    write_through=cfg.write_through,
                    fsync_interval=cfg.fsync_interval,
                    clock=clock,
                    **common,
                )
            )
        elif isinstance(cfg, SyslogSinkConfig):
            from gateway.audit.syslog import SyslogSink

            sinks.append(
                SyslogSink(
                    name,
                    cfg.address,
                    protocol=cfg.protocol,
                    facility=cfg.facility_code,
                    app_name=cfg.app_name,
                    hostname=cfg.hostname or hostname,
                    procid=str(os.getpid()),
                    sd_id=cfg.sd_id,
                    utf8_bom=cfg.utf8_bom,
                    tls_ca=cfg.tls_ca,
                    tls_verify=cfg.tls_verify,
                    connect_timeout=cfg.connect_timeout,
                    **common,
                )
            )
        elif isinstance(cfg, HttpSinkConfig):
            from gateway.audit.http import HttpSink

            sinks.append(
                HttpSink(
                    name,
                    cfg.url,
                    fmt=cfg.format,
                    token=cfg.token,
                    timeout=cfg.timeout,
                    sourcetype=cfg.sourcetype,
                    source=cfg.source,
                    index=cfg.index,
                    hostname=hostname,
                    tls_ca=cfg.tls_ca,
                    tls_verify=cfg.tls_verify,
                    **common,
                )
            )
        elif isinstance(cfg, KafkaSinkConfig):
            from gateway.audit.kafka import KafkaSink

            sinks.append(
                KafkaSink(
                    name,
                    cfg.bootstrap,
                    cfg.topic,
                    worker_id=worker_id,
                    client_id=cfg.client_id,
                    delivery_timeout=cfg.delivery_timeout,
                    idempotent=cfg.idempotent,
                    librdkafka=dict(cfg.options),
                    **common,
                )
            )
        else:  # pragma: no cover - the config union is closed
            raise TypeError(f"unknown sink config {type(cfg).__name__}")
    return sinks


def _common_options(cfg: SinkConfigBase, name: str, worker_id: int | str) -> SinkOptions:
    spool = None
    if cfg.spool is not None:
        spool = Spool(
            Path(cfg.spool.path) / f"w{worker_id}" / name,
            cfg.spool.max_bytes,
            cfg.spool.segment_bytes,
            fsync=cfg.spool.fsync,
        )
    return {
        "on_failure": cfg.on_failure,
        "spool": spool,
        "write_ahead": bool(cfg.spool and cfg.spool.write_ahead),
        "queue_max": cfg.queue_max,
        "retry_initial": cfg.retry_initial,
        "retry_max": cfg.retry_max,
    }
