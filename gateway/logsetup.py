"""Process-wide logging setup: one stderr handler, text or JSON lines, every line tagged with its process.

Rule kept here: every log line says which process wrote it - `worker` (0 for the supervisor/master, 1..N for
workers) and `pid` - so the interleaved output of a prefork gateway can be split per process. The pid is read
when the line is written, so a forked child reports its own pid without reconfiguring; the worker id is
module state that the supervisor sets in the child with `set_worker_id` right after the fork.

Structured fields travel in `extra={...}` (for example `extra={"event": "worker_ready", "worker_id": 2}`); the
JSON format emits them as top-level keys. Callers must never put configuration values or secrets there.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

MASTER_WORKER_ID = 0

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a structured field.
_STANDARD_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "worker", "pid"}
)

_worker_id: int = MASTER_WORKER_ID
_installed_handler: logging.Handler | None = None


def set_worker_id(worker_id: int | None) -> None:
    """Tag all following log lines of this process with `worker_id` (None or 0 = the master)."""
    global _worker_id
    _worker_id = MASTER_WORKER_ID if worker_id is None else worker_id


def current_worker_id() -> int:
    return _worker_id


class ProcessIdentityFilter(logging.Filter):
    """Stamps `worker` and `pid` on each record when it is handled, so a fork needs no reconfiguring."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = _worker_id
        record.pid = record.process
        return True


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in insertion order."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_RECORD_ATTRIBUTES and not key.startswith("_")
    }


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, worker, pid, msg, structured fields, exc (if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "worker": getattr(record, "worker", _worker_id),
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in structured_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a structured field that is not JSON-able must not lose the whole line.
        return json.dumps(line, default=str, ensure_ascii=False)


class TextLineFormatter(logging.Formatter):
    """Human-readable: `2024-05-01T12:00:00.123Z INFO worker=0 pid=41 gateway.supervisor: message`."""

    def format(self, record: logging.LogRecord) -> str:
        worker = getattr(record, "worker", _worker_id)
        text = (
            f"{_utc_timestamp(record.created)} {record.levelname} worker={worker} pid={record.process}"
            f" {record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def configure_logging(
    fmt: LogFormat = "text",
    level: str = "INFO",
    worker_id: int | None = None,
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install (or replace) the process's single root handler; returns it.

    Calling it again swaps the previous handler this module installed, so it is safe to call once per process
    (and again in a worker that wants a different level). Raises ValueError for an unknown format or level.
    """
    global _installed_handler
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    level_numbers = logging.getLevelNamesMapping()
    if level.upper() not in level_numbers:
        raise ValueError(f"unknown log level {level!r}")
    numeric_level = level_numbers[level.upper()]

    set_worker_id(worker_id)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextLineFormatter())
    handler.addFilter(ProcessIdentityFilter())

    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
        _installed_handler.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _installed_handler = handler
    return handler


def _utc_timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
