"""The dispatcher and the delivery machinery every sink shares: batching, block, spool, overflow, shutdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit.config import AuditConfig
from gateway.audit.dispatcher import AuditDispatcher, build_sinks
from gateway.audit.sinks import FileSink
from gateway.audit.spool import Spool
from gateway.enforcement.audit import AuditEvent, AuditSecretError
from tests.audit.helpers import MemorySink, decision, run, seq_numbers


def kinds(raw: list[bytes]) -> list[str]:
    return [json.loads(r)["kind"] for r in raw]


def test_events_are_stamped_and_delivered_in_order_as_one_batch_per_iteration() -> None:
    async def scenario() -> None:
        sink = MemorySink(batch_size=1000)
        dispatcher = AuditDispatcher([sink], worker_id=3, clock=lambda: 1714564800.5)
        await dispatcher.start()
        for n in range(50):
            assert dispatcher.emit(decision(n))
        await sink.received.wait(lambda items: len(items) == 50)
        assert sink.attempts == 1  # all 50 were emitted in one loop iteration
        first = json.loads(sink.received.items[0])
        assert first["ts"] == "2024-05-01T12:00:00.500Z" and first["worker"] == 3
        assert seq_numbers(sink.received.items) == list(range(50))
        await dispatcher.aclose()

    run(scenario)


def test_emit_encodes_eagerly_so_a_secret_fails_at_the_caller() -> None:
    async def scenario() -> None:
        dispatcher = AuditDispatcher([MemorySink()], worker_id=1)
        await dispatcher.start()
        with pytest.raises(AuditSecretError):
            dispatcher.emit(AuditEvent(kind="auth", details={"password": "p"}))
        await dispatcher.aclose()

    run(scenario)


def test_block_mode_refuses_while_down_and_delivers_everything_accepted_after_recovery() -> None:
    async def scenario() -> None:
        sink = MemorySink(on_failure="block", retry_initial=0.02, retry_max=0.05)
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        assert dispatcher.emit(decision(0))
        await sink.received.wait(lambda items: len(items) == 1)

        sink.down = True
        accepted = [n for n in range(1, 4) if dispatcher.emit(decision(n))]
        assert accepted == [1, 2, 3]  # the outage is not known before a delivery fails
        await sink.wait_health(False, timeout=5)
        assert not dispatcher.available()
        assert [dispatcher.emit(decision(n)) for n in range(4, 8)] == [False] * 4
        dispatcher.record(
            AuditEvent(kind="decision", decision="error", reason="audit unavailable", connection_id="c99")
        )

        sink.down = False
        await sink.wait_health(True, timeout=5)
        assert dispatcher.emit(decision(8))
        await sink.received.wait(lambda items: 8 in seq_numbers(items))
        assert seq_numbers(sink.received.items) == [0, 1, 2, 3, 99, 8]
        states = [json.loads(r)["details"] for r in sink.received.items if b"audit_sink_state" in r]
        assert [s["healthy"] for s in states] == [False, True]
        assert dispatcher.stats()["refused"] == 4
        await dispatcher.aclose()

    run(scenario)


def test_block_mode_sink_down_at_start_blocks_until_it_comes_up() -> None:
    async def scenario() -> None:
        sink = MemorySink(retry_initial=0.02, retry_max=0.05)
        sink.down = True
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        assert not dispatcher.emit(decision(0))
        sink.down = False
        await sink.wait_health(True, timeout=5)  # probed with nothing to send
        assert dispatcher.emit(decision(1))
        await sink.received.wait(lambda items: 1 in seq_numbers(items))
        await dispatcher.aclose()

    run(scenario)


def test_a_healthy_sink_keeps_working_while_another_is_down() -> None:
    async def scenario() -> None:
        broken = MemorySink("broken", on_failure="block", retry_initial=0.02, retry_max=0.05)
        fine = MemorySink("fine")
        dispatcher = AuditDispatcher([broken, fine], worker_id=1)
        await dispatcher.start()
        broken.down = True
        dispatcher.emit(decision(0))
        await broken.wait_health(False, timeout=5)
        await fine.received.wait(lambda items: "audit_sink_state" in kinds(items))
        assert dispatcher.stats()["blocked_by"] == ["broken"]
        await dispatcher.aclose()

    run(scenario)


def test_spool_mode_loses_nothing_and_keeps_order_across_an_outage(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=8192)
        sink = MemorySink(on_failure="spool", spool=spool, batch_size=16, retry_initial=0.02, retry_max=0.05)
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        for n in range(10):
            assert dispatcher.emit(decision(n))
        await sink.received.wait(lambda items: len(seq_numbers(items)) == 10)

        sink.down = True
        for n in range(10, 20):
            assert dispatcher.emit(decision(n))
        await sink.wait_health(False, timeout=5)
        for n in range(20, 200):  # spooled: the sink is down but does not block
            assert dispatcher.emit(decision(n))
        assert spool.pending_count > 0

        sink.down = False
        await sink.received.wait(lambda items: len(seq_numbers(items)) == 200)
        assert seq_numbers(sink.received.items) == list(range(200))
        assert spool.is_empty() and spool.disk_bytes == 0
        await dispatcher.aclose()

    run(scenario)


def test_a_full_spool_blocks_reports_overflow_and_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path / "spool", max_bytes=4096, segment_bytes=4096)
        sink = MemorySink(
            on_failure="spool", spool=spool, queue_max=5, batch_size=50, retry_initial=0.02, retry_max=0.05
        )
        observer = MemorySink("observer")
        dispatcher = AuditDispatcher([sink, observer], worker_id=1)
        await dispatcher.start()
        sink.down = True
        accepted: list[int] = []
        n = 0
        while dispatcher.emit(decision(n)):
            accepted.append(n)
            n += 1
            if n % 5 == 0:
                await observer.received.wait(lambda items, n=n: len(seq_numbers(items)) >= n)
            assert n < 1000, "a full spool must flip the sink to blocking"
        assert sink.blocking and sink.stats()["overflow"] > 0
        await observer.received.wait(lambda items: "audit_spool_overflow" in kinds(items))

        # While blocked, ungated records still go to the bounded overflow; beyond it they are counted.
        for m in range(1000, 1010):
            dispatcher.record(decision(m))
        await observer.received.wait(lambda items: 1009 in seq_numbers(items))
        dropped = sink.dropped_total
        assert dropped > 0

        sink.down = False
        await sink.wait_health(True, timeout=5)
        await sink.received.wait(lambda items: "audit_events_dropped" in kinds(items))
        assert dispatcher.emit(decision(2000))
        await sink.received.wait(lambda items: 2000 in seq_numbers(items))
        got = seq_numbers(sink.received.items)
        assert got[: len(accepted)] == accepted  # every gated event, in order
        assert len(got) == len(accepted) + 10 - dropped + 1
        report = next(json.loads(r) for r in sink.received.items if b"audit_events_dropped" in r)
        assert report["details"] == {"sink": "mem", "count": dropped}
        await dispatcher.aclose()

    run(scenario)


def test_shutdown_persists_undelivered_events_to_the_spool_for_the_next_worker(tmp_path: Path) -> None:
    async def first_life() -> None:
        sink = MemorySink(on_failure="spool", spool=Spool(tmp_path / "sp", 1 << 20, 8192), retry_initial=0.02)
        sink.down = True
        dispatcher = AuditDispatcher([sink], worker_id=1, close_timeout=0.2)
        await dispatcher.start()
        for n in range(30):
            assert dispatcher.emit(decision(n))
        await dispatcher.aclose()
        assert sink.received.items == []

    async def second_life() -> None:
        sink = MemorySink(on_failure="spool", spool=Spool(tmp_path / "sp", 1 << 20, 8192))
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        await sink.received.wait(lambda items: len(seq_numbers(items)) == 30)
        assert seq_numbers(sink.received.items) == list(range(30))
        await dispatcher.aclose()

    run(first_life)
    run(second_life)


def test_write_ahead_routes_every_event_through_the_spool(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path / "wa", 1 << 20, 8192)
        sink = MemorySink(on_failure="spool", spool=spool, write_ahead=True)
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        for n in range(40):
            dispatcher.emit(decision(n))
        await sink.received.wait(lambda items: len(items) == 40)
        assert seq_numbers(sink.received.items) == list(range(40))
        assert spool.is_empty()
        await dispatcher.aclose()

    run(scenario)


def test_build_sinks_from_config_uses_per_worker_paths(tmp_path: Path) -> None:
    import msgspec

    config = msgspec.convert(
        {
            "sinks": [
                {"type": "file", "path": str(tmp_path / "audit.jsonl")},
                {
                    "type": "http",
                    "url": "http://127.0.0.1:9/collect",
                    "on_failure": "spool",
                    "spool": {"path": str(tmp_path / "spool")},
                },
            ]
        },
        AuditConfig,
    )
    sinks = build_sinks(config, worker_id=4)
    assert isinstance(sinks[0], FileSink) and sinks[0].chain_path == tmp_path / "audit.w4.jsonl"
    assert sinks[1].spool is not None and sinks[1].spool.directory == tmp_path / "spool" / "w4" / "http2"
