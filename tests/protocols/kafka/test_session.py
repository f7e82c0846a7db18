"""Transcript tests of the sans-IO Kafka session: bytes in, actions out, no sockets."""

from __future__ import annotations

import struct

import pytest

from gateway.protocols.kafka import apis, codec, framing
from gateway.protocols.kafka.addresses import AddressBook
from gateway.protocols.kafka.generated.api_versions import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ApiVersionsResponseApiVersion,
)
from gateway.protocols.kafka.generated.describe_cluster import (
    DescribeClusterResponse,
    DescribeClusterResponseDescribeClusterBroker,
)
from gateway.protocols.kafka.generated.fetch import FetchResponse, FetchResponseNodeEndpoint
from gateway.protocols.kafka.generated.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    FindCoordinatorResponseCoordinator,
)
from gateway.protocols.kafka.generated.metadata import (
    MetadataRequest,
    MetadataResponse,
    MetadataResponseBroker,
)
from gateway.protocols.kafka.generated.produce import ProduceRequest, ProduceResponse
from gateway.protocols.kafka.session import (
    CloseSession,
    KafkaSession,
    NodeDiscovered,
    SendToClient,
    SendToUpstream,
)

BROKER = ("10.9.8.7", 19092)
GATEWAY_HOST = "gw.example"
NODE_BASE = 20000


def request(api_key: int, version: int, corr: int, msg: object, client_id: str = "transcript") -> bytes:
    hv = codec.request_header_version(api_key, version)
    return framing.encode_frame([framing.request_header(api_key, version, corr, client_id, hv),
                                 codec.encode_request(api_key, version, msg)])


def response(api_key: int, version: int, corr: int, msg: object) -> bytes:
    hv = codec.response_header_version(api_key, version)
    return framing.encode_frame([framing.response_header(corr, hv), codec.encode_response(api_key, version, msg)])


def decode_client_frames(actions: list[object]) -> list[tuple[int, bytes]]:
    """Concatenate what the client received and split it into (correlation id, frame payload)."""
    data = b"".join(bytes(a.data) for a in actions if isinstance(a, SendToClient))
    frames = []
    pos = 0
    while pos < len(data):
        size = struct.unpack_from(">i", data, pos)[0]
        payload = data[pos + 4 : pos + 4 + size]
        frames.append((struct.unpack_from(">i", payload, 0)[0], payload))
        pos += 4 + size
    return frames


def upstream_bytes(actions: list[object]) -> bytes:
    return b"".join(bytes(a.data) for a in actions if isinstance(a, SendToUpstream))


BROKER_RANGES = {0: (0, 11), 1: (0, 17), 3: (0, 12), 10: (0, 6), 18: (0, 4), 60: (0, 1), 12: (0, 4), 999: (0, 1)}


def ready_session(ranges: dict[int, tuple[int, int]] | None = None) -> KafkaSession:
    """A session whose internal ApiVersions exchange with the broker has completed."""
    s = KafkaSession(AddressBook(GATEWAY_HOST, NODE_BASE), max_frame_bytes=1 << 20)
    start = s.start()
    assert len(start) == 1 and isinstance(start[0], SendToUpstream)
    corr = struct.unpack_from(">i", bytes(start[0].data), 8)[0]
    assert corr < 0, "gateway-originated requests use their own (negative) correlation ids"
    keys = [ApiVersionsResponseApiVersion(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in (ranges or BROKER_RANGES).items()]
    out = s.upstream_data(response(18, 3, corr, ApiVersionsResponse(api_keys=keys)))
    assert out == [], "the internal ApiVersions answer is never shown to the client"
    return s


def metadata_response(port: int = BROKER[1]) -> MetadataResponse:
    return MetadataResponse(brokers=[MetadataResponseBroker(node_id=1, host=BROKER[0], port=port)],
                            cluster_id="c1", controller_id=1)


def test_api_versions_is_the_intersection_with_header_v0():
    s = ready_session()
    out = s.client_data(request(18, 3, 7, ApiVersionsRequest(client_software_name="t", client_software_version="1")))
    ((corr, payload),) = decode_client_frames(out)
    assert corr == 7
    body, _ = codec.decode_response(18, 3, payload, 4)  # header v0: no tagged-field byte after the id
    ranges = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
    assert 999 not in ranges, "an API the gateway does not handle is never advertised"
    assert 2 not in ranges, "an API the broker does not support is never advertised"
    assert ranges[3] == (0, 12) and ranges[1] == (0, 17)
    assert ranges[18] == (0, 4)


def test_api_versions_too_new_gets_unsupported_version_with_our_range():
    s = ready_session()
    raw = framing.encode_frame([framing.request_header(18, 9, 3, "future", 2), b"\x00\x00\x00"])
    ((corr, payload),) = decode_client_frames(s.client_data(raw))
    body, _ = codec.decode_response(18, 0, payload, 4)
    assert corr == 3 and body.error_code == 35
    assert [(k.api_key, k.min_version, k.max_version) for k in body.api_keys] == [(18, 0, 4)]


def test_api_versions_before_broker_answer_waits_in_order():
    s = KafkaSession(AddressBook(GATEWAY_HOST, NODE_BASE))
    corr_internal = struct.unpack_from(">i", bytes(s.start()[0].data), 8)[0]
    out = s.client_data(request(18, 0, 1, ApiVersionsRequest()))
    assert decode_client_frames(out) == [], "cannot answer before the broker's ranges are known"
    keys = [ApiVersionsResponseApiVersion(api_key=3, min_version=0, max_version=12)]
    out = s.upstream_data(response(18, 3, corr_internal, ApiVersionsResponse(api_keys=keys)))
    assert [c for c, _ in decode_client_frames(out)] == [1]


def test_local_answer_between_two_forwarded_requests_keeps_request_order():
    s = ready_session()
    chunk = (request(3, 12, 1, MetadataRequest(topics=None))
             + request(18, 3, 2, ApiVersionsRequest())
             + request(10, 3, 3, FindCoordinatorRequest(key="g")))
    out = s.client_data(chunk)
    assert decode_client_frames(out) == [], "the local answer waits behind the earlier forwarded request"
    sent = upstream_bytes(out)
    assert sent == request(3, 12, 1, MetadataRequest(topics=None)) + request(10, 3, 3, FindCoordinatorRequest(
        key="g")), "forwarded requests go upstream unchanged, the locally answered one does not"
    out = s.upstream_data(response(3, 12, 1, metadata_response()))
    assert [c for c, _ in decode_client_frames(out)] == [1, 2]
    coordinator = FindCoordinatorResponse(node_id=1, host=BROKER[0], port=BROKER[1])
    out = s.upstream_data(response(10, 3, 3, coordinator))
    assert [c for c, _ in decode_client_frames(out)] == [3]


def test_acks_zero_produce_takes_no_response_slot():
    s = ready_session()
    produce = request(0, 9, 5, ProduceRequest(acks=0, timeout_ms=1000, topic_data=[]))
    out = s.client_data(produce + request(3, 12, 6, MetadataRequest(topics=None)))
    assert upstream_bytes(out).startswith(produce)
    # the broker answers only the metadata request; the client gets exactly that, nothing is stuck
    out = s.upstream_data(response(3, 12, 6, metadata_response()))
    assert [c for c, _ in decode_client_frames(out)] == [6]
    assert s.in_flight == 0


def test_acks_one_produce_waits_for_its_response():
    s = ready_session()
    s.client_data(request(0, 9, 5, ProduceRequest(acks=1, timeout_ms=1000, topic_data=[])))
    assert s.in_flight == 1
    out = s.upstream_data(response(0, 9, 5, ProduceResponse()))
    assert [c for c, _ in decode_client_frames(out)] == [5]


def test_unknown_api_key_closes_with_a_clear_reason():
    s = ready_session()
    raw = framing.encode_frame([framing.request_header(999, 0, 11, "x", 1), b""])
    out = s.client_data(raw)
    assert isinstance(out[-1], CloseSession) and out[-1].kind == "unknown_api"
    assert "unknown API key 999" in out[-1].reason
    assert upstream_bytes(out) == b"", "nothing of an unknown API reaches the broker"


def test_known_but_unadvertised_version_closes():
    s = ready_session({3: (0, 5), 18: (0, 4)})
    out = s.client_data(request(3, 12, 1, MetadataRequest()))
    assert isinstance(out[-1], CloseSession) and out[-1].kind == "unsupported_version"
    assert "Metadata v12" in out[-1].reason


def test_truncated_frame_is_reported_at_eof():
    s = ready_session()
    frame = request(3, 12, 1, MetadataRequest(topics=None))
    assert s.client_data(frame[:10]) == []
    close = s.client_eof()
    assert isinstance(close, CloseSession) and close.kind == "malformed"
    assert "truncated request frame" in close.reason


def test_clean_eof_is_not_an_error():
    s = ready_session()
    assert s.client_eof() is None


@pytest.mark.parametrize("size", [0x7FFFFFFF, -5, 3])
def test_impossible_length_closes(size):
    s = ready_session()
    out = s.client_data(struct.pack(">i", size) + b"\x00\x03\x00\x0c\x00\x00\x00\x01")
    assert isinstance(out[-1], CloseSession) and out[-1].kind == "malformed"
    assert f"length {size}" in out[-1].reason
    assert upstream_bytes(out) == b""


def test_tls_client_hello_on_plaintext_port():
    s = ready_session()
    hello = bytes.fromhex("16030100f8010000f40303") + bytes(40)
    out = s.client_data(hello)
    assert isinstance(out[-1], CloseSession) and out[-1].kind == "foreign_protocol"
    assert "TLS handshake" in out[-1].reason


def test_http_on_kafka_port():
    out = ready_session().client_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(out[-1], CloseSession) and "HTTP request" in out[-1].reason


def test_metadata_response_names_only_gateway_addresses():
    s = ready_session()
    s.client_data(request(3, 12, 1, MetadataRequest(topics=None)))
    out = s.upstream_data(response(3, 12, 1, metadata_response()))
    kinds = [type(a) for a in out]
    assert kinds.index(NodeDiscovered) < kinds.index(SendToClient), "bind the node port before the client learns it"
    assert out[kinds.index(NodeDiscovered)] == NodeDiscovered(1, BROKER)
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(3, 12, payload, 5)
    assert [(b.node_id, b.host, b.port) for b in body.brokers] == [(1, GATEWAY_HOST, NODE_BASE + 1)]
    assert BROKER[0].encode() not in payload
    assert struct.pack(">i", BROKER[1]) not in payload


@pytest.mark.parametrize("version", [0, 3])
def test_find_coordinator_single_host_rewritten(version):
    s = ready_session()
    s.client_data(request(10, version, 4, FindCoordinatorRequest(key="g")))
    out = s.upstream_data(response(10, version, 4, FindCoordinatorResponse(node_id=2, host=BROKER[0],
                                                                           port=BROKER[1])))
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(10, version, payload, 4 + codec.response_header_version(10, version))
    assert (body.node_id, body.host, body.port) == (2, GATEWAY_HOST, NODE_BASE + 2)


def test_find_coordinator_v4_list_rewritten_and_errors_untouched():
    s = ready_session()
    s.client_data(request(10, 4, 4, FindCoordinatorRequest(coordinator_keys=["a", "b"])))
    coordinators = [
        FindCoordinatorResponseCoordinator(key="a", node_id=3, host=BROKER[0], port=BROKER[1]),
        FindCoordinatorResponseCoordinator(key="b", node_id=-1, host="", port=-1, error_code=15),
    ]
    out = s.upstream_data(response(10, 4, 4, FindCoordinatorResponse(coordinators=coordinators)))
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(10, 4, payload, 5)
    assert [(c.node_id, c.host, c.port) for c in body.coordinators] == [(3, GATEWAY_HOST, NODE_BASE + 3),
                                                                        (-1, "", -1)]


def test_describe_cluster_rewritten():
    s = ready_session()
    from gateway.protocols.kafka.generated.describe_cluster import DescribeClusterRequest

    s.client_data(request(60, 1, 9, DescribeClusterRequest()))
    resp = DescribeClusterResponse(brokers=[DescribeClusterResponseDescribeClusterBroker(broker_id=1, host=BROKER[0],
                                                                          port=BROKER[1])], cluster_id="c")
    out = s.upstream_data(response(60, 1, 9, resp))
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(60, 1, payload, 5)
    assert [(b.broker_id, b.host, b.port) for b in body.brokers] == [(1, GATEWAY_HOST, NODE_BASE + 1)]


def test_fetch_v16_node_endpoints_rewritten():
    s = ready_session()
    from gateway.protocols.kafka.generated.fetch import FetchRequest

    s.client_data(request(1, 16, 12, FetchRequest(max_wait_ms=10, topics=[])))
    resp = FetchResponse(node_endpoints=[FetchResponseNodeEndpoint(node_id=4, host=BROKER[0], port=BROKER[1])])
    out = s.upstream_data(response(1, 16, 12, resp))
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(1, 16, payload, 5)
    assert [(n.node_id, n.host, n.port) for n in body.node_endpoints] == [(4, GATEWAY_HOST, NODE_BASE + 4)]


def test_large_produce_streams_through_in_pieces_and_response_in_pieces():
    s = ready_session()
    from gateway.protocols.kafka.generated.produce import (
        ProduceRequestPartitionProduceData,
        ProduceRequestTopicProduceData,
    )

    records = bytes(range(256)) * 2048  # 512 KiB record blob, opaque to the session
    msg = ProduceRequest(acks=-1, timeout_ms=1000, topic_data=[ProduceRequestTopicProduceData(
        name="t", partition_data=[ProduceRequestPartitionProduceData(index=0, records=records)])])
    frame = request(0, 9, 21, msg)
    sent = b""
    for i in range(0, len(frame), 65536):
        out = s.client_data(frame[i : i + 65536])
        assert not any(isinstance(a, CloseSession) for a in out)
        sent += upstream_bytes(out)
    assert sent == frame
    resp = response(0, 9, 21, ProduceResponse())
    received = []
    for b in resp:  # one byte at a time
        received += s.upstream_data(bytes([b]))
    assert [c for c, _ in decode_client_frames(received)] == [21]
    assert s.in_flight == 0


def test_upstream_correlation_mismatch_closes():
    s = ready_session()
    s.client_data(request(3, 12, 1, MetadataRequest(topics=None)))
    out = s.upstream_data(response(3, 12, 77, metadata_response()))
    assert isinstance(out[-1], CloseSession) and out[-1].kind == "upstream_protocol"
    assert "77" in out[-1].reason


def test_unmappable_node_id_is_refused_not_leaked():
    s = ready_session()
    s.client_data(request(3, 12, 1, MetadataRequest(topics=None)))
    resp = MetadataResponse(brokers=[MetadataResponseBroker(node_id=60000, host=BROKER[0], port=BROKER[1])])
    out = s.upstream_data(response(3, 12, 1, resp))
    assert isinstance(out[-1], CloseSession)
    assert "node id 60000" in out[-1].reason
    assert decode_client_frames(out) == []


def test_passthrough_refuses_sasl_with_a_broker_error():
    s = ready_session()
    from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest

    out = s.client_data(request(17, 1, 2, SaslHandshakeRequest(mechanism="PLAIN")))
    ((_, payload),) = decode_client_frames(out)
    body, _ = codec.decode_response(17, 1, payload, 4)
    assert body.error_code == 33
    assert upstream_bytes(out) == b""


def test_every_handled_api_is_decodable_in_its_advertised_range():
    for key, spec in apis.HANDLED.items():
        lo, hi = codec.VALID_VERSIONS[key]
        assert lo <= spec.min_version and spec.max_version <= hi, spec.name
