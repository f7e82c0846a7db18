"""The master's side of one control channel: never blocks on a slow worker, survives bad lines, sees EOF."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from gateway.supervisor.control import ControlReader, encode_message
from gateway.supervisor.workers import WorkerProcess


@pytest.fixture
def channel() -> Iterator[tuple[WorkerProcess, socket.socket]]:
    master_end, worker_end = socket.socketpair()
    master_end.setblocking(False)
    worker_end.settimeout(5)
    worker = WorkerProcess(
        pid=0, worker_id=1, generation=1, control=master_end, started_at=0.0, last_seen=0.0
    )
    yield worker, worker_end
    worker.close_control()
    worker_end.close()


def test_large_message_waits_in_the_outbox_instead_of_blocking(
    channel: tuple[WorkerProcess, socket.socket],
) -> None:
    worker, worker_end = channel
    big_config = {"blob": "x" * 4_000_000}
    worker.queue({"type": "reload", "config": big_config})

    assert worker.flush() is True
    assert worker.outbox, "a socketpair buffer cannot take 4 MB at once; the rest must wait"

    reader = ControlReader()
    received: list[dict] = []
    while not received:
        received.extend(reader.feed(worker_end.recv(1 << 20)))
        assert worker.flush() is True
    assert received == [{"type": "reload", "config": big_config}]
    assert not worker.outbox


def test_receive_returns_messages_errors_and_updates_last_seen(
    channel: tuple[WorkerProcess, socket.socket],
) -> None:
    worker, worker_end = channel
    worker_end.sendall(
        encode_message({"type": "ready"}) + b"garbage\n" + encode_message({"type": "heartbeat"})
    )
    before = time.monotonic()

    messages: list[dict] = []
    errors: list[str] = []
    while len(messages) < 2:
        received = worker.receive()
        assert received is not None
        messages += received[0]
        errors += received[1]

    assert messages == [{"type": "ready"}, {"type": "heartbeat"}]
    assert len(errors) == 1 and "not JSON" in errors[0]
    assert worker.last_seen >= before


def test_receive_reports_end_of_file_and_flush_reports_a_broken_channel(
    channel: tuple[WorkerProcess, socket.socket],
) -> None:
    worker, worker_end = channel
    worker_end.close()

    assert worker.receive() is None
    worker.queue({"type": "drain", "timeout": 1.0})
    assert worker.flush() is False
