"""Shared pieces of the audit tests: running coroutines on uvloop, a transport-less sink, test events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvloop

from gateway.audit.sinks import AuditSink, SinkUnavailable
from gateway.enforcement.audit import AuditEvent, Offsets, Principal, Resource

T = TypeVar("T")


def run(coro_factory: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run a test coroutine on uvloop (as the workers do), with an overall deadline."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_factory(), timeout)  # type: ignore[arg-type]

    return uvloop.run(bounded())


def decision(n: int, *, sub: str = "alice", topic: str = "payments.eu") -> AuditEvent:
    return AuditEvent(
        kind="decision",
        decision="allowed",
        principal=Principal(sub=sub, groups=("analysts",)),
        protocol="kafka",
        api="Produce",
        api_version=9,
        resource=Resource(topic=topic, partition=n % 4),
        offsets=Offsets(first=n * 10, last=n * 10 + 9),
        record_count=10,
        bytes=1000 + n,
        rule="writers",
        connection_id=f"c{n}",
    )


def seq_numbers(raw_events: list[bytes], kind: str = "decision") -> list[int]:
    """The `n` of decision events (encoded in `connection_id`), in received order."""
    out = []
    for raw in raw_events:
        data = json.loads(raw)
        if data.get("kind") == kind:
            out.append(int(data["connection_id"][1:]))
    return out


class Counter:
    """Thread-safe list of received items that a coroutine can wait on."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._cond = threading.Condition()

    def extend(self, items: list[bytes]) -> None:
        with self._cond:
            self.items.extend(items)
            self._cond.notify_all()

    def wait_blocking(self, predicate: Callable[[list[bytes]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.items), timeout)

    async def wait(self, predicate: Callable[[list[bytes]], bool], timeout: float = 10.0) -> None:
        ok = await asyncio.to_thread(self.wait_blocking, predicate, timeout)
        assert ok, f"condition not reached within {timeout}s; have {len(self.items)} items"


class MemorySink(AuditSink):
    """A sink whose transport is a list and a switch: exercises the shared delivery machinery only."""

    type_name = "memory"

    def __init__(self, name: str = "mem", **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.received = Counter()
        self.down = False
        self.attempts = 0

    async def _open(self) -> None:
        if self.down:
            raise SinkUnavailable("switched off")

    async def _deliver(self, batch: list[bytes]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)  # a real transport yields to the loop while delivering
        if self.down:
            raise SinkUnavailable("switched off")
        self.received.extend(batch)
