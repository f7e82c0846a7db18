"""A child process's end of the master's control channel, on an asyncio loop (workers and the admin process).

It announces readiness, sends heartbeats every HEARTBEAT_INTERVAL seconds until stopped, and hands each
message from the master to `on_message`; end-of-file (the master is gone) calls `on_master_gone`. The message
format is gateway.supervisor.control's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from gateway.supervisor.control import HEARTBEAT_INTERVAL, ControlProtocolError, ControlReader, encode_message

log = logging.getLogger("streamgate.control")


class ControlChannel:
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, *,
                 on_message: Callable[[dict[str, Any]], None], on_master_gone: Callable[[], None]) -> None:
        self.sock = sock
        self.loop = loop
        self.on_message = on_message
        self.on_master_gone = on_master_gone
        self.reader = ControlReader()
        self.stopped = False

    def start(self) -> None:
        """Listen for the master's messages, report ready, start the heartbeats."""
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.send({"type": "ready"})
        self._heartbeat()

    def stop(self) -> None:
        self.stopped = True

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(encode_message(message))

    def _heartbeat(self) -> None:
        if self.stopped:
            return
        self.send({"type": "heartbeat"})
        self.loop.call_later(HEARTBEAT_INTERVAL, self._heartbeat)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.sock.fileno())
            self.on_master_gone()
            return
        try:
            for message in self.reader.feed(data):
                self.on_message(message)
        except ControlProtocolError as exc:
            log.error("bad control message from the master: %s", exc)
