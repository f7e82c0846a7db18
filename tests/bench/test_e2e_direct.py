"""Each client workload and scenario at tiny sizes against a real broker: the counts must add up.

These tests check that the bench measures what it claims (every produced record acknowledged, every
acknowledged record consumed, every connection opened) — never how fast anything is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.e2e.harness import BenchContext, ClientProcess, run_client
from bench.e2e.scenarios import PROFILES, ConnectionScaling, ConsumeThroughput, ProduceThroughput
from bench.e2e.targets import DirectTarget
from gateway.devstack.processes import ManagedProcess

pytestmark = pytest.mark.integration
SMOKE = PROFILES["smoke"]


@pytest.fixture(scope="module")
def ctx(tansu: ManagedProcess, tmp_path_factory: pytest.TempPathFactory) -> BenchContext:
    return BenchContext(broker=tansu, profile="smoke", log_dir=tmp_path_factory.mktemp("bench-logs"))


@pytest.fixture
def topic(ctx: BenchContext) -> Iterator[str]:
    name = ctx.new_topic("test")
    yield name
    ctx.delete_topic(name)


@pytest.fixture(scope="module")
def direct(ctx: BenchContext) -> DirectTarget:
    target = DirectTarget()
    target.start(ctx.broker)
    return target


def test_every_produced_record_is_acked_and_then_consumed(ctx: BenchContext, topic: str) -> None:
    produced = run_client(
        "produce_throughput",
        {"bootstrap": ctx.direct_bootstrap, "topic": topic, "records": 200, "record_size": 1024},
        timeout=60,
    )
    assert produced["complete"] and produced["sent"] == 200 and produced["records"] == 200
    assert produced["bytes"] == 200 * 1024 and produced["errors"] == 0 and produced["unacknowledged"] == 0
    consumed = run_client(
        "consume_throughput",
        {"bootstrap": ctx.direct_bootstrap, "topic": topic, "records": 201, "max_seconds": 10},
        timeout=60,
    )
    assert consumed["records"] == 201  # 200 + the warm-up record
    assert consumed["bytes"] == 201 * 1024 and consumed["complete"]


def test_consumer_reports_what_it_got_when_records_are_missing(ctx: BenchContext, topic: str) -> None:
    run_client(
        "produce_throughput",
        {"bootstrap": ctx.direct_bootstrap, "topic": topic, "records": 50, "warm_up": False},
        timeout=60,
    )
    consumed = run_client(
        "consume_throughput",
        {"bootstrap": ctx.direct_bootstrap, "topic": topic, "records": 80, "max_seconds": 2},
        timeout=60,
    )
    assert consumed["records"] == 50 and not consumed["complete"]


def test_paced_latency_records_one_sample_per_measured_ack(ctx: BenchContext, topic: str) -> None:
    result = run_client(
        "produce_latency",
        {"bootstrap": ctx.direct_bootstrap, "topic": topic, "rate": 400, "duration_s": 0.5, "warmup_s": 0.1},
        timeout=60,
    )
    assert result["sent"] == result["acked"] == 240 and result["errors"] == 0
    assert result["samples"] == result["measured_sent"] == 200
    assert 0 < result["p50"] <= result["p99"] <= result["p99_9"] <= result["max"]


def test_end_to_end_latency_receives_every_measured_record(ctx: BenchContext, topic: str) -> None:
    result = run_client(
        "e2e_latency",
        {
            "bootstrap": ctx.direct_bootstrap,
            "topic": topic,
            "rate": 200,
            "duration_s": 0.5,
            "warmup_s": 0.1,
            "fetch_wait_max_ms": 10,
        },
        timeout=60,
    )
    assert result["produced"] == result["received"] == result["samples"] == 100
    assert result["complete"] and 0 < result["p50"] <= result["p99"]


def test_idle_connections_are_held_until_released(ctx: BenchContext) -> None:
    holder = ClientProcess("idle_connections", {"bootstrap": ctx.direct_bootstrap, "count": 25})
    try:
        opened = holder.read_result(30)
        assert opened["opened"] == 25 and opened["complete"]
        assert holder.proc.poll() is None  # still holding them
    finally:
        assert holder.finish() == 0


def test_scenarios_measure_direct_with_consistent_counts(ctx: BenchContext, direct: DirectTarget) -> None:
    produce = ProduceThroughput().measure(ctx, direct, SMOKE["produce_throughput"])
    assert produce.raw["records"] == 200 and produce.metrics["records_per_s"] > 0
    consume_scenario = ConsumeThroughput()
    consume_scenario.begin_round(ctx, SMOKE["consume_throughput"])
    try:
        # two targets in one round read the same pre-filled records
        first = consume_scenario.measure(ctx, direct, SMOKE["consume_throughput"])
        second = consume_scenario.measure(ctx, direct, SMOKE["consume_throughput"])
    finally:
        consume_scenario.end_round(ctx)
    for consume in (first, second):
        assert consume.raw["records"] == 200 and consume.raw["bytes"] == 200 * 1024
    with pytest.raises(RuntimeError, match="without a pre-filled topic"):
        consume_scenario.measure(ctx, direct, SMOKE["consume_throughput"])
    connections = ConnectionScaling().measure(ctx, direct, SMOKE["connection_scaling"])
    assert connections.raw["opened"] == 20
    assert connections.raw["rss_open_kib"] > 0 and connections.metrics["light_p99"] > 0
    assert connections.metrics["rss_kib_per_conn"] == pytest.approx(
        (connections.raw["rss_open_kib"] - connections.raw["rss_before_kib"]) / 20
    )


def test_unreachable_target_gives_a_bounded_client_error(tmp_path: Path) -> None:
    from bench.e2e.harness import ClientError
    from gateway.devstack.processes import free_port

    with pytest.raises(ClientError, match="warm-up send"):
        run_client(
            "probe",
            {"bootstrap": f"127.0.0.1:{free_port()}", "topic": "nowhere", "max_seconds": 2},
            timeout=30,
        )
