"""Prefork supervisor: the master process that owns the listening sockets and keeps N workers running.

Stdlib only and free of protocol code, so it stays small and cannot be broken by a bug in the data path.
`master.py` holds the process rules, `control.py` the master<->worker channel, `context.py` what a worker
receives, `listeners.py` the per-worker SO_REUSEPORT sockets.

The worker contract (what `worker_entry`, called as `function(ctx: WorkerContext) -> int`, must do):
- It runs in a forked child with default signal dispositions, except SIGINT and SIGHUP, which are ignored
  (the terminal sends them to the whole process group; the master turns them into a drain and a reload).
- `ctx.listeners` are bound, listening, non-blocking sockets of its own; `ctx.control` is blocking (an
  asyncio worker calls setblocking(False) and watches it with loop.add_reader).
- Send {"type": "ready"} once accepting, then {"type": "heartbeat"} every HEARTBEAT_INTERVAL seconds; a
  worker silent for the master's heartbeat_timeout is SIGKILLed and replaced.
- {"type": "reload", "config": {...}}: use the new config for new work.
- {"type": "drain", "timeout": S}, SIGTERM (the master sends both), or end of file on `ctx.control` (the
  master is gone): close the listening sockets at once, finish in-flight requests, return 0 within S
  seconds. Once draining, ignore further SIGTERMs.
- Cannot start (bad config, missing dependency)? Return BOOT_FAILURE_EXIT_CODE before sending "ready".
  An entry point that cannot be imported counts the same; an exception escaping the entry point is exit 1.
"""

from gateway.supervisor.context import WorkerContext
from gateway.supervisor.control import (
    BOOT_FAILURE_EXIT_CODE,
    HEARTBEAT_INTERVAL,
    ControlProtocolError,
    ControlReader,
    encode_message,
)
from gateway.supervisor.listeners import ListenerSpec
from gateway.supervisor.master import Supervisor

__all__ = [
    "BOOT_FAILURE_EXIT_CODE",
    "HEARTBEAT_INTERVAL",
    "ControlProtocolError",
    "ControlReader",
    "ListenerSpec",
    "Supervisor",
    "WorkerContext",
    "encode_message",
]
