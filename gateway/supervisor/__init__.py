"""Prefork supervisor: the master process that owns the listening sockets and keeps N workers running.

Stdlib only and free of protocol code, so it stays small and cannot be broken by a bug in the data path.
See `master.py` for the process rules, `control.py` for the master<->worker channel, `context.py` for what a
worker receives.
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
