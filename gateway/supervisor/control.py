"""The control channel between the master and one worker: newline-delimited JSON over a socketpair.

Each message is one JSON object on one line with a string "type". The set of messages is fixed here:

    master -> worker   {"type": "reload", "config": {...}}     apply this config to new work from now on
                       {"type": "drain", "timeout": 30.0}       stop accepting at once, finish in-flight
                                                                requests, exit 0 within `timeout` seconds
    worker -> master   {"type": "ready"}                        booted and accepting (ends the boot phase)
                       {"type": "heartbeat"}                    still alive; send every HEARTBEAT_INTERVAL s

Worker contract beyond the messages: end-of-file on the control socket means the master is gone; the worker
then drains and exits like on {"type": "drain"}. A worker that exits with BOOT_FAILURE_EXIT_CODE before
sending "ready" reports a boot failure (bad config, missing dependency); repeated boot failures stop the
master instead of letting it restart workers forever.

This module is sans-IO: `encode_message` produces bytes and `ControlReader` consumes bytes, so a blocking
worker and an asyncio worker (loop.add_reader on the socket) use the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

BOOT_FAILURE_EXIT_CODE = 3
HEARTBEAT_INTERVAL = 2.0

RELOAD = "reload"
DRAIN = "drain"
READY = "ready"
HEARTBEAT = "heartbeat"

# A reload carries the whole policy; allow it to be large, but not unbounded.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024


class ControlProtocolError(ValueError):
    """A control line that is not a JSON object with a string "type", or is longer than allowed."""


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One message as a JSON line. Raises ControlProtocolError if it has no string "type"."""
    if not isinstance(message.get("type"), str):
        raise ControlProtocolError("control message needs a string 'type'")
    # Compact JSON never holds a raw newline (those inside strings are escaped): one line = one message.
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def reload_message(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": RELOAD, "config": dict(config)}


def drain_message(timeout: float) -> dict[str, Any]:
    return {"type": DRAIN, "timeout": timeout}


class ControlReader:
    """Turns a byte stream into control messages.

    `feed(data)` buffers `data` at once and returns an iterator over the complete messages now available.
    A malformed line raises ControlProtocolError from that iterator; the line is dropped and the lines after
    it stay buffered, so the caller may log the error and call `feed(b"")` to go on. A line longer than
    `max_line_bytes` raises from `feed` itself and the reader discards its buffer: the channel cannot be
    trusted after that and the caller should close it.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line_bytes = max_line_bytes

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += data
        unterminated = len(self._buffer) - (self._buffer.rfind(b"\n") + 1)
        if unterminated > self._max_line_bytes:
            self._buffer.clear()
            raise ControlProtocolError(f"control line longer than {self._max_line_bytes} bytes")
        return self._complete_messages()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def _complete_messages(self) -> Iterator[dict[str, Any]]:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.strip():
                yield _decode_line(line)


def _decode_line(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise ControlProtocolError(f"control line is not JSON: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ControlProtocolError("control line is not an object with a string 'type'")
    return message
