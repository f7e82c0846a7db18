"""Tests for the generated Kafka codecs (``gateway.protocols.kafka.codec`` and ``generated/``).

The round-trip property covers every API key and every valid request and response version: messages are
drawn from strategies derived from the generated ``FIELDS`` metadata, so the schema the tests explore is
the one the generator emitted. Hand-built byte strings pin the wire format itself, independent of the
generator. Set ``HYPOTHESIS_PROFILE=deep`` for many more examples per (API, version).
"""

from __future__ import annotations

import functools
import importlib
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocols.kafka import codec
from gateway.protocols.kafka.generated.index import (
    API_MODULES,
    REQUEST_FLEXIBLE_VERSIONS,
    REQUEST_VALID_VERSIONS,
    RESPONSE_FLEXIBLE_VERSIONS,
    RESPONSE_VALID_VERSIONS,
)
from gateway.protocols.kafka.primitives import ZERO_UUID, CodecError, FieldInfo

REPO = Path(__file__).resolve().parents[3]
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
ROUNDTRIP_SETTINGS = settings(
    max_examples=400 if DEEP else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

METADATA, API_VERSIONS, CONTROLLED_SHUTDOWN, FETCH, PRODUCE = 3, 18, 7, 1, 0

# ------------------------------------------------------------------------------- schema-driven strategies

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def in_range(version: int, versions: tuple[int, int] | None) -> bool:
    return versions is not None and versions[0] <= version <= versions[1]


def scalar_strategy(kind: str) -> st.SearchStrategy[Any]:
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.integers(low, high)
    if kind == "bool":
        return st.booleans()
    if kind == "float64":
        return st.floats(allow_nan=False)
    if kind == "string":
        return st.text(max_size=6)
    if kind in ("bytes", "records"):
        return st.binary(max_size=16)
    if kind == "uuid":
        return st.just(ZERO_UUID) | st.uuids()
    raise AssertionError(f"no strategy for {kind}")


def value_strategy(info: FieldInfo, depth: int) -> st.SearchStrategy[Any]:
    if info.kind == "struct":
        assert info.struct_class is not None
        element = struct_strategy(info.struct_class, depth + 1)
    else:
        element = scalar_strategy(info.kind)
    # Small collections keep the whole sweep fast: struct lists multiply with every level of nesting.
    max_size = (2 if depth == 0 else 1) if info.kind == "struct" else 3
    value = st.lists(element, max_size=max_size) if info.is_array else element
    return st.none() | value if info.nullable_versions is not None else value


@functools.cache
def struct_strategy(cls: type[msgspec.Struct], depth: int = 0) -> st.SearchStrategy[Any]:
    """Version-independent instances of ``cls``: every field of every version gets a value (null where
    some version allows it) and unknown tagged fields use tags no version of ``cls`` knows."""
    fields = {info.name: value_strategy(info, depth) for info in cls.FIELDS}  # type: ignore[attr-defined]
    known_tags = {info.tag for info in cls.FIELDS if info.tag is not None}  # type: ignore[attr-defined]
    unknown_tag = st.integers(0, 300).filter(lambda tag: tag not in known_tags)
    unknown = st.dictionaries(unknown_tag, st.binary(max_size=8), min_size=1, max_size=2)
    fields["unknown_tagged_fields"] = st.just({}) | unknown
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


def encodable_at(obj: Any, version: int, flexible: bool) -> Any:
    """``obj`` adjusted so that ``version`` can carry it: non-ignorable fields the version lacks and nulls
    it cannot express go back to their defaults. Ignorable absent fields keep their arbitrary values,
    which the encoder must drop silently."""
    cls = type(obj)
    kwargs: dict[str, Any] = {}
    for info in cls.FIELDS:
        value = getattr(obj, info.name)
        if not in_range(version, info.versions):
            if info.ignorable:
                kwargs[info.name] = value
            continue
        if value is None and not in_range(version, info.nullable_versions):
            continue
        if info.kind == "struct" and value is not None:
            if info.is_array:
                value = [encodable_at(item, version, flexible) for item in value]
            else:
                value = encodable_at(value, version, flexible)
        kwargs[info.name] = value
    if flexible:
        kwargs["unknown_tagged_fields"] = obj.unknown_tagged_fields
    return cls(**kwargs)


def normalise(obj: Any, version: int, flexible: bool) -> Any:
    """What a decoder can return for ``obj`` at ``version``: absent fields reset to their defaults."""
    cls = type(obj)
    kwargs: dict[str, Any] = {}
    for info in cls.FIELDS:
        if not in_range(version, info.versions):
            continue
        value = getattr(obj, info.name)
        if info.kind == "struct" and value is not None:
            if info.is_array:
                value = [normalise(item, version, flexible) for item in value]
            else:
                value = normalise(value, version, flexible)
        kwargs[info.name] = value
    if flexible:
        kwargs["unknown_tagged_fields"] = obj.unknown_tagged_fields
    return cls(**kwargs)


def check_round_trip(
    message: Any,
    version: int,
    flexible: bool,
    encode: Callable[[int, Any], bytes],
    decode: Callable[[int, bytes | memoryview, int], tuple[Any, int]],
) -> None:
    sendable = encodable_at(message, version, flexible)
    wire = encode(version, sendable)
    decoded, end = decode(version, wire, 0)
    assert end == len(wire), f"v{version}"
    assert decoded == normalise(sendable, version, flexible), f"v{version}"
    # The same bytes behind a prefix, handed over as a memoryview with an offset, decode the same.
    assert decode(version, memoryview(b"\x07" * 3 + wire), 3) == (decoded, len(wire) + 3), f"v{version}"
    # Any strict prefix runs out of bytes somewhere: it must fail cleanly, never decode.
    for cut in {0, len(wire) // 2, len(wire) - 1} & set(range(len(wire))):
        with pytest.raises(CodecError):
            decode(version, wire[:cut], 0)


ROUNDTRIP_CASES = [
    pytest.param(api_key, kind, id=f"{API_MODULES[api_key]}-{kind}")
    for api_key in sorted(API_MODULES)
    for kind in ("request", "response")
]


@pytest.mark.parametrize(("api_key", "kind"), ROUNDTRIP_CASES)
def test_every_api_version_round_trips_and_rejects_truncation(api_key: int, kind: str) -> None:
    """decode(encode(x)) == x normalised, for every valid version of every request and response."""
    if kind == "request":
        cls, flexible, valid = (
            codec.request_class(api_key),
            REQUEST_FLEXIBLE_VERSIONS[api_key],
            REQUEST_VALID_VERSIONS[api_key],
        )
        encode, decode = codec.encode_request, codec.decode_request
    else:
        cls, flexible, valid = (
            codec.response_class(api_key),
            RESPONSE_FLEXIBLE_VERSIONS[api_key],
            RESPONSE_VALID_VERSIONS[api_key],
        )
        encode, decode = codec.encode_response, codec.decode_response

    @ROUNDTRIP_SETTINGS
    @given(struct_strategy(cls))
    def check(message: Any) -> None:
        # One drawn message is adjusted to and checked at each version: every (API, version) pair sees
        # max_examples messages while Hypothesis only pays for one draw per example.
        for version in range(valid[0], valid[1] + 1):
            check_round_trip(
                message,
                version,
                in_range(version, flexible),
                functools.partial(encode, api_key),
                functools.partial(decode, api_key),
            )

    check()


DATA_MODULE = importlib.import_module("gateway.protocols.kafka.generated.data")


@pytest.mark.parametrize("name", sorted(DATA_MODULE.DATA_CLASSES))
def test_data_messages_round_trip(name: str) -> None:
    low, high = DATA_MODULE.DATA_VALID_VERSIONS[name]
    flexible = DATA_MODULE.DATA_FLEXIBLE_VERSIONS[name]

    @ROUNDTRIP_SETTINGS
    @given(struct_strategy(DATA_MODULE.DATA_CLASSES[name]))
    def check(message: Any) -> None:
        for version in range(low, high + 1):
            check_round_trip(
                message,
                version,
                in_range(version, flexible),
                functools.partial(codec.encode_data, name),
                functools.partial(codec.decode_data, name),
            )

    check()


@pytest.mark.parametrize("header_version", [0, 1, 2])
def test_request_header_round_trip(header_version: int) -> None:
    api_key, api_version = {0: (CONTROLLED_SHUTDOWN, 0), 1: (METADATA, 8), 2: (METADATA, 12)}[header_version]
    header = codec.RequestHeader(
        request_api_key=api_key,
        request_api_version=api_version,
        correlation_id=77,
        client_id="" if header_version == 0 else "client-é",  # v0 has no client id: the default
        unknown_tagged_fields={5: b"x"} if header_version == 2 else {},
    )
    wire = codec.encode_request_header(header, header_version) + b"BODY"
    decoded, body_offset = codec.decode_request_header(wire)
    assert decoded == header
    assert wire[body_offset:] == b"BODY"


def test_request_header_v2_keeps_client_id_as_a_non_compact_string() -> None:
    wire = struct.pack(">hhih", METADATA, 12, 5, 3) + b"abc" + b"\x00"
    header, body_offset = codec.decode_request_header(wire)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (METADATA, 12, 5)
    assert header.client_id == "abc"
    assert body_offset == len(wire)
    null_client = struct.pack(">hhih", METADATA, 12, 5, -1) + b"\x00"
    assert codec.decode_request_header(null_client)[0].client_id is None


def test_header_versions_follow_flexible_versions_and_kafka_exceptions() -> None:
    assert codec.request_header_version(METADATA, 8) == 1
    assert codec.request_header_version(METADATA, 9) == 2
    assert codec.response_header_version(METADATA, 8) == 0
    assert codec.response_header_version(METADATA, 9) == 1
    assert codec.request_header_version(API_VERSIONS, 3) == 2
    assert all(codec.response_header_version(API_VERSIONS, v) == 0 for v in range(5))
    assert codec.request_header_version(CONTROLLED_SHUTDOWN, 0) == 0
    assert codec.request_header_version(CONTROLLED_SHUTDOWN, 1) == 1
    # A version newer than we support still gets a header version, so the request can be answered.
    assert codec.request_header_version(API_VERSIONS, 99) == 2
    with pytest.raises(CodecError, match="unknown api key"):
        codec.request_header_version(9999, 0)


def test_response_header_encoding() -> None:
    assert codec.encode_response_header(258, 0) == b"\x00\x00\x01\x02"
    assert codec.encode_response_header(258, 1) == b"\x00\x00\x01\x02\x00"
    decoded, end = codec.decode_response_header(b"\x00\x00\x01\x02\x01\x02\x01Z", 0, 1)
    assert (decoded.correlation_id, decoded.unknown_tagged_fields, end) == (258, {2: b"Z"}, 8)


def test_tables_describe_the_specs() -> None:
    assert codec.API_NAMES[METADATA] == "Metadata"
    assert codec.API_NAMES[API_VERSIONS] == "ApiVersions"
    assert codec.VALID_VERSIONS[METADATA] == (0, 12)
    assert codec.VALID_VERSIONS[FETCH] == (0, 17)
    assert codec.request_class(METADATA).__name__ == "MetadataRequest"
    assert codec.response_class(FETCH).__name__ == "FetchResponse"


# ------------------------------------------------------------------------------------ known bytes


def test_metadata_request_v1_known_bytes() -> None:
    wire = struct.pack(">i", 2) + struct.pack(">h", 3) + b"foo" + struct.pack(">h", 5) + b"b\xc3\xa4rs"
    request, end = codec.decode_request(METADATA, 1, wire)
    assert end == len(wire)
    assert [topic.name for topic in request.topics] == ["foo", "bärs"]
    assert all(topic.topic_id == ZERO_UUID for topic in request.topics)
    assert request.allow_auto_topic_creation is True  # not on the wire before v4: the spec default
    assert codec.encode_request(METADATA, 1, request) == wire
    # v1 made the topic list nullable: null means "all topics".
    all_topics, _ = codec.decode_request(METADATA, 1, b"\xff\xff\xff\xff")
    assert all_topics.topics is None
    assert codec.encode_request(METADATA, 1, all_topics) == b"\xff\xff\xff\xff"


def test_api_versions_response_v3_known_bytes() -> None:
    wire = b"".join(
        [
            b"\x00\x00",  # error_code
            b"\x03",  # api_keys: compact array of 2 entries
            b"\x00\x00\x00\x03\x00\x0b\x00",  # Produce 3..11, empty tagged-field section
            b"\x00\x12\x00\x00\x00\x04\x00",  # ApiVersions 0..4, empty tagged-field section
            b"\x00\x00\x00\x64",  # throttle_time_ms = 100
            b"\x03",  # 3 tagged fields, ascending tags
            b"\x01\x08" + struct.pack(">q", 42),  # tag 1 FinalizedFeaturesEpoch
            b"\x03\x01\x01",  # tag 3 ZkMigrationReady = true
            b"\x09\x02\xbe\xef",  # tag 9: unknown to the spec, kept raw
        ]
    )
    response, end = codec.decode_response(API_VERSIONS, 3, wire)
    assert end == len(wire)
    assert response.error_code == 0
    assert [(k.api_key, k.min_version, k.max_version) for k in response.api_keys] == [(0, 3, 11), (18, 0, 4)]
    assert response.throttle_time_ms == 100
    assert response.finalized_features_epoch == 42
    assert response.zk_migration_ready is True
    assert response.supported_features == [] and response.finalized_features == []
    assert response.unknown_tagged_fields == {9: b"\xbe\xef"}
    assert codec.encode_response(API_VERSIONS, 3, response) == wire


def test_nullable_struct_uses_int8_presence_marker() -> None:
    # DescribeTopicPartitions v0 request: topics, response_partition_limit, cursor (nullable struct).
    cls = codec.request_class(75)
    without_cursor = codec.encode_request(75, 0, cls(topics=[], response_partition_limit=7, cursor=None))
    assert without_cursor == b"\x01" + b"\x00\x00\x00\x07" + b"\xff" + b"\x00"
    assert codec.decode_request(75, 0, without_cursor)[0].cursor is None
    # topics [], limit 7, cursor present (1) {topic_name "t", partition_index 2, no tags}, no tags
    with_cursor_wire = b"\x01" + b"\x00\x00\x00\x07" + b"\x01\x02t\x00\x00\x00\x02\x00" + b"\x00"
    decoded, _ = codec.decode_request(75, 0, with_cursor_wire)
    assert (decoded.cursor.topic_name, decoded.cursor.partition_index) == ("t", 2)
    assert codec.encode_request(75, 0, decoded) == with_cursor_wire


# ------------------------------------------------------------------------------------ errors and rules


def metadata_response() -> Any:
    module = importlib.import_module("gateway.protocols.kafka.generated.metadata")
    return module.MetadataResponse(
        brokers=[module.MetadataResponseBroker(node_id=1, host="broker-1", port=9092, rack="r1")],
        cluster_id="cluster",
        controller_id=1,
        topics=[
            module.MetadataResponseTopic(
                name="orders",
                topic_id=UUID(int=7),
                partitions=[
                    module.MetadataResponsePartition(partition_index=0, leader_id=1, replica_nodes=[1])
                ],
            )
        ],
    )


def test_truncated_input_names_api_version_and_field() -> None:
    wire = codec.encode_response(METADATA, 12, metadata_response())
    for cut in range(len(wire)):
        with pytest.raises(CodecError) as failure:
            codec.decode_response(METADATA, 12, wire[:cut])
        assert "MetadataResponse v12" in str(failure.value)
    # Cut inside the broker's host name: throttle (4), broker count (1), node id (4), host length (1).
    response = metadata_response()
    response.brokers[0].host = "b" * 50
    wire = codec.encode_response(METADATA, 12, response)
    with pytest.raises(CodecError, match=r"MetadataResponse v12 at field brokers\.host: truncated input"):
        codec.decode_response(METADATA, 12, wire[:20])


def test_malformed_lengths_are_rejected_without_allocating() -> None:
    # Metadata v1 request claiming 2**31-1 topics in a 4-byte body.
    with pytest.raises(CodecError, match="MetadataRequest v1 at field topics"):
        codec.decode_request(METADATA, 1, b"\x7f\xff\xff\xff")
    with pytest.raises(CodecError, match="null value"):
        codec.decode_request(METADATA, 0, b"\xff\xff\xff\xff")  # null topic list before v1
    with pytest.raises(CodecError, match="varint"):
        codec.decode_request(METADATA, 12, b"\xff\xff\xff\xff\xff\xff")


def test_unknown_tagged_fields_survive_decode_then_encode() -> None:
    response = metadata_response()
    response.unknown_tagged_fields = {4: b"top", 200: b""}
    response.brokers[0].unknown_tagged_fields = {0: b"\x01\x02"}
    response.topics[0].partitions[0].unknown_tagged_fields = {31: b"deep"}
    wire = codec.encode_response(METADATA, 12, response)
    decoded, _ = codec.decode_response(METADATA, 12, wire)
    assert decoded.unknown_tagged_fields == {4: b"top", 200: b""}
    assert decoded.brokers[0].unknown_tagged_fields == {0: b"\x01\x02"}
    assert decoded.topics[0].partitions[0].unknown_tagged_fields == {31: b"deep"}
    assert codec.encode_response(METADATA, 12, decoded) == wire


def test_unknown_tag_that_collides_with_a_known_one_is_refused() -> None:
    response = codec.response_class(API_VERSIONS)(finalized_features_epoch=3, unknown_tagged_fields={1: b"x"})
    with pytest.raises(CodecError, match="collides"):
        codec.encode_response(API_VERSIONS, 3, response)


def test_tagged_fields_cannot_be_sent_in_a_non_flexible_version() -> None:
    response = metadata_response()
    response.unknown_tagged_fields = {1: b"x"}
    with pytest.raises(CodecError, match="MetadataResponse v8 at field unknown_tagged_fields"):
        codec.encode_response(METADATA, 8, response)


def test_absent_fields_ignorable_are_dropped_others_must_be_default() -> None:
    # cluster_id is ignorable and only exists from v2: silently dropped for v1.
    response = metadata_response()
    decoded, _ = codec.decode_response(METADATA, 1, codec.encode_response(METADATA, 1, response))
    assert decoded.cluster_id is None
    # allow_auto_topic_creation is not ignorable and only exists from v4.
    request_cls = codec.request_class(METADATA)
    with pytest.raises(CodecError, match="MetadataRequest v3 at field allow_auto_topic_creation"):
        codec.encode_request(METADATA, 3, request_cls(topics=None, allow_auto_topic_creation=False))
    assert codec.encode_request(METADATA, 3, request_cls(topics=None)) == b"\xff\xff\xff\xff"


def test_null_in_a_non_nullable_version_is_refused() -> None:
    request_cls = codec.request_class(METADATA)
    with pytest.raises(CodecError, match="MetadataRequest v0 at field topics: null value"):
        codec.encode_request(METADATA, 0, request_cls(topics=None))
    response = metadata_response()
    response.brokers[0].host = None
    with pytest.raises(CodecError, match=r"brokers\.host"):
        codec.encode_response(METADATA, 12, response)


def test_out_of_range_values_and_wrong_types_are_codec_errors() -> None:
    response = metadata_response()
    response.controller_id = 2**40
    with pytest.raises(CodecError, match="field controller_id"):
        codec.encode_response(METADATA, 12, response)
    with pytest.raises(CodecError, match="expected a MetadataResponse"):
        codec.encode_response(METADATA, 12, codec.request_class(METADATA)())


def test_unsupported_versions_and_unknown_api_keys() -> None:
    with pytest.raises(CodecError, match=r"MetadataRequest v13 is not supported \(valid versions 0-12\)"):
        codec.decode_request(METADATA, 13, b"")
    with pytest.raises(CodecError, match="unknown api key 9999"):
        codec.decode_response(9999, 0, b"")
    with pytest.raises(CodecError, match="unknown api key"):
        codec.decode_request_header(struct.pack(">hhih", 9999, 0, 1, -1))


def test_records_stay_opaque_bytes() -> None:
    blob = bytes(range(256)) * 3
    fetch = importlib.import_module("gateway.protocols.kafka.generated.fetch")
    response = fetch.FetchResponse(
        responses=[
            fetch.FetchResponseFetchableTopicResponse(
                topic_id=UUID(int=1), partitions=[fetch.FetchResponsePartitionData(records=blob)]
            )
        ],
        node_endpoints=[fetch.FetchResponseNodeEndpoint(node_id=1, host="b1", port=9092)],
    )
    wire = codec.encode_response(FETCH, 16, response)
    decoded, _ = codec.decode_response(FETCH, 16, wire)
    assert decoded.responses[0].partitions[0].records == blob
    assert type(decoded.responses[0].partitions[0].records) is bytes
    assert decoded.node_endpoints[0].host == "b1"


def test_generated_modules_are_current(tmp_path: Path) -> None:
    spec_dir = REPO.parent / "shared" / "kafka-protocol" / "message"
    assert spec_dir.is_dir(), f"Kafka message specs not found at {spec_dir} (the project's shared/ beside the checkout)"
    out = tmp_path / "generated"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_kafka_codecs.py"), str(spec_dir), str(out)],
        check=True,
        capture_output=True,
    )
    committed = REPO / "gateway" / "protocols" / "kafka" / "generated"
    fresh = {p.name: p.read_bytes() for p in out.glob("*.py")}
    assert fresh.keys() == {p.name for p in committed.glob("*.py")}
    stale = [name for name, text in fresh.items() if (committed / name).read_bytes() != text]
    assert stale == [], f"regenerate with `make codegen`: {stale}"
    assert all(text.startswith(b"# GENERATED by tools/gen_kafka_codecs.py") for text in fresh.values())
