"""The prefork master: binds the listeners, forks workers, keeps their number right, relays reloads and stops.

Rules kept here:
- Signal handlers only queue the signal number; the main loop dispatches it to a `_handle_<name>` method.
  A wakeup pipe (`signal.set_wakeup_fd`) makes the selector return as soon as a signal arrives.
- One pass of the loop: top the pool up, wait (selector: wakeup pipe + every worker's control socket),
  enforce deadlines (heartbeats, drain timeouts), dispatch signals, reap exited workers.
- Only our own worker pids are waited for, never `waitpid(-1)`, so children that `load_config` may start
  (a secrets helper, say) keep their exit statuses.
- A crashed worker is replaced under the same worker_id after an exponential backoff. Workers that exit with
  BOOT_FAILURE_EXIT_CODE before "ready", MAX_BOOT_FAILURES times in a row, stop the master with that code
  instead of crash-looping.
- SIGTERM/SIGINT drain: every worker gets {"type": "drain"} and SIGTERM, stragglers get SIGKILL after
  drain_timeout + KILL_GRACE, and run() returns 0. A second SIGTERM/SIGINT during the drain kills all workers
  at once and run() returns 1 (non-zero because in-flight requests may have been cut).
- Auxiliary processes (e.g. the admin HTTP process) are singletons with their own entry point and
  listeners, kept alive like workers under negative ids (-1, -2, ...); SIGTTIN/SIGTTOU never touch them.
- The master imports no protocol code and logs no configuration values.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from gateway.supervisor.child import run_worker_process
from gateway.supervisor.config_change import top_level_change
from gateway.supervisor.context import WorkerContext
from gateway.supervisor.control import BOOT_FAILURE_EXIT_CODE, READY, drain_message, reload_message
from gateway.supervisor.listeners import ListenerSet, ListenerSpec, close_sockets
from gateway.supervisor.workers import WorkerProcess, WorkerSlot

MAX_BOOT_FAILURES = 3
KILL_GRACE = 2.0  # seconds past the drain timeout before a draining worker is SIGKILLed
MAX_LOOP_WAIT = 1.0  # the loop never sleeps longer, so even a lost wakeup costs at most this much
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
INFO, WARNING, ERROR, CRITICAL = logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL


class Supervisor:
    def __init__(
        self,
        *,
        listeners: list[ListenerSpec],
        workers: int,
        worker_entry: str,
        load_config: Callable[[], dict[str, Any]],
        drain_timeout: float = 30.0,
        heartbeat_timeout: float = 30.0,
        logger: logging.Logger | None = None,
        auxiliary: list[tuple[str, list[ListenerSpec]]] | None = None,
    ) -> None:
        """`auxiliary`: (entry "module:function", listeners) of singleton processes started beside workers."""
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._listener_set = ListenerSet(listeners)
        self._auxiliary = [(entry, ListenerSet(specs)) for entry, specs in (auxiliary or [])]
        self._target_workers = workers
        self._worker_entry = worker_entry
        self._load_config = load_config
        self._drain_timeout = drain_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._log = logger or logging.getLogger("gateway.supervisor")

        self._config: dict[str, Any] = {}
        self._workers: dict[int, WorkerProcess] = {}  # by pid
        self._slots: dict[int, WorkerSlot] = {}  # by worker_id: exactly 1.._target_workers until stopping
        self._pending_signals: list[int] = []
        self._selector: selectors.DefaultSelector  # created by run(), which is called once
        self._wakeup_read, self._wakeup_write = -1, -1
        self._stopping = False
        self._exit_code = 0
        self._boot_failures_in_a_row = 0

    def run(self) -> int:
        """Serve until stopped; returns the process exit code. Must be called from the main thread."""
        try:
            self._config = self._checked_config()
        except Exception as error:  # noqa: BLE001 - load_config may raise anything; its str() is the message
            self._event(ERROR, "config_invalid", "cannot start: {error}", error=str(error))
            return 1
        self._wakeup_read, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wakeup_read, selectors.EVENT_READ, None)
        previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        previous_handlers = {signum: signal.signal(signum, self._queue_signal) for signum in HANDLED_SIGNALS}
        try:
            try:
                for worker_id in range(1, self._target_workers + 1):
                    self._slots[worker_id] = WorkerSlot(self._listener_set.bind_slot())
                for index, (entry, listener_set) in enumerate(self._auxiliary, start=1):
                    self._slots[-index] = WorkerSlot(listener_set.bind_slot(), entry=entry)
            except OSError as error:
                self._event(ERROR, "bind_failed", "cannot listen: {error}", error=str(error))
                return 1
            for listener_set in [self._listener_set, *(ls for _, ls in self._auxiliary)]:
                for spec in listener_set.specs:
                    port = listener_set.port_of(spec.name)
                    message = "listening for {listener} on {host} port {port}"
                    self._event(INFO, "listener_bound", message, listener=spec.name, host=spec.host, port=port)
            return self._main_loop()
        finally:
            self._kill_remaining_workers()
            signal.set_wakeup_fd(previous_wakeup_fd)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            for slot in self._slots.values():
                close_sockets(slot.sockets)
            self._selector.close()
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)

    def _main_loop(self) -> int:
        while True:
            self._top_up_pool()
            if self._stopping and not self._workers:
                self._event(
                    INFO, "master_exit", "all workers have exited, exit code {code}", code=self._exit_code
                )
                return self._exit_code
            for key, events in self._selector.select(self._seconds_until_next_deadline()):
                if key.data is None:
                    self._empty_wakeup_pipe()
                    continue
                if events & selectors.EVENT_READ:
                    self._read_control(key.data)
                if events & selectors.EVENT_WRITE:
                    self._flush_control(key.data)
            # Deadlines right after reading: a slow reload (load_config) or a paused master must not make
            # workers whose heartbeats are waiting unread in their sockets look silent.
            self._enforce_deadlines()
            self._dispatch_signals()
            self._reap_workers()

    # ---------------------------------------------------------------- signals

    def _queue_signal(self, signum: int, frame: object) -> None:
        self._pending_signals.append(signum)

    def _empty_wakeup_pipe(self) -> None:
        try:
            while os.read(self._wakeup_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _dispatch_signals(self) -> None:
        while self._pending_signals:
            name = signal.Signals(self._pending_signals.pop(0)).name  # "SIGTERM" -> _handle_term
            getattr(self, f"_handle_{name[3:].lower()}")()

    def _handle_term(self) -> None:
        self._stop(exit_code=0, reason="SIGTERM")

    def _handle_int(self) -> None:
        self._stop(exit_code=0, reason="SIGINT")

    def _handle_chld(self) -> None:
        pass  # only here to wake the loop; every pass reaps

    def _handle_hup(self) -> None:
        if self._stopping:
            return
        try:
            new_config = self._checked_config()
        except Exception as error:  # noqa: BLE001 - load_config may raise anything; its str() is the message
            message = "config reload failed, keeping the current config: {error}"
            self._event(ERROR, "config_reload_failed", message, error=str(error))
            return
        change = top_level_change(self._config, new_config)
        self._config = new_config
        self._event(
            INFO,
            "config_reloaded",
            "config reloaded ({summary})",
            summary=change.describe(),
            added=change.added,
            removed=change.removed,
            changed=change.changed,
        )
        for worker in self._workers.values():
            if worker.drain_deadline is None:
                worker.queue(reload_message(new_config))
                self._flush_control(worker)

    def _handle_ttin(self) -> None:
        if self._stopping:
            return
        try:
            self._slots[self._target_workers + 1] = WorkerSlot(self._listener_set.bind_slot())
        except OSError as error:
            self._event(ERROR, "bind_failed", "cannot add a worker: {error}", error=str(error))
            return
        self._target_workers += 1
        self._event(INFO, "workers_scaled", "scaling up to {workers} workers", workers=self._target_workers)

    def _handle_ttou(self) -> None:
        if self._stopping:
            return
        if self._target_workers == 1:
            self._event(INFO, "workers_scaled", "already at {workers} worker; not scaling down", workers=1)
            return
        retired_id = self._target_workers
        self._target_workers -= 1
        # Closing the retired slot's sockets makes the kernel route new connections to the remaining ones.
        close_sockets(self._slots.pop(retired_id).sockets)
        for worker in self._workers.values():
            if worker.worker_id == retired_id:
                self._tell_to_drain(worker)
        self._event(INFO, "workers_scaled", "scaling down to {workers} workers", workers=self._target_workers)

    def _stop(self, *, exit_code: int, reason: str) -> None:
        if self._stopping:
            message = "{reason} during shutdown: killing {count} workers now"
            self._event(WARNING, "shutdown_forced", message, reason=reason, count=len(self._workers))
            self._exit_code = self._exit_code or 1
            for worker in self._workers.values():
                self._kill(worker)
            return
        self._stopping = True
        self._exit_code = exit_code
        message = "{reason}: draining {count} workers (timeout {timeout}s)"
        self._event(
            INFO,
            "shutdown_started",
            message,
            reason=reason,
            count=len(self._workers),
            timeout=self._drain_timeout,
        )
        for worker in self._workers.values():
            self._tell_to_drain(worker)
        for slot in self._slots.values():
            close_sockets(slot.sockets)

    # ---------------------------------------------------------------- workers

    def _top_up_pool(self) -> None:
        if self._stopping:
            return
        occupied_ids = {worker.worker_id for worker in self._workers.values()}
        now = time.monotonic()
        auxiliary_ids = range(-1, -len(self._auxiliary) - 1, -1)
        for worker_id in [*range(1, self._target_workers + 1), *auxiliary_ids]:
            slot = self._slots[worker_id]
            if worker_id not in occupied_ids and now >= slot.restart_at:
                self._spawn(worker_id, slot)

    def _spawn(self, worker_id: int, slot: WorkerSlot) -> None:
        slot.generation += 1
        master_end, worker_end = socket.socketpair()
        context = WorkerContext(worker_id, slot.generation, dict(slot.sockets), self._config, worker_end)
        # Everything the child must not keep: master-only fds and every other slot's listening sockets
        # (a socket left open in a sibling would keep receiving connections after its own worker is gone).
        master_only: list[socket.socket | int] = [master_end, self._wakeup_read, self._wakeup_write]
        master_only.append(self._selector.fileno())
        master_only += [worker.control for worker in self._workers.values() if worker.control is not None]
        for other_id, other_slot in self._slots.items():
            if other_id != worker_id:
                master_only += other_slot.sockets.values()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # buffered output would otherwise be written twice, once by each process
        # Block our signals across fork: the child must not run the master's handlers (a SIGTERM sent to the
        # new pid would be swallowed); it unblocks them once it has reset their dispositions.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            master_end.close()
            worker_end.close()
            slot.restart_at = time.monotonic() + slot.backoff.delay_after_exit(0.0)
            message = "cannot fork worker {worker_id}: {error}"
            self._event(ERROR, "fork_failed", message, worker_id=worker_id, error=str(error))
            return
        if pid == 0:
            run_worker_process(slot.entry or self._worker_entry, context, master_only, HANDLED_SIGNALS)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        worker_end.close()
        master_end.setblocking(False)
        now = time.monotonic()
        worker = WorkerProcess(pid, worker_id, slot.generation, master_end, started_at=now, last_seen=now)
        self._workers[pid] = worker
        self._selector.register(master_end, selectors.EVENT_READ, worker)
        message = "worker {worker_id} started (pid {worker_pid}, generation {generation})"
        self._event(
            INFO, "worker_started", message, worker_id=worker_id, worker_pid=pid, generation=slot.generation
        )

    def _reap_workers(self) -> None:
        for pid, worker in list(self._workers.items()):
            try:
                waited_pid, status = os.waitpid(pid, os.WNOHANG)
                exit_code: int | None = os.waitstatus_to_exitcode(status) if waited_pid else None
            except ChildProcessError:  # reaped by someone else; the status is lost
                waited_pid, exit_code = pid, None
            if waited_pid:
                del self._workers[pid]
                self._close_control(worker)
                self._after_exit(worker, exit_code)

    def _after_exit(self, worker: WorkerProcess, exit_code: int | None) -> None:
        ids = {"worker_id": worker.worker_id, "worker_pid": worker.pid, "exit": _describe_exit(exit_code)}
        if self._stopping or worker.drain_deadline is not None:
            self._event(INFO, "worker_exited", "worker {worker_id} (pid {worker_pid}) exited: {exit}", **ids)
            return
        if exit_code == BOOT_FAILURE_EXIT_CODE and not worker.ready:
            self._boot_failures_in_a_row += 1
            message = "worker {worker_id} (pid {worker_pid}) failed to boot ({count} in a row)"
            self._event(ERROR, "worker_boot_failed", message, count=self._boot_failures_in_a_row, **ids)
            if self._boot_failures_in_a_row >= MAX_BOOT_FAILURES:
                message = "workers failed to boot {count} times in a row (exit code {code}); halting"
                self._event(
                    CRITICAL, "master_halted", message, count=MAX_BOOT_FAILURES, code=BOOT_FAILURE_EXIT_CODE
                )
                self._stop(exit_code=BOOT_FAILURE_EXIT_CODE, reason="boot failures")
                return
        uptime = round(time.monotonic() - worker.started_at, 3)
        slot = self._slots[worker.worker_id]
        slot.restart_at = time.monotonic() + (delay := slot.backoff.delay_after_exit(uptime))
        message = (
            "worker {worker_id} (pid {worker_pid}) died ({exit}) after {uptime}s; restarting in {restart_in}s"
        )
        self._event(WARNING, "worker_died", message, uptime=uptime, restart_in=delay, **ids)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._workers.values():
            if worker.killed:
                continue
            ids = {"worker_id": worker.worker_id, "worker_pid": worker.pid}
            if worker.drain_deadline is not None and now >= worker.drain_deadline:
                message = "worker {worker_id} (pid {worker_pid}) did not finish draining in time; killing it"
                self._event(WARNING, "worker_drain_timeout", message, **ids)
                self._kill(worker)
            elif worker.drain_deadline is None and now - worker.last_seen >= self._heartbeat_timeout:
                message = "worker {worker_id} (pid {worker_pid}) silent for {silent}s; killing it"
                self._event(
                    ERROR, "worker_unresponsive", message, silent=round(now - worker.last_seen, 1), **ids
                )
                self._kill(worker)

    def _seconds_until_next_deadline(self) -> float:
        deadlines = [time.monotonic() + MAX_LOOP_WAIT]
        for worker in self._workers.values():
            if not worker.killed:
                deadlines.append(worker.drain_deadline or worker.last_seen + self._heartbeat_timeout)
        if not self._stopping:
            occupied_ids = {worker.worker_id for worker in self._workers.values()}
            deadlines += [
                slot.restart_at for worker_id, slot in self._slots.items() if worker_id not in occupied_ids
            ]
        return max(0.0, min(deadlines) - time.monotonic())

    def _tell_to_drain(self, worker: WorkerProcess) -> None:
        if worker.drain_deadline is None:
            worker.drain_deadline = time.monotonic() + self._drain_timeout + KILL_GRACE
            worker.queue(drain_message(self._drain_timeout))
            self._flush_control(worker)
            worker.send_signal(signal.SIGTERM)

    def _kill(self, worker: WorkerProcess) -> None:
        worker.killed = True
        worker.send_signal(signal.SIGKILL)

    def _kill_remaining_workers(self) -> None:
        """Last resort when run() leaves with workers alive (an unexpected error): never leave orphans."""
        for pid, worker in self._workers.items():
            self._kill(worker)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._close_control(worker)
        self._workers.clear()

    # ---------------------------------------------------------------- control channel

    def _read_control(self, worker: WorkerProcess) -> None:
        received = worker.receive()
        if received is None:
            self._close_control(worker)  # the worker closed its end or died; reaping follows
            return
        messages, errors = received
        for error in errors:
            message = "worker {worker_id} sent a bad control message: {error}"
            self._event(WARNING, "control_protocol_error", message, worker_id=worker.worker_id, error=error)
        if not worker.ready and any(message["type"] == READY for message in messages):
            worker.ready = True
            self._boot_failures_in_a_row = 0
            message = "worker {worker_id} ready (pid {worker_pid})"
            self._event(INFO, "worker_ready", message, worker_id=worker.worker_id, worker_pid=worker.pid)

    def _flush_control(self, worker: WorkerProcess) -> None:
        if not worker.flush():
            self._close_control(worker)
        elif worker.control is not None:
            # Watch for writability only while something is waiting in the outbox.
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outbox else 0)
            self._selector.modify(worker.control, events, worker)

    def _close_control(self, worker: WorkerProcess) -> None:
        if worker.control is not None:
            self._selector.unregister(worker.control)
            worker.close_control()

    # ---------------------------------------------------------------- helpers

    def _checked_config(self) -> dict[str, Any]:
        config = self._load_config()
        if not isinstance(config, dict):
            raise TypeError(f"load_config returned {type(config).__name__}, not a dict")
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as error:  # the message names the offending type, never a value
            raise ValueError(f"configuration is not plain JSON data: {error}") from None
        return config

    def _event(self, level: int, event: str, template: str, **fields: Any) -> None:
        """Log `template` filled from `fields`, and pass the fields on as structured data."""
        self._log.log(level, template.format(**fields), extra={"event": event, **fields})


def _describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "exit status unknown"
    if exit_code < 0:
        try:
            return f"signal {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"signal {-exit_code}"
    return f"exit code {exit_code}"
