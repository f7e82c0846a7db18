"""Kafka sink against a real Tansu broker; the events are read back with confluent-kafka."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.audit.dispatcher import AuditDispatcher
from gateway.audit.kafka import KafkaSink
from gateway.devstack.processes import ManagedProcess, free_port, start_tansu
from tests.audit.helpers import decision, run, seq_numbers

pytestmark = pytest.mark.integration


async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll a condition of an external process's effect, with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=10
    )
    futures[topic].result(15)


def read_back(bootstrap: str, topic: str, decisions: int, timeout: float = 20.0) -> list[tuple[bytes, bytes]]:
    """Every message of partition 0 until `decisions` decision events were seen (state events ride along)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"audit-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        # No group join needed: read partition 0 from the start.
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(seq_numbers([value for _, value in out])) < decisions and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            out.append((message.key(), message.value()))
        return out
    finally:
        consumer.close()


def test_events_are_produced_in_order_and_read_back(tansu: ManagedProcess) -> None:
    topic = f"audit-{uuid.uuid4().hex[:8]}"
    create_topic(tansu.address, topic)

    async def scenario() -> None:
        sink = KafkaSink("kafka", tansu.address, topic, worker_id=5, batch_size=100, delivery_timeout=10)
        dispatcher = AuditDispatcher([sink], worker_id=5)
        await dispatcher.start()
        assert sink.healthy
        for n in range(250):
            assert dispatcher.emit(decision(n))
        await dispatcher.aclose()
        assert sink.stats()["delivered"] == 250

    run(scenario)
    messages = read_back(tansu.address, topic, 250)
    assert {key for key, _ in messages} == {b"w5"}
    assert seq_numbers([value for _, value in messages]) == list(range(250))
    assert json.loads(messages[0][1])["worker"] == 5


def test_a_broker_that_is_not_there_blocks_emit() -> None:
    async def scenario() -> None:
        sink = KafkaSink(
            "kafka",
            f"127.0.0.1:{free_port()}",
            "audit",
            worker_id=1,
            delivery_timeout=1.0,
            retry_initial=0.1,
            retry_max=0.2,
        )
        dispatcher = AuditDispatcher([sink], worker_id=1, close_timeout=0.5)
        await dispatcher.start()
        assert not sink.healthy
        assert not dispatcher.emit(decision(0))
        await dispatcher.aclose()

    run(scenario)


def test_broker_outage_blocks_and_recovery_delivers_what_was_accepted(tmp_path: object) -> None:
    """Tansu keeps topics in memory, so a restarted broker is empty: the topic is created again before the
    sink's retry can land (the sink keeps the batch and retries it until it is acknowledged)."""
    port = free_port()
    broker = start_tansu(port=port)
    topic = "audit-outage"
    try:
        create_topic(broker.address, topic)

        async def scenario() -> None:
            nonlocal broker
            sink = KafkaSink(
                "kafka",
                broker.address,
                topic,
                worker_id=1,
                delivery_timeout=2.0,
                retry_initial=0.2,
                retry_max=0.5,
            )
            dispatcher = AuditDispatcher([sink], worker_id=1, close_timeout=5)
            await dispatcher.start()
            assert dispatcher.emit(decision(0))
            await wait_until(lambda: sink.delivered >= 1, timeout=10)

            broker.stop()
            assert dispatcher.emit(decision(1))
            await sink.wait_health(False, timeout=20)
            assert not dispatcher.emit(decision(2))

            broker = start_tansu(port=port)
            create_topic(broker.address, topic)
            await sink.wait_health(True, timeout=30)
            assert dispatcher.emit(decision(3))
            await dispatcher.aclose()

        run(scenario, timeout=90)
        messages = read_back(broker.address, topic, 2)
        got = seq_numbers([value for _, value in messages])
        assert got == [1, 3]  # 0 went to the first broker's (memory) log, 2 was refused
        states = [json.loads(v)["details"] for _, v in messages if b"audit_sink_state" in v]
        assert [s["healthy"] for s in states][-1] is True
    finally:
        broker.stop()
