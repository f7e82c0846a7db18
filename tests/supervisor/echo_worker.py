"""A tiny stdlib worker for the supervisor tests: a plain asyncio line server that keeps the worker contract.

Lines on the "echo" listener:
    whoami          -> JSON {"pid", "worker_id", "incarnation", "generation"} ("generation" from the current config)
    slow <seconds>  -> "done" after that many seconds (an in-flight request for drain tests)
    anything else   -> the same line back

Contract kept: "ready" once accepting, heartbeats every `heartbeat_interval` (config, default 2 s), reload
messages swap the config, and drain (message, SIGTERM or end of file on the control socket) stops accepting
at once, closes idle connections, lets busy ones finish their request, and returns 0.

Config knobs for failure tests: "boot_fail": true exits with BOOT_FAILURE_EXIT_CODE before "ready";
"silent_worker_ids": [ids] makes those workers send no heartbeats; "stuck_drain": true makes a drain wait
for busy connections past its timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from typing import Any

from gateway.supervisor import BOOT_FAILURE_EXIT_CODE, HEARTBEAT_INTERVAL, ControlReader, WorkerContext
from gateway.supervisor.control import ControlProtocolError, encode_message

logger = logging.getLogger("tests.echo_worker")


class EchoWorker:
    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._config: dict[str, Any] = context.config
        self._control_reader = ControlReader()
        self._stop_requested = asyncio.Event()
        self._drain_timeout = 30.0
        self._busy: dict[asyncio.StreamWriter, bool] = {}  # open connection -> request in progress
        self._handlers: set[asyncio.Task[None]] = set()
        self._draining = False

    async def serve(self) -> int:
        context = self._context
        if self._config.get("boot_fail"):
            logger.error("echo worker refuses to boot", extra={"event": "echo_boot_fail"})
            return BOOT_FAILURE_EXIT_CODE
        loop = asyncio.get_running_loop()
        context.control.setblocking(False)
        loop.add_reader(context.control.fileno(), self._on_control_readable)
        loop.add_signal_handler(signal.SIGTERM, self._stop_requested.set)
        server = await asyncio.start_server(self._handle_connection, sock=context.listeners["echo"])
        await self._send({"type": "ready"})
        heartbeats = asyncio.create_task(self._send_heartbeats())

        await self._stop_requested.wait()
        self._draining = True
        # Already draining: a later SIGTERM (the master sends one with the drain message) must neither kill us
        # nor race asyncio's teardown of its signal wakeup pipe.
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logger.info("echo worker draining", extra={"event": "echo_draining", "worker_id": context.worker_id})
        server.close()  # stop accepting at once
        for writer, busy in list(self._busy.items()):
            if not busy:
                writer.close()
        if self._handlers:
            # "stuck_drain" plays a worker that overruns its drain timeout, for the master's SIGKILL deadline.
            timeout = None if self._config.get("stuck_drain") else self._drain_timeout
            await asyncio.wait(self._handlers, timeout=timeout)
        heartbeats.cancel()
        loop.remove_reader(context.control.fileno())
        logger.info("echo worker stopped", extra={"event": "echo_stopped", "worker_id": context.worker_id})
        return 0

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._busy[writer] = False
        try:
            while not self._draining:
                line = await reader.readline()
                if not line:
                    break
                self._busy[writer] = True
                writer.write(await self._answer(line.decode().strip()) + b"\n")
                await writer.drain()
                self._busy[writer] = False
        except ConnectionError:
            pass
        finally:
            self._busy.pop(writer, None)
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, request: str) -> bytes:
        if request == "whoami":
            identity = {
                "pid": os.getpid(),
                "worker_id": self._context.worker_id,
                "incarnation": self._context.generation,
                "generation": self._config.get("generation"),
            }
            return json.dumps(identity).encode()
        if request.startswith("slow "):
            seconds = float(request.split()[1])
            logger.info("slow request started", extra={"event": "echo_slow_started", "seconds": seconds})
            await asyncio.sleep(seconds)
            return b"done"
        return request.encode()

    async def _send_heartbeats(self) -> None:
        if self._context.worker_id in self._config.get("silent_worker_ids", []):
            return
        interval = float(self._config.get("heartbeat_interval", HEARTBEAT_INTERVAL))
        while True:
            await asyncio.sleep(interval)
            await self._send({"type": "heartbeat"})

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(self._context.control, encode_message(message))
        except OSError:
            self._stop_requested.set()  # the master is gone

    def _on_control_readable(self) -> None:
        try:
            data = self._context.control.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # End of file: the master is gone, so nobody will replace or supervise us. Drain and exit.
            asyncio.get_running_loop().remove_reader(self._context.control.fileno())
            self._stop_requested.set()
            return
        try:
            for message in self._control_reader.feed(data):
                self._on_control_message(message)
        except ControlProtocolError as error:
            logger.error("bad control message: %s", error)

    def _on_control_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "reload":
            self._config = message["config"]
            logger.info(
                "echo worker applied a new config",
                extra={"event": "echo_reload_applied", "worker_id": self._context.worker_id},
            )
        elif message["type"] == "drain":
            self._drain_timeout = float(message["timeout"])
            self._stop_requested.set()


def main(context: WorkerContext) -> int:
    return asyncio.run(EchoWorker(context).serve())
