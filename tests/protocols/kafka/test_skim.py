"""The skims agree with the full codec on every version: same partitions, same record bytes, same tags."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols.kafka import codec
from gateway.protocols.kafka.generated.fetch import (
    FetchResponse,
    FetchResponseAbortedTransaction,
    FetchResponseEpochEndOffset,
    FetchResponseFetchableTopicResponse,
    FetchResponseNodeEndpoint,
    FetchResponsePartitionData,
)
from gateway.protocols.kafka.generated.produce import (
    ProduceRequest,
    ProduceRequestPartitionProduceData,
    ProduceRequestTopicProduceData,
)
from gateway.protocols.kafka.skim import SkimError, skim_fetch_response, skim_produce_request, splice_records

records = st.one_of(st.none(), st.binary(max_size=300))


def fetch_response(version: int, blobs: list[list[bytes | None]], endpoints: bool) -> FetchResponse:
    topics = []
    for t, parts in enumerate(blobs):
        partitions = [FetchResponsePartitionData(
            partition_index=i, error_code=(i % 3) * 3, high_watermark=100 + i,
            last_stable_offset=90 if version >= 4 else -1, log_start_offset=1 if version >= 5 else -1,
            aborted_transactions=[FetchResponseAbortedTransaction(producer_id=7, first_offset=3)]
            if i % 2 and version >= 4 else None,
            preferred_read_replica=-1, records=blob,
            diverging_epoch=FetchResponseEpochEndOffset(epoch=2, end_offset=5) if i == 1 and version >= 12 else
            FetchResponseEpochEndOffset()) for i, blob in enumerate(parts)]
        topics.append(FetchResponseFetchableTopicResponse(topic=f"topic-{t}" if version < 13 else "",
                                                          topic_id=uuid.UUID(int=t + 1 if version >= 13 else 0),
                                                          partitions=partitions))
    nodes = [FetchResponseNodeEndpoint(node_id=1, host="broker-1", port=9092)] if endpoints else []
    return FetchResponse(throttle_time_ms=1 if version >= 1 else 0, error_code=0,
                         session_id=5 if version >= 7 else 0, responses=topics, node_endpoints=nodes)


@pytest.mark.parametrize("version", range(0, 18))
@settings(max_examples=15, deadline=None)
@given(blobs=st.lists(st.lists(records, min_size=1, max_size=3), min_size=0, max_size=3), endpoints=st.booleans())
def test_fetch_skim_matches_decode(version, blobs, endpoints):
    msg = fetch_response(version, blobs, endpoints and version >= 16)
    wire = b"\xAA" * 3 + codec.encode_response(1, version, msg)
    decoded, end = codec.decode_response(1, version, wire, 3)
    sk = skim_fetch_response(wire, 3, len(wire), version)
    flat = [(t, p) for t in decoded.responses for p in t.partitions]
    assert len(sk.partitions) == len(flat)
    for span, (t, p) in zip(sk.partitions, flat, strict=True):
        assert span.partition == p.partition_index and span.error_code == p.error_code
        if version >= 13:
            assert span.topic_id == t.topic_id
        else:
            assert span.topic == t.topic
        got = None if span.records_start < 0 else wire[span.records_start : span.records_end]
        assert got == (p.records if p.records is None else bytes(p.records))
    assert sk.has_top_level_tags == bool(decoded.node_endpoints)


@pytest.mark.parametrize("version", range(0, 12))
@settings(max_examples=15, deadline=None)
@given(blobs=st.lists(st.lists(records, min_size=1, max_size=3), max_size=3), acks=st.sampled_from([-1, 0, 1]),
       txn=st.one_of(st.none(), st.text(max_size=10)))
def test_produce_skim_matches_decode(version, blobs, acks, txn):
    msg = ProduceRequest(transactional_id=txn if version >= 3 else None, acks=acks, timeout_ms=100, topic_data=[
        ProduceRequestTopicProduceData(name=f"t{t}", partition_data=[
            ProduceRequestPartitionProduceData(index=i, records=b) for i, b in enumerate(parts)])
        for t, parts in enumerate(blobs)])
    wire = codec.encode_request(0, version, msg)
    decoded, _ = codec.decode_request(0, version, wire, 0)
    sk = skim_produce_request(wire, 0, len(wire), version)
    assert sk.acks == acks and sk.transactional_id == decoded.transactional_id
    flat = [(t, p) for t in decoded.topic_data for p in t.partition_data]
    assert [(s.topic, s.partition) for s in sk.partitions] == [(t.name, p.index) for t, p in flat]
    for span, (_, p) in zip(sk.partitions, flat, strict=True):
        got = None if span.records_start < 0 else wire[span.records_start : span.records_end]
        assert got == p.records


def test_truncated_fetch_response_is_an_error():
    wire = codec.encode_response(1, 16, fetch_response(16, [[b"abc" * 10]], True))
    for cut in range(1, len(wire) - 1, 7):
        with pytest.raises(SkimError):
            skim_fetch_response(wire, 0, cut, 16)


@pytest.mark.parametrize("version", [4, 11, 12, 15, 16])
def test_splice_replaces_record_blobs_and_keeps_the_rest(version):
    msg = fetch_response(version, [[b"aaaa", b"bb"], [b"c" * 200]], version >= 16)
    wire = codec.encode_response(1, version, msg)
    sk = skim_fetch_response(wire, 0, len(wire), version)
    new = [b"X" * 300, b"", b"yy"]  # longer (prefix grows past one varint byte), emptier, shorter
    spliced = splice_records(wire, list(zip(sk.partitions, new, strict=True)), version >= 12)
    decoded, _ = codec.decode_response(1, version, spliced, 0)
    blobs = [bytes(p.records) for t in decoded.responses for p in t.partitions]
    assert blobs == new
    expected = codec.decode_response(1, version, wire, 0)[0]
    assert [p.high_watermark for t in decoded.responses for p in t.partitions] == \
        [p.high_watermark for t in expected.responses for p in t.partitions]
    assert decoded.node_endpoints == expected.node_endpoints
