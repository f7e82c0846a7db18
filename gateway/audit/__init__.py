"""The I/O side of the audit trail: sinks, their spool, and the dispatcher a worker emits events through.

The event model, its encoding (with the no-secrets guard) and the hash chain are sans-IO and live in
`gateway.enforcement.audit`; everything here performs file, socket or thread I/O on the worker's event loop.

Using it from a worker::

    dispatcher = AuditDispatcher.from_config(config.audit, worker_id)
    await dispatcher.start()
    if not dispatcher.emit(event):      # a block-mode sink is down, or a spool is full
        refuse the request; dispatcher.record(refusal_event)
    ...
    await dispatcher.aclose()           # delivers or spools what is queued

One chain per worker process: worker N writes `audit.wN.jsonl` (rotated to `.1`...`.K`), and spools under
`<spool.path>/wN/<sink>`; nothing is shared between processes, so no locking on the hot path and every chain
stays verifiable on its own (`verify_files` accepts files, directories and globs).

Durability: what survives `kill -9` of a worker
- File sink (default): events are written with one `write(2)` per event-loop iteration, holding the events
  emitted during the iteration before. Once written they are in the kernel page cache and survive the
  process being killed; at most the events of the iteration in which the kill landed are lost. With
  `write_through: true` each event is written inside `emit()`, i.e. before the request it describes is
  forwarded, so a request is never served without its line in the page cache. Power loss or a kernel crash
  additionally loses what was not fsynced: nothing is fsynced unless `fsync_interval` is set (0 = after
  every write, N = at most N seconds at risk). A write cut short leaves one incomplete line that the next
  writer closes and `verify` reports; the chain continues after it.
- Network sinks (syslog, HTTP, Kafka): events waiting in memory for their batch or for a down sink are lost
  with the process, unless the sink uses `spool` with `write_ahead: true`, in which case every event is on
  disk (page cache) before delivery and the next worker with the same id replays what was not acknowledged
  (at-least-once: a batch delivered but not yet committed is sent again). Spooled events survive kill -9
  in any case; `spool.fsync` extends that to power loss.
- On a clean shutdown (`aclose`), queued events are delivered within `close_timeout`, and what remains is
  written to the spool when the sink has one (logged as lost otherwise).
"""

from gateway.audit.config import (
    AuditConfig,
    FileSinkConfig,
    HttpSinkConfig,
    KafkaSinkConfig,
    SinkConfig,
    SpoolConfig,
    SyslogSinkConfig,
)
from gateway.audit.dispatcher import AuditDispatcher, build_sinks
from gateway.audit.sinks import AuditSink, FileSink, SinkUnavailable
from gateway.audit.spool import Spool
from gateway.audit.verify import format_result, verify_chain, verify_files

__all__ = [
    "AuditConfig",
    "AuditDispatcher",
    "AuditSink",
    "FileSink",
    "FileSinkConfig",
    "HttpSinkConfig",
    "KafkaSinkConfig",
    "SinkConfig",
    "SinkUnavailable",
    "Spool",
    "SpoolConfig",
    "SyslogSinkConfig",
    "build_sinks",
    "format_result",
    "verify_chain",
    "verify_files",
]
