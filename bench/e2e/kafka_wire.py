"""Hand-encoded Kafka requests for the connection-scaling scenario (ApiVersions v0, Metadata v1).

A thousand librdkafka clients would measure librdkafka, not the target, so the idle connections are raw
sockets that each do the exchange a real client starts with and then sit idle. Only the two requests this
needs are encoded; responses are checked for framing, correlation id and (ApiVersions) the error code.
"""

from __future__ import annotations

import socket
import struct

API_VERSIONS_KEY = 18
METADATA_KEY = 3
CLIENT_ID = b"streamgate-bench"


class WireError(RuntimeError):
    """The peer sent something that is not the response we asked for."""


def encode_request(api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    """Length-prefixed request with header v1 (api key, version, correlation id, nullable client id)."""
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0(correlation_id: int) -> bytes:
    return encode_request(API_VERSIONS_KEY, 0, correlation_id, b"")


def metadata_v1(correlation_id: int, topics: list[str] | None = None) -> bytes:
    """Metadata v1; `topics=None` sends an empty list (brokers only), not the null "all topics" array."""
    names = topics or []
    body = struct.pack(">i", len(names))
    for name in names:
        encoded = name.encode()
        body += struct.pack(">h", len(encoded)) + encoded
    return encode_request(METADATA_KEY, 1, correlation_id, body)


def read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise WireError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def read_response(sock: socket.socket, expected_correlation_id: int) -> bytes:
    """Read one response frame (header v0) and return its body after checking the correlation id."""
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise WireError(f"impossible response size {size}")
    frame = read_exact(sock, size)
    (correlation_id,) = struct.unpack_from(">i", frame, 0)
    if correlation_id != expected_correlation_id:
        raise WireError(f"correlation id {correlation_id}, expected {expected_correlation_id}")
    return frame[4:]


def handshake(sock: socket.socket, first_correlation_id: int = 1) -> None:
    """ApiVersions v0 then Metadata v1, pipelined as librdkafka does, and both responses read."""
    sock.sendall(api_versions_v0(first_correlation_id) + metadata_v1(first_correlation_id + 1))
    body = read_response(sock, first_correlation_id)
    (error_code,) = struct.unpack_from(">h", body, 0)
    if error_code != 0:
        raise WireError(f"ApiVersions error code {error_code}")
    read_response(sock, first_correlation_id + 1)
