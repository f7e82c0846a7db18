"""No broker address leaks: every version of every response that names brokers, over a raw socket."""

from __future__ import annotations

import socket
import struct

import pytest

from gateway.protocols.kafka import codec, framing
from tests.integration.kafka_helpers import create_topic, unique_topic

pytestmark = pytest.mark.integration


class RawClient:
    """A minimal blocking Kafka client speaking exact versions through our codec."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.corr = 0

    def call(self, api_key: int, version: int, msg: object) -> tuple[object, bytes]:
        self.corr += 1
        hv = codec.request_header_version(api_key, version)
        self.sock.sendall(framing.encode_frame([framing.request_header(api_key, version, self.corr, "raw", hv),
                                                codec.encode_request(api_key, version, msg)]))
        size = struct.unpack(">i", self._recv(4))[0]
        payload = self._recv(size)
        assert struct.unpack_from(">i", payload)[0] == self.corr
        start = 4 + codec.response_header_version(api_key, version)
        body, _ = codec.decode_response(api_key, version, payload, start)
        return body, payload

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("gateway closed the connection")
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


def assert_no_broker_address(payload: bytes, tansu) -> None:
    assert struct.pack(">i", tansu.port) not in payload, "the broker's port leaked to the client"
    assert f":{tansu.port}".encode() not in payload


@pytest.fixture(scope="module")
def topic(gateway):
    name = unique_topic("addr")
    create_topic(gateway.bootstrap, name, partitions=2)
    return name


def test_metadata_every_version(gateway, tansu, topic):
    cls = codec.request_class(3)
    from gateway.protocols.kafka.generated.metadata import MetadataRequestTopic

    client = RawClient(gateway.bootstrap)
    try:
        for version in range(0, 13):
            body, payload = client.call(3, version, cls(topics=[MetadataRequestTopic(name=topic)]))
            assert body.brokers, f"v{version}: no brokers"
            for b in body.brokers:
                assert (b.host, b.port) == ("127.0.0.1", gateway.node_port_base + b.node_id), f"v{version}"
            assert_no_broker_address(payload, tansu)
    finally:
        client.close()


def test_find_coordinator_every_version(gateway, tansu):
    cls = codec.request_class(10)
    client = RawClient(gateway.bootstrap)
    try:
        for version in range(0, 7):
            msg = cls(coordinator_keys=["grp-a", "grp-b"]) if version >= 4 else cls(key="grp-a")
            body, payload = client.call(10, version, msg)
            nodes = body.coordinators if version >= 4 else [body]
            assert nodes
            for n in nodes:
                assert n.error_code == 0, f"v{version}: {n.error_code}"
                assert (n.host, n.port) == ("127.0.0.1", gateway.node_port_base + n.node_id), f"v{version}"
            assert_no_broker_address(payload, tansu)
    finally:
        client.close()


def test_describe_cluster_every_version(gateway, tansu):
    cls = codec.request_class(60)
    client = RawClient(gateway.bootstrap)
    try:
        for version in range(0, 2):
            body, payload = client.call(60, version, cls())
            assert body.error_code == 0
            for b in body.brokers:
                assert (b.host, b.port) == ("127.0.0.1", gateway.node_port_base + b.broker_id)
            assert_no_broker_address(payload, tansu)
    finally:
        client.close()


@pytest.fixture(scope="module")
def uncapped_gateway(tansu, tmp_path_factory):
    """Fetch v16/v17 enabled (their NodeEndpoints are rewritten on a buffered response)."""
    from tests.helpers.gateway import start_gateway

    gw = start_gateway(tansu.address, tmp_path_factory.mktemp("uncapped"), workers=1,
                       extra_env={"STREAMGATE__KAFKA__MAX_API_VERSIONS__FETCH": "17"})
    yield gw
    assert gw.stop() == 0


def test_fetch_is_capped_at_v15_by_default(gateway):
    client = RawClient(gateway.bootstrap)
    try:
        body, _ = client.call(18, 3, codec.request_class(18)(client_software_name="t", client_software_version="1"))
    finally:
        client.close()
    ranges = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
    assert ranges[1][1] == 15


@pytest.mark.parametrize("fetch_version", [16, 17])
def test_produce_and_fetch_newest_versions_carry_no_broker_address(uncapped_gateway, tansu, fetch_version):
    from tests.native.batches import build_batch

    gateway = uncapped_gateway
    topic = unique_topic("addr16")
    create_topic(gateway.bootstrap, topic, partitions=1)

    produce_cls = codec.request_class(0)
    fetch_cls = codec.request_class(1)
    from gateway.protocols.kafka.generated.fetch import FetchRequestFetchPartition, FetchRequestFetchTopic
    from gateway.protocols.kafka.generated.metadata import MetadataRequestTopic
    from gateway.protocols.kafka.generated.produce import (
        ProduceRequestPartitionProduceData,
        ProduceRequestTopicProduceData,
    )

    client = RawClient(gateway.bootstrap)
    try:
        md, _ = client.call(3, 12, codec.request_class(3)(topics=[MetadataRequestTopic(name=topic)]))
        topic_id = md.topics[0].topic_id
        batch = build_batch([(b"k", b"v", [])])
        produce = produce_cls(acks=-1, timeout_ms=5000, topic_data=[ProduceRequestTopicProduceData(
            name=topic, partition_data=[ProduceRequestPartitionProduceData(index=0, records=batch)])])
        body, payload = client.call(0, 11, produce)
        assert body.responses[0].partition_responses[0].error_code == 0
        assert_no_broker_address(payload, tansu)
        fetch = fetch_cls(max_wait_ms=100, min_bytes=1, max_bytes=1 << 20, topics=[FetchRequestFetchTopic(
            topic_id=topic_id, partitions=[FetchRequestFetchPartition(partition=0, fetch_offset=0,
                                                                      partition_max_bytes=1 << 20)])])
        body, payload = client.call(1, fetch_version, fetch)
        part = body.responses[0].partitions[0]
        assert part.error_code == 0 and part.records
        for n in body.node_endpoints:
            assert (n.host, n.port) == ("127.0.0.1", gateway.node_port_base + n.node_id)
        assert_no_broker_address(payload, tansu)
    finally:
        client.close()
