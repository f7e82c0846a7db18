"""aiokafka, kcat and kafkajs through the gateway (2 workers) against a real Tansu broker."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import create_topic, unique_topic

pytestmark = pytest.mark.integration
JS_DIR = Path(__file__).resolve().parents[1] / "js"


def test_aiokafka_produce_and_group_consume(gateway):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = unique_topic("aio")
    create_topic(gateway.bootstrap, topic, partitions=2)
    values = [f"aio-{i}".encode() for i in range(100)]

    async def run() -> tuple[list[bytes], list[tuple[str, int]]]:
        producer = AIOKafkaProducer(bootstrap_servers=gateway.bootstrap)
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v)
            brokers = [(b.host, b.port) for b in producer.client.cluster.brokers()]
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=gateway.bootstrap, group_id=unique_topic("aiog"),
                                    auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                async for msg in consumer:
                    got.append(msg.value)
                    if len(got) == len(values):
                        break
            coordinator = consumer._coordinator.coordinator_id
            brokers.append(("coordinator", coordinator))
        finally:
            await consumer.stop()
        return got, brokers

    got, brokers = asyncio.run(run())
    assert sorted(got) == sorted(values)
    for host, port in brokers[:-1]:
        assert host == "127.0.0.1" and port >= gateway.node_port_base


def test_kcat_metadata_produce_consume(gateway, tansu):
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: run `make test` (bootstrap installs it)")
    topic = unique_topic("kcat")
    create_topic(gateway.bootstrap, topic, partitions=1)
    listing = subprocess.run(["kcat", "-b", gateway.bootstrap, "-L", "-t", topic], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert f"topic \"{topic}\" with 1 partitions" in listing
    assert f":{tansu.port}" not in listing
    assert f"127.0.0.1:{gateway.node_port_base + 111}" in listing or "at 127.0.0.1:" in listing
    lines = [f"k{i}:v{i}" for i in range(20)]
    subprocess.run(["kcat", "-b", gateway.bootstrap, "-t", topic, "-K:", "-P"], input="\n".join(lines) + "\n",
                   text=True, timeout=60, check=True, capture_output=True)
    out = subprocess.run(["kcat", "-b", gateway.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning",
                          "-f", "%k:%s\n"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == lines


def test_kafkajs_produce_and_group_consume(gateway, tansu):
    if not (JS_DIR / "node_modules" / "kafkajs").exists():
        pytest.fail("kafkajs is not installed: run `make test` (bootstrap installs tests/js)")
    topic = unique_topic("kjs")
    result = subprocess.run(["node", str(JS_DIR / "kafkajs_produce_consume.js"), gateway.bootstrap, topic,
                             unique_topic("kjsg"), "50"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(data["consumed"]) == sorted(f"kafkajs-{i}" for i in range(50))
    for broker in data["brokers"]:
        assert broker["host"] == "127.0.0.1"
        assert broker["port"] == gateway.node_port_base + broker["nodeId"]
        assert broker["port"] != tansu.port
