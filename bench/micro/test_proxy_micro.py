"""Micro benchmarks of the proxy's per-frame work that is not a full codec round trip.

- frame header parse: `framing.read_request_header` on the frames a producer and a consumer send most
  (Produce v9, header v2 with a client id; Fetch v12; Metadata v12), read from the session's buffer type;
- address rewrite: `addresses.rewrite_response` on a decoded Metadata v12 response with 3 brokers and 50
  topics (each round gets a freshly decoded message: the rewrite changes it in place);
- Fetch skim: `skim.skim_fetch_response` on a 1 MiB Fetch v15 response (the highest version the gateway
  advertises by default, `kafka.max_api_versions`), once as one partition of 1 MiB and once as 4 topics x
  16 partitions of 16 KiB: what the gateway walks instead of decoding records.

Run: ``.venv/bin/python -m pytest bench/micro/test_proxy_micro.py --benchmark-only``. Each benchmark also
checks what it measured returned the right thing, so a broken fast path cannot pass as a fast one.
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

import pytest

from gateway.protocols.kafka import apis, codec, framing
from gateway.protocols.kafka.addresses import AddressBook, rewrite_response
from gateway.protocols.kafka.generated import fetch, metadata
from gateway.protocols.kafka.skim import skim_fetch_response
from tests.native.batches import build_batch

KIB = 1024
MIB = 1024 * KIB
FETCH_VERSION = 15  # the default cap (DEFAULT_MAX_VERSIONS["Fetch"]): responses stream without NodeEndpoints


def _request_frame(api_key: int, api_version: int, body_size: int) -> tuple[memoryview, int]:
    """A size-prefixed request frame (random body) in a bytearray, as the session's linear buffer holds it."""
    header_version = codec.request_header_version(api_key, api_version)
    header = framing.request_header(api_key, api_version, 12345, "streamgate-bench", header_version)
    payload = header + random.Random(body_size).randbytes(body_size)
    frame = bytearray(len(payload).to_bytes(4, "big") + payload)
    return memoryview(frame), header_version


@pytest.mark.parametrize(
    ("api_key", "api_version", "body_size"),
    [
        pytest.param(apis.PRODUCE, 9, 64 * KIB, id="produce_v9"),
        pytest.param(apis.FETCH, 12, 120, id="fetch_v12"),
        pytest.param(apis.METADATA, 12, 40, id="metadata_v12"),
    ],
)
def test_read_request_header(benchmark: Any, api_key: int, api_version: int, body_size: int) -> None:
    buf, header_version = _request_frame(api_key, api_version, body_size)
    end = len(buf)
    header = benchmark(framing.read_request_header, buf, 4, end, header_version)
    assert (header.api_key, header.api_version, header.correlation_id) == (api_key, api_version, 12345)
    assert header.client_id == "streamgate-bench"
    assert end - 4 - header.body_offset == body_size


def _metadata_response() -> metadata.MetadataResponse:
    """3 brokers, 50 topics x 3 partitions with topic ids: a mid-sized cluster's full Metadata."""
    return metadata.MetadataResponse(
        brokers=[
            metadata.MetadataResponseBroker(
                node_id=i, host=f"broker-{i}.kafka.internal", port=9092, rack=f"r{i}"
            )
            for i in range(3)
        ],
        cluster_id="cluster-a",
        controller_id=1,
        topics=[
            metadata.MetadataResponseTopic(
                name=f"orders.events.{t:03d}",
                topic_id=UUID(int=t + 1),
                partitions=[
                    metadata.MetadataResponsePartition(
                        partition_index=p, leader_id=p % 3, replica_nodes=[0, 1, 2], isr_nodes=[0, 1, 2]
                    )
                    for p in range(3)
                ],
            )
            for t in range(50)
        ],
    )


def test_rewrite_metadata_addresses_3_brokers_50_topics(benchmark: Any) -> None:
    wire = codec.encode_response(apis.METADATA, 12, _metadata_response())
    book = AddressBook("127.0.0.1", 9100)

    def fresh_message() -> tuple[tuple[Any, ...], dict[str, Any]]:
        message, _ = codec.decode_response(apis.METADATA, 12, wire)
        return (apis.METADATA, 12, message, book), {}

    # A fresh decode per round (not timed): the rewrite mutates the message it is given.
    benchmark.pedantic(rewrite_response, setup=fresh_message, rounds=2000, iterations=1, warmup_rounds=20)
    rewritten = fresh_message()[0][2]
    rewrite_response(apis.METADATA, 12, rewritten, book)
    assert {(b.host, b.port) for b in rewritten.brokers} == {("127.0.0.1", 9100 + i) for i in range(3)}
    assert len(book.topic_names) == 50
    assert book.nodes[1] == ("broker-1.kafka.internal", 9092)


def _record_data(size: int, seed: int) -> bytes:
    """Uncompressed record batches of four ~1 KiB records, as many as fit in `size` (what Tansu returns)."""
    rng = random.Random(seed)
    records_per_batch = 4
    batches: list[bytes] = []
    total = 0
    while True:
        offset = len(batches) * records_per_batch
        batch = build_batch([(None, rng.randbytes(KIB - 80), []) for _ in range(records_per_batch)], offset)
        if total + len(batch) > size:
            return b"".join(batches)
        batches.append(batch)
        total += len(batch)


def _fetch_response(topics: int, partitions: int, per_partition: int) -> bytes:
    data = _record_data(per_partition, seed=topics * 1000 + partitions)
    message = fetch.FetchResponse(
        responses=[
            fetch.FetchResponseFetchableTopicResponse(
                topic_id=UUID(int=t + 1),
                partitions=[
                    fetch.FetchResponsePartitionData(
                        partition_index=p,
                        high_watermark=10_000,
                        last_stable_offset=10_000,
                        log_start_offset=0,
                        records=data,
                    )
                    for p in range(partitions)
                ],
            )
            for t in range(topics)
        ],
    )
    return codec.encode_response(apis.FETCH, FETCH_VERSION, message)


@pytest.mark.parametrize(
    ("topics", "partitions", "per_partition"),
    [pytest.param(1, 1, MIB, id="1x1x1MiB"), pytest.param(4, 16, 16 * KIB, id="4x16x16KiB")],
)
def test_skim_fetch_response_v15_1mib(
    benchmark: Any, topics: int, partitions: int, per_partition: int
) -> None:
    wire = _fetch_response(topics, partitions, per_partition)
    assert 0.9 * MIB <= len(wire) <= MIB  # "1 MiB": full batches only, as a broker sends them
    result = benchmark(skim_fetch_response, wire, 0, len(wire), FETCH_VERSION)
    assert len(result.partitions) == topics * partitions
    assert not result.has_top_level_tags  # v15 has no NodeEndpoints: the response is forwarded unchanged
    spans = {span.records_end - span.records_start for span in result.partitions}
    assert len(spans) == 1 and 0.9 * per_partition <= spans.pop() <= per_partition
    median = benchmark.stats.stats.median
    benchmark.extra_info["MB/s"] = round(len(wire) / median / 1e6, 1)
