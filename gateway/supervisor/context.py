"""What a worker process receives from the master at fork time.

Rule kept here: this is plain data, built by the master just before `os.fork()` and handed to the worker's
entry function in the child. Nothing in it refers back to master state.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class WorkerContext:
    """Everything a worker needs to start serving.

    worker_id:  1..N; a replacement worker gets the id of the worker it replaces (stable metric/log labels).
    generation: how many workers have held this worker_id so far, this one included (1 for the first).
    listeners:  listener name -> bound, listening, non-blocking socket that belongs to this worker alone.
    config:     the newest resolved configuration (JSON-able); later versions arrive as "reload" messages.
    control:    this worker's end of the control channel (blocking; see gateway.supervisor.control).
    """

    worker_id: int
    generation: int
    listeners: dict[str, socket.socket]
    config: dict[str, Any]
    control: socket.socket
