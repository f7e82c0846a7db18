"""Audit sinks: the delivery machinery they share (`AuditSink`) and the hash-chained JSONL file sink.

What `AuditSink` guarantees, whatever the transport:
- events leave in the order they were accepted, in batches, from one asyncio task per sink;
- a failed delivery is retried with capped exponential backoff, the batch stays queued (never dropped);
- health is a synchronous flag (`healthy`, `blocking`) so the dispatcher can refuse a request without awaiting;
- `on_failure: block`: while the sink is down (or its memory queue is full) `blocking` is True and the
  dispatcher refuses gated requests; what was accepted before stays queued and is delivered on recovery;
- `on_failure: spool`: on failure the queued events move to the on-disk spool, new events follow them there,
  and the spool is replayed in order once the sink answers again. When the spool is full, events wait in a
  bounded memory overflow and the sink becomes `blocking` (the dispatcher records `audit_spool_overflow`):
  a full spool flips the sink to block behaviour. Beyond that bound (only ungated `record()` events can get
  there) events are counted, logged and reported by an `audit_events_dropped` event once delivery resumes.

Undelivered events are kept in this order: `_queue` (memory, oldest) -> spool -> `_overflow` (memory, newest).

Transports implement `_open()` (connect / probe; also used to probe a down sink that has nothing to send),
`_deliver(batch)` (raise on failure; `SinkUnavailable(delivered=n)` for partial progress) and `_close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol, TypedDict, Unpack

import msgspec

from gateway.audit.chainfiles import rotated_path, worker_chain_path
from gateway.audit.spool import Spool
from gateway.enforcement.audit import (
    KIND_EVENTS_DROPPED,
    KIND_FILE_ROTATED,
    AuditEvent,
    ChainWriter,
    encode_event,
    rfc3339_ms,
)

log = logging.getLogger("streamgate.audit")

OnFailure = Literal["block", "spool"]


class SinkOptions(TypedDict, total=False):
    """The delivery options every sink takes (see `AuditSink`); transports pass them through."""

    on_failure: OnFailure
    spool: Spool | None
    write_ahead: bool
    queue_max: int
    retry_initial: float
    retry_max: float
    batch_size: int
    flush_interval: float


class SinkUnavailable(Exception):
    """A delivery attempt failed. The message must be safe to log (no tokens, no event contents).
    `delivered` counts the events of the batch that did reach the sink before the failure."""

    def __init__(self, message: str, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class SinkListener(Protocol):
    """What a sink reports to (the dispatcher)."""

    def sink_state_changed(self, sink: AuditSink, reason: str) -> None: ...

    def internal_event(self, kind: str, details: dict[str, str | int | float | bool | None]) -> bytes: ...


def describe_error(exc: BaseException) -> str:
    """A log-safe one-line description: exception type and OS error text, never the request that failed."""
    if isinstance(exc, SinkUnavailable):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


class AuditSink:
    """Base class: queueing, batching, retries, spooling and health. See the module docstring."""

    type_name = "sink"
    # True: the dispatcher hands each event over inside emit() instead of once per loop iteration.
    immediate = False

    def __init__(
        self,
        name: str,
        *,
        on_failure: OnFailure = "block",
        spool: Spool | None = None,
        write_ahead: bool = False,
        queue_max: int = 10_000,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        batch_size: int = 100,
        flush_interval: float = 0.0,
    ) -> None:
        if on_failure == "spool" and spool is None:
            raise ValueError(f"sink {name}: on_failure=spool needs a spool")
        self.name = name
        self.on_failure: OnFailure = on_failure
        self.spool = spool
        self.write_ahead = write_ahead and spool is not None
        self.queue_max = queue_max
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.healthy = True
        self.blocking = False
        self.last_error = ""
        self.delivered = 0
        self.failures = 0
        self.dropped_total = 0
        self._queue: deque[bytes] = deque()
        self._overflow: deque[bytes] = deque()
        self._dropped_unreported = 0
        self._listener: SinkListener | None = None
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._up.set()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    # -- wiring ------------------------------------------------------------------------------------------

    def bind(self, listener: SinkListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.spool is not None:
            self.spool.open()
            if not self.spool.is_empty():
                log.info("audit sink %s: replaying %d spooled events", self.name, self.spool.pending_count)
        try:
            await self._open()
        except Exception as exc:  # noqa: BLE001 - a sink that is down at start is a state, not a crash
            self._mark(False, describe_error(exc))
        self._update_blocking()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"audit-sink-{self.name}")

    async def aclose(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), persist the rest to the spool if there is one."""
        if not self._started:
            return
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._persist_leftovers()
        with contextlib.suppress(Exception):
            await self._close()
        if self.spool is not None:
            self.spool.close()
        self._started = False

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        spooled = self.spool.pending_count if self.spool is not None else 0
        return len(self._queue) + spooled + len(self._overflow)

    def _spooling(self) -> bool:
        return (
            self.write_ahead or bool(self._overflow) or (self.spool is not None and not self.spool.is_empty())
        )

    async def wait_health(self, healthy: bool, timeout: float | None = None) -> None:
        """Wait until the sink is up (True) or down (False)."""
        await asyncio.wait_for((self._up if healthy else self._down).wait(), timeout)

    def stats(self) -> dict[str, object]:
        return {
            "type": self.type_name,
            "healthy": self.healthy,
            "blocking": self.blocking,
            "queued": len(self._queue),
            "spooled": self.spool.pending_count if self.spool is not None else 0,
            "spool_bytes": self.spool.disk_bytes if self.spool is not None else 0,
            "overflow": len(self._overflow),
            "delivered": self.delivered,
            "failures": self.failures,
            "dropped": self.dropped_total,
            "last_error": self.last_error,
        }

    def _mark(self, healthy: bool, reason: str) -> None:
        if healthy:
            self.last_error = ""
        else:
            self.last_error = reason
        if healthy == self.healthy:
            return
        self.healthy = healthy
        if healthy:
            self._down.clear()
            self._up.set()
            log.warning("audit sink %s (%s) is up again", self.name, self.type_name)
        else:
            self._up.clear()
            self._down.set()
            log.error("audit sink %s (%s) is down: %s", self.name, self.type_name, reason)
        if not self._update_blocking(reason) and self._listener is not None:
            self._listener.sink_state_changed(self, reason)

    def _update_blocking(self, reason: str = "") -> bool:
        """Recompute `blocking`; tell the listener when it changed (and return whether it did)."""
        if self.on_failure == "block":
            blocking = not self.healthy or len(self._queue) >= self.queue_max
        else:
            blocking = bool(self._overflow)
        if blocking == self.blocking:
            return False
        self.blocking = blocking
        if self._listener is not None:
            self._listener.sink_state_changed(self, reason or self.last_error)
        return True

    # -- accepting -----------------------------------------------------------------------------------------

    def accept(self, events: Sequence[bytes]) -> None:
        """Take encoded events (synchronously, on the loop thread); delivery happens in the sink's task."""
        if not events:
            return
        if self._spooling():
            self._to_spool(events)
        else:
            self._queue.extend(events)
            if len(self._queue) >= self.queue_max:
                if self.on_failure == "spool":
                    self._spill_queue()  # keep memory bounded: newer events continue on disk
                else:
                    self._update_blocking("memory queue full")
        self._wake.set()

    def _to_spool(self, events: Sequence[bytes]) -> None:
        assert self.spool is not None
        stored = 0
        if not self._overflow:
            try:
                stored = self.spool.append(events)
            except OSError as exc:
                log.error("audit sink %s: cannot write its spool: %s", self.name, describe_error(exc))
        rest = events[stored:]
        if rest:
            room = self.queue_max - len(self._overflow)
            self._overflow.extend(rest[:room])
            if len(rest) > room:
                self._count_dropped(len(rest) - room)
            self._update_blocking("spool full")

    def _spill_queue(self) -> None:
        """Move the memory queue to the spool; only valid while nothing is spooled (keeps the order)."""
        if self.spool is None or not self._queue or (not self.spool.is_empty() or self._overflow):
            return
        events = list(self._queue)
        self._queue.clear()
        self._to_spool(events)

    def _count_dropped(self, count: int) -> None:
        if self._dropped_unreported == 0:
            log.error(
                "audit sink %s: memory overflow full, dropping events (they will be reported by an %s event)",
                self.name,
                KIND_EVENTS_DROPPED,
            )
        self._dropped_unreported += count
        self.dropped_total += count

    # -- delivering ----------------------------------------------------------------------------------------

    def _take_batch(self, limit: int) -> tuple[list[bytes], str, tuple[int, int] | None]:
        if self._queue:
            return list(itertools.islice(self._queue, limit)), "queue", None
        if self.spool is not None and not self.spool.is_empty():
            lines, position = self.spool.peek(limit)
            if lines:
                return lines, "spool", position
        if self._overflow:
            return list(itertools.islice(self._overflow, limit)), "overflow", None
        return [], "", None

    def _commit(self, source: str, count: int, position: tuple[int, int] | None, batch: list[bytes]) -> None:
        if count <= 0:
            return
        self.delivered += count
        if source == "queue":
            for _ in range(count):
                self._queue.popleft()
        elif source == "overflow":
            for _ in range(count):
                self._overflow.popleft()
        elif source == "spool" and self.spool is not None and position is not None:
            segment, end = position
            if count < len(batch):  # partial delivery: advance past exactly the delivered lines
                end -= sum(len(line) + 1 for line in batch[count:])
            self.spool.commit((segment, end), count)
            self._refill_spool()
        self._update_blocking()

    def _refill_spool(self) -> None:
        """Room was made in the spool: the overflow (newer than everything spooled) moves back to disk."""
        if not self._overflow or self.spool is None:
            return
        try:
            stored = self.spool.append(list(self._overflow))
        except OSError:
            return
        for _ in range(stored):
            self._overflow.popleft()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.retry_initial
        while True:
            batch, source, position = self._take_batch(self.batch_size)
            if not batch:
                if self._closing.is_set():
                    return
                if not self.healthy:
                    try:
                        await self._open()
                    except Exception as exc:  # noqa: BLE001
                        self.failures += 1
                        self._mark(False, describe_error(exc))
                        await self._pause(backoff)
                        backoff = min(backoff * 2, self.retry_max)
                        continue
                    self._mark(True, "")
                    backoff = self.retry_initial
                    continue
                self._wake.clear()
                await self._wake.wait()
                continue
            if (
                source == "queue"
                and self.healthy
                and self.flush_interval > 0
                and len(batch) < self.batch_size
                and not self._closing.is_set()
            ):
                await self._gather(loop)
                batch, source, position = self._take_batch(self.batch_size)
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is a state change, reported below
                delivered = exc.delivered if isinstance(exc, SinkUnavailable) else 0
                self._commit(source, delivered, position, batch)
                self.failures += 1
                self._mark(False, describe_error(exc))
                if self.on_failure == "spool" and source == "queue":
                    self._spill_queue()
                if self._closing.is_set() and not self.healthy:
                    return  # shutting down with the sink still failing: leftovers are persisted by aclose
                await self._pause(backoff)
                backoff = min(backoff * 2, self.retry_max)
                continue
            backoff = self.retry_initial
            self._commit(source, len(batch), position, batch)
            self._mark(True, "")
            self._report_dropped()

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let a partial batch wait up to `flush_interval` for more events (or shutdown)."""
        deadline = loop.time() + self.flush_interval
        while len(self._queue) < self.batch_size and not self._closing.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _report_dropped(self) -> None:
        if self._dropped_unreported and self._listener is not None:
            count, self._dropped_unreported = self._dropped_unreported, 0
            self.accept(
                [self._listener.internal_event(KIND_EVENTS_DROPPED, {"sink": self.name, "count": count})]
            )

    def _persist_leftovers(self) -> None:
        # `_queue` is only ever non-empty while nothing is spooled, so queue + overflow keeps the order.
        events = list(self._queue) + list(self._overflow)
        self._queue.clear()
        self._overflow.clear()
        leftovers = len(events)
        if events and self.spool is not None:
            try:
                leftovers -= self.spool.append(events)
            except OSError as exc:
                log.error("audit sink %s: cannot write its spool: %s", self.name, describe_error(exc))
        if leftovers:
            log.error(
                "audit sink %s: %d events could not be delivered or spooled before shutdown",
                self.name,
                leftovers,
            )
            self.dropped_total += leftovers

    # -- transport hooks -----------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect or probe. Raise when the destination is not reachable."""

    async def _deliver(self, batch: list[bytes]) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """Release connections and files."""


# ------------------------------------------------------------------------------------------------------------
# the file sink


class _PartialWrite(Exception):
    def __init__(self, complete: int, cause: OSError) -> None:
        super().__init__(describe_error(cause))
        self.complete = complete
        self.cause = cause


class FileSink(AuditSink):
    """Hash-chained JSONL, one chain per worker (`audit.w<N>.jsonl`), rotated by size, chain kept across files.

    Writes are synchronous `os.write` calls of whole batches to an O_APPEND descriptor: no user-space buffer
    holds events, so what was written is in the kernel page cache and survives kill -9 of the worker. By
    default the dispatcher hands over one batch per event-loop iteration (the events emitted in the iteration
    before); `write_through=True` writes inside `emit()`, before the caller forwards the request. Survival of
    power loss or a kernel crash needs `fsync_interval` (0 = fsync after every write; N = at most N seconds
    of events at risk).

    A second process with the same worker id (e.g. an old worker still draining after a reload) cannot share
    the chain: the writer holds an exclusive lock on `.<chain>.lock` and, if it is taken, writes its own chain
    `audit.w<N>.p<pid>.jsonl` instead.
    """

    type_name = "file"

    def __init__(
        self,
        name: str,
        path: str | Path,
        worker_id: int | str,
        *,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 10,
        write_through: bool = False,
        fsync_interval: float | None = None,
        clock: Callable[[], float] = time.time,
        **options: Unpack[SinkOptions],
    ) -> None:
        super().__init__(name, **options)
        self.template = Path(path)
        self.worker_id = worker_id
        self.chain_path = worker_chain_path(self.template, worker_id)
        self.max_bytes = max_bytes
        self.backups = backups
        self.immediate = write_through
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._chain = ChainWriter()
        self._first_seqs: list[int | None] = []  # first seq of the live file (index 0) and each backup
        self._dirty = False
        self._fsync_handle: asyncio.TimerHandle | None = None
        self.rotations = 0

    @property
    def head(self) -> tuple[int, str]:
        """`(seq, hash)` of the last line written: record it elsewhere to detect a cut tail later."""
        return self._chain.head

    # -- opening and resuming ------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._fd is None:
            self._open_chain()

    def _open_chain(self) -> None:
        self.chain_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_chain()
        files = [rotated_path(self.chain_path, i) for i in range(self.backups + 1)]
        self._first_seqs = [_first_seq(p) for p in files]
        self._chain = ChainWriter()
        digest: str | None = None
        for path in files:  # the chain continues after the newest line of the newest non-empty file
            tail = _tail_state(path)
            if tail is None:
                continue
            seq, last_digest, complete = tail
            if digest is None:
                digest = last_digest
                if not complete:
                    with open(path, "ab") as f:  # close the cut line; the verifier reports it, once
                        f.write(b"\n")
            if seq is not None:  # a file holding only a cut line takes its seq from the file before
                self._chain = ChainWriter(seq, digest)
                break
        self._fd = os.open(self.chain_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        if self._first_seqs[0] is None:  # a new live file starts with the next line of the chain
            self._first_seqs[0] = self._chain.head[0] + 1

    def _lock_chain(self) -> None:
        if self._lock_fd is not None:
            return
        # Hidden, so `audit.w1.jsonl*` globs given to `verify` do not pick it up.
        lock_path = self.chain_path.with_name(f".{self.chain_path.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            alternative = worker_chain_path(self.template, f"{self.worker_id}.p{os.getpid()}")
            log.warning(
                "audit file %s is held by another process with worker id %s; writing %s instead",
                self.chain_path,
                self.worker_id,
                alternative,
            )
            self.chain_path = alternative
            return self._lock_chain()
        self._lock_fd = fd

    # -- writing -------------------------------------------------------------------------------------------

    def accept(self, events: Sequence[bytes]) -> None:
        if self.healthy and not self._queue and not self._spooling():
            try:
                done = self._write_events(events)
            except SinkUnavailable as exc:
                done = exc.delivered
                self.failures += 1
                self._mark(False, str(exc))
            self.delivered += done
            events = events[done:]
            if not events:
                return
        super().accept(events)

    async def _deliver(self, batch: list[bytes]) -> None:
        self._write_events(batch)  # delivery accounting is the base class's (_commit)

    def _write_events(self, events: Sequence[bytes]) -> int:
        """Chain and write; return the number written. Raise SinkUnavailable(delivered=n) on failure."""
        done = 0
        try:
            if self._fd is None:
                self._open_chain()
            lines: list[bytes] = []
            pending = 0
            for event in events:
                length = self._chain.next_length(event)
                if self._size + pending + length > self.max_bytes and self._size + pending > 0:
                    self._write_lines(lines)
                    done += len(lines)
                    lines, pending = [], 0
                    self._rotate()
                line = self._chain.next_line_from_json(event)
                lines.append(line)
                pending += len(line)
            self._write_lines(lines)
            done += len(lines)
        except _PartialWrite as exc:
            raise SinkUnavailable(
                f"write to {self.chain_path.name} failed: {exc}", done + exc.complete
            ) from None
        except OSError as exc:
            raise SinkUnavailable(
                f"write to {self.chain_path.name} failed: {describe_error(exc)}", done
            ) from None
        self._after_write()
        return done

    def _write_lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self._fd is not None
        data = b"".join(lines)
        view = memoryview(data)
        offset = 0
        try:
            while offset < len(data):
                offset += os.write(self._fd, view[offset:])
        except OSError as exc:
            # Count the complete lines that reached the file, then forget the in-memory chain state: the next
            # attempt re-reads the file's tail (closing a cut line, which the verifier will report once).
            complete, position = 0, 0
            for line in lines:
                position += len(line)
                if position > offset:
                    break
                complete += 1
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            raise _PartialWrite(complete, exc) from None
        self._size += offset
        self._dirty = True

    def _rotate(self) -> None:
        """Shift `.1..N` up by one, the live file to `.1`, and start a new file with a rotation record."""
        assert self._fd is not None
        self._fsync_now()
        os.close(self._fd)
        self._fd = None
        if self.backups == 0:
            self.chain_path.unlink(missing_ok=True)
        else:
            rotated_path(self.chain_path, self.backups).unlink(missing_ok=True)
            for index in range(self.backups - 1, -1, -1):
                source = rotated_path(self.chain_path, index)
                if source.exists():
                    source.rename(rotated_path(self.chain_path, index + 1))
        next_seq = self._chain.head[0] + 1
        self._first_seqs = ([next_seq] + self._first_seqs[: self.backups])[: self.backups + 1]
        retained = next((s for s in reversed(self._first_seqs) if s is not None), next_seq)
        self._fd = os.open(self.chain_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = 0
        self.rotations += 1
        marker = encode_event(
            AuditEvent(
                ts=rfc3339_ms(self._clock()),
                kind=KIND_FILE_ROTATED,
                worker=self.worker_id,
                details={
                    "retained_from_seq": retained,
                    "previous_file": rotated_path(self.chain_path, 1).name if self.backups else None,
                },
            )
        )
        try:
            self._write_lines([self._chain.next_line_from_json(marker)])
        except _PartialWrite as exc:
            raise _PartialWrite(0, exc.cause) from None  # the marker is not one of the caller's events

    def _after_write(self) -> None:
        if self.fsync_interval is None or not self._dirty:
            return
        if self.fsync_interval == 0:
            self._fsync_now()
        elif self._fsync_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._fsync_now()
                return
            self._fsync_handle = loop.call_later(self.fsync_interval, self._fsync_timer)

    def _fsync_timer(self) -> None:
        self._fsync_handle = None
        try:
            self._fsync_now()
        except OSError as exc:
            self._mark(False, f"fsync failed: {describe_error(exc)}")

    def _fsync_now(self) -> None:
        if self._fd is not None and self._dirty and self.fsync_interval is not None:
            os.fsync(self._fd)
        self._dirty = False

    async def _close(self) -> None:
        if self._fsync_handle is not None:
            self._fsync_handle.cancel()
            self._fsync_handle = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._fsync_now()
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


class _SeqOnly(msgspec.Struct):
    seq: int


def _seq_of(line: bytes) -> int | None:
    try:
        return msgspec.json.decode(line, type=_SeqOnly).seq
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _first_seq(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return _seq_of(f.readline())
    except OSError:
        return None


def _tail_state(path: Path) -> tuple[int | None, str, bool] | None:
    """`(seq to continue from, hash of the last line, last line complete?)` of a chain file; None if empty.

    A cut last line (a write interrupted mid-line) is linked to as is, with the seq of the last good line, so
    the verifier reports exactly that line and the chain goes on. The seq is None when no line parses.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size == 0:
        return None
    block = 1 << 16
    with path.open("rb") as f:
        while True:
            start = max(0, size - block)
            f.seek(start)
            data = f.read()
            lines = data.split(b"\n")
            complete = data.endswith(b"\n")
            if complete:
                lines.pop()  # the empty string after the final newline
            candidates = lines if start == 0 else lines[1:]
            if len(candidates) >= 2 or start == 0:
                break
            block *= 4
    last = candidates[-1]
    digest = hashlib.sha256(last).hexdigest()
    for line in reversed(candidates if complete else candidates[:-1]):
        seq = _seq_of(line)
        if seq is not None:
            return seq, digest, complete
    return None, digest, complete
