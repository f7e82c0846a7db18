"""Micro benchmarks of the generated Kafka codecs on the messages the proxy decodes on its hot path.

Run: ``.venv/bin/python -m pytest bench/micro/test_codec_micro.py --benchmark-only``. Benchmarks report
numbers only; ``make bench-check`` compares them with ``bench/baseline/micro.json``.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

import pytest

from gateway.protocols.kafka import codec
from gateway.protocols.kafka.generated import fetch, metadata, produce

METADATA, FETCH, PRODUCE = 3, 1, 0


def metadata_response() -> metadata.MetadataResponse:
    """3 brokers, 50 topics x 3 partitions, replication factor 3: a mid-sized cluster's full Metadata."""
    brokers = [
        metadata.MetadataResponseBroker(
            node_id=i, host=f"broker-{i}.kafka.internal", port=9092, rack=f"rack-{i}"
        )
        for i in range(3)
    ]
    topics = [
        metadata.MetadataResponseTopic(
            name=f"orders.events.{t:03d}",
            topic_id=UUID(int=t + 1),
            partitions=[
                metadata.MetadataResponsePartition(
                    partition_index=p,
                    leader_id=p % 3,
                    leader_epoch=5,
                    replica_nodes=[0, 1, 2],
                    isr_nodes=[0, 1, 2],
                )
                for p in range(3)
            ],
        )
        for t in range(50)
    ]
    return metadata.MetadataResponse(brokers=brokers, cluster_id="cluster-a", controller_id=1, topics=topics)


def fetch_response() -> fetch.FetchResponse:
    """4 partitions of 64 KiB record data each, plus the NodeEndpoints the proxy rewrites."""
    records = os.urandom(64 * 1024)
    partitions = [
        fetch.FetchResponsePartitionData(
            partition_index=p,
            high_watermark=1000,
            last_stable_offset=1000,
            log_start_offset=0,
            records=records,
        )
        for p in range(4)
    ]
    return fetch.FetchResponse(
        responses=[fetch.FetchResponseFetchableTopicResponse(topic_id=UUID(int=9), partitions=partitions)],
        node_endpoints=[
            fetch.FetchResponseNodeEndpoint(node_id=i, host=f"broker-{i}", port=9092) for i in range(3)
        ],
    )


def produce_request() -> produce.ProduceRequest:
    """acks=-1 produce of 4 partitions with 16 KiB of record data each."""
    records = os.urandom(16 * 1024)
    return produce.ProduceRequest(
        acks=-1,
        timeout_ms=30000,
        topic_data=[
            produce.ProduceRequestTopicProduceData(
                name="orders.events.000",
                partition_data=[
                    produce.ProduceRequestPartitionProduceData(index=p, records=records) for p in range(4)
                ],
            )
        ],
    )


CASES: list[Any] = [
    pytest.param("response", METADATA, 12, metadata_response, id="metadata_response_v12"),
    pytest.param("response", FETCH, 16, fetch_response, id="fetch_response_v16"),
    pytest.param("request", PRODUCE, 9, produce_request, id="produce_request_v9"),
]


def _codec(kind: str) -> tuple[Any, Any]:
    if kind == "request":
        return codec.encode_request, codec.decode_request
    return codec.encode_response, codec.decode_response


@pytest.mark.parametrize(("kind", "api_key", "version", "build"), CASES)
def test_decode(benchmark: Any, kind: str, api_key: int, version: int, build: Any) -> None:
    encode, decode = _codec(kind)
    wire = encode(api_key, version, build())
    benchmark(decode, api_key, version, wire)


@pytest.mark.parametrize(("kind", "api_key", "version", "build"), CASES)
def test_encode(benchmark: Any, kind: str, api_key: int, version: int, build: Any) -> None:
    encode, _ = _codec(kind)
    message = build()
    benchmark(encode, api_key, version, message)


@pytest.mark.parametrize(("kind", "api_key", "version", "build"), CASES)
def test_decode_then_encode(benchmark: Any, kind: str, api_key: int, version: int, build: Any) -> None:
    """What a rewriting proxy pays per message: parse, (rewrite,) serialise again."""
    encode, decode = _codec(kind)
    wire = encode(api_key, version, build())

    def round_trip() -> bytes:
        message, _ = decode(api_key, version, wire)
        return encode(api_key, version, message)

    benchmark(round_trip)
