"""Broker address rewriting: clients must only ever learn the gateway's addresses.

Every response that names brokers (Metadata, DescribeCluster, FindCoordinator v0-3 and its v4+ `coordinators`
list, and the NodeEndpoints of Produce v10+ / Fetch v16+ responses) passes through `rewrite_response`, which
records the real address of each node in the `AddressBook` and replaces it by `advertised_host` and
`node_port_base + node_id`. Missing any of these would leak a broker address and let clients bypass the gateway,
so an unmappable node id is an error, never a pass-through. Topic ids seen in Metadata are recorded too, so that
Fetch v13+ (which names topics by id) can be decided by topic name.
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.kafka import apis


class AddressError(ValueError):
    """A broker node cannot be given a gateway address (e.g. its port would be out of range)."""


class AddressBook:
    """Per-worker map of broker node id -> real address, plus topic id -> name. Shared by its sessions."""

    def __init__(self, advertised_host: str, node_port_base: int) -> None:
        self.advertised_host = advertised_host
        self.node_port_base = node_port_base
        self.nodes: dict[int, tuple[str, int]] = {}
        self.topic_names: dict[Any, str] = {}
        self.topic_partitions: dict[str, int] = {}  # partition counts seen in Metadata (bulk-read rules)

    def gateway_port(self, node_id: int) -> int:
        port = self.node_port_base + node_id
        if node_id < 0 or port > 65535:
            raise AddressError(
                f"broker node id {node_id} cannot be served at node_port_base {self.node_port_base} + id "
                f"(port {port} is out of range); lower kafka.node_port_base")
        return port

    def node_for_port(self, port: int) -> int | None:
        node_id = port - self.node_port_base
        return node_id if node_id in self.nodes else None

    def learn(self, node_id: int, host: str, port: int, discovered: list[tuple[int, tuple[str, int]]]) -> None:
        addr = (host, port)
        if self.nodes.get(node_id) != addr:
            self.nodes[node_id] = addr
            discovered.append((node_id, addr))


def _rewrite_node(obj: Any, book: AddressBook, discovered: list[tuple[int, tuple[str, int]]],
                  id_field: str = "node_id") -> None:
    node_id = getattr(obj, id_field)
    if node_id < 0 or not obj.host:  # "no node" placeholders (errors, unknown coordinator)
        return
    book.learn(node_id, obj.host, obj.port, discovered)
    obj.port = book.gateway_port(node_id)
    obj.host = book.advertised_host


def rewrite_response(api_key: int, api_version: int, msg: Any,
                     book: AddressBook) -> list[tuple[int, tuple[str, int]]]:
    """Rewrite broker addresses in a decoded response in place; return nodes newly learned or moved."""
    discovered: list[tuple[int, tuple[str, int]]] = []
    if api_key in (apis.METADATA, apis.DESCRIBE_CLUSTER):
        id_field = "node_id" if api_key == apis.METADATA else "broker_id"
        for broker in msg.brokers:
            _rewrite_node(broker, book, discovered, id_field)
        if api_key == apis.METADATA:
            for topic in msg.topics:
                topic_id = topic.topic_id
                if topic_id.int and topic.name:  # the all-zero UUID means "no id" (versions before 10)
                    book.topic_names[topic_id] = topic.name
                if topic.name and topic.error_code == 0:
                    book.topic_partitions[topic.name] = len(topic.partitions)
    elif api_key == apis.FIND_COORDINATOR:
        if api_version >= 4:
            for coordinator in msg.coordinators:
                if coordinator.error_code == 0:
                    _rewrite_node(coordinator, book, discovered)
        elif msg.error_code == 0:
            _rewrite_node(msg, book, discovered)
    elif api_key in (apis.PRODUCE, apis.FETCH):
        for endpoint in msg.node_endpoints or ():
            _rewrite_node(endpoint, book, discovered)
    return discovered
