"""The first moments of a worker process: from `os.fork()` returning 0 to `os._exit(code)`.

Rule kept here: the child never returns into the master's code. It drops everything that belongs to the
master (signal handlers, wakeup pipe, other workers' sockets), imports the worker entry point named by a
"module:function" string, runs it, and exits with its return value. Failing to import or find the entry
point is a boot failure (BOOT_FAILURE_EXIT_CODE); an exception escaping the entry point is exit code 1.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn, cast

from gateway import logsetup
from gateway.supervisor.context import WorkerContext
from gateway.supervisor.control import BOOT_FAILURE_EXIT_CODE

logger = logging.getLogger("gateway.supervisor.child")

# Signals the master handles. The child starts from the default action for each, except SIGINT and SIGHUP:
# a terminal sends those to the whole foreground process group, and the master already turns them into a
# drain and a reload for every worker, so a worker must not also die from them on its own.
_DEFAULT_IN_CHILD = (signal.SIGTERM, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU)
_IGNORED_IN_CHILD = (signal.SIGINT, signal.SIGHUP)

WorkerEntry = Callable[[WorkerContext], int | None]


def resolve_entry(entry: str) -> WorkerEntry:
    """Import "package.module:function" and return the function; raises if it cannot."""
    module_name, separator, attribute = entry.partition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"worker entry must look like 'module:function', got {entry!r}")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"worker entry {entry!r} is not callable")
    return cast(WorkerEntry, target)


def run_worker_process(
    entry: str,
    context: WorkerContext,
    inherited: Iterable[socket.socket | int],
    blocked_signals: Iterable[int] = (),
) -> NoReturn:
    """Called in the child right after fork; never returns.

    Closes `inherited` (master-only fds) and unblocks `blocked_signals` (blocked by the master around the
    fork) once their dispositions are reset, so a signal sent meanwhile gets the worker's handling.
    """
    exit_code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in _DEFAULT_IN_CHILD:
            signal.signal(signum, signal.SIG_DFL)
        for signum in _IGNORED_IN_CHILD:
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked_signals)
        for item in inherited:
            if isinstance(item, socket.socket):
                item.close()
            else:
                os.close(item)
        logsetup.set_worker_id(context.worker_id)
        exit_code = _run_entry(entry, context)
    except BaseException:  # the child must reach os._exit whatever happens
        logger.exception("worker %d crashed while starting", context.worker_id)
    finally:
        _flush_output()
        os._exit(exit_code)


def _run_entry(entry: str, context: WorkerContext) -> int:
    try:
        function = resolve_entry(entry)
    except Exception as error:  # noqa: BLE001 - any import-time error means this worker cannot boot
        logger.error(
            "worker %d cannot load its entry point %s: %s",
            context.worker_id,
            entry,
            error,
            extra={"event": "worker_entry_failed", "worker_id": context.worker_id},
        )
        return BOOT_FAILURE_EXIT_CODE
    try:
        result = function(context)
    except SystemExit as exit_request:
        return _exit_code_from(exit_request.code)
    except Exception:
        logger.exception("worker %d failed", context.worker_id, extra={"event": "worker_failed"})
        return 1
    return _exit_code_from(result)


def _exit_code_from(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value & 0xFF
    return 1


def _flush_output() -> None:
    # os._exit skips interpreter shutdown, so buffered log lines and prints would be lost without this.
    # A closed or broken stream must not keep the child from exiting, hence the broad suppress.
    for flushable in (*logging.getLogger().handlers, sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            flushable.flush()
