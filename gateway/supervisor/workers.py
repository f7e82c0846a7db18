"""The master's view of one worker process and of one worker slot.

Rule kept here: the master never blocks on a worker. Its end of every control channel is non-blocking;
outgoing messages wait in an outbox until the socket can take them, and reading returns whatever complete
messages have arrived.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.supervisor.backoff import RestartBackoff
from gateway.supervisor.control import ControlProtocolError, ControlReader, encode_message


@dataclass(eq=False)
class WorkerSlot:
    """A worker_id's lasting state: its listening sockets and crash history outlive each worker process."""

    sockets: dict[str, socket.socket]
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    generation: int = 0
    restart_at: float = 0.0
    entry: str | None = None  # an auxiliary process's own entry point (None: the worker entry)


@dataclass(eq=False)
class WorkerProcess:
    pid: int
    worker_id: int
    generation: int
    control: socket.socket | None
    started_at: float
    last_seen: float
    ready: bool = False
    drain_deadline: float | None = None  # set once told to drain; a draining worker is never replaced
    killed: bool = False
    reader: ControlReader = field(default_factory=ControlReader)
    outbox: bytearray = field(default_factory=bytearray)

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass  # already gone; the next reap will notice

    def queue(self, message: dict[str, Any]) -> None:
        if self.control is not None:
            self.outbox += encode_message(message)

    def flush(self) -> bool:
        """Send what the socket takes now. False if the channel broke (the caller then closes it)."""
        if self.control is None:
            return False
        try:
            while self.outbox:
                del self.outbox[: self.control.send(self.outbox)]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def receive(self) -> tuple[list[dict[str, Any]], list[str]] | None:
        """Messages (and protocol errors) that arrived; None at end of file (worker closed or died)."""
        if self.control is None:
            return None
        try:
            data = self.control.recv(65536)
        except BlockingIOError:
            return [], []
        except OSError:
            return None
        if not data:
            return None
        self.last_seen = time.monotonic()
        messages: list[dict[str, Any]] = []
        errors: list[str] = []
        while True:
            try:
                messages.extend(self.reader.feed(data))
                return messages, errors
            except ControlProtocolError as error:
                errors.append(str(error))
                data = b""  # the bad line is dropped; go on with whatever follows it

    def close_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
            self.outbox.clear()
