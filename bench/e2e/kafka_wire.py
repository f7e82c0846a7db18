"""Hand-encoded Kafka requests for the connection-scaling scenario (ApiVersions v0, SASL, Metadata v1).

A thousand librdkafka clients would measure librdkafka, not the target, so the idle connections are raw
sockets that each do the exchange a real client starts with and then sit idle. Against a target that
terminates SASL (Streamgate's identity mode) that exchange includes SaslHandshake v1 + SaslAuthenticate v1
with the PLAIN mechanism (RFC 4616, the token as password): an unauthenticated idle connection would be a
connection the gateway refuses, not one it holds. Only the requests this needs are encoded; responses are
checked for framing, correlation id and error codes.
"""

from __future__ import annotations

import socket
import struct

API_VERSIONS_KEY = 18
METADATA_KEY = 3
SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
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


def _string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def sasl_handshake_v1(correlation_id: int, mechanism: str) -> bytes:
    return encode_request(SASL_HANDSHAKE_KEY, 1, correlation_id, _string(mechanism))


def plain_message(username: str, password: str) -> bytes:
    """RFC 4616 PLAIN: authzid NUL authcid NUL password (empty authzid)."""
    return b"\x00" + username.encode() + b"\x00" + password.encode()


def sasl_authenticate_v1(correlation_id: int, auth_bytes: bytes) -> bytes:
    return encode_request(
        SASL_AUTHENTICATE_KEY, 1, correlation_id, struct.pack(">i", len(auth_bytes)) + auth_bytes
    )


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


def _read_nullable_string(body: bytes, pos: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", body, pos)
    pos += 2
    if length < 0:
        return None, pos
    return body[pos : pos + length].decode(errors="replace"), pos + length


def _check_error(body: bytes, what: str, message: str | None = None) -> None:
    (error_code,) = struct.unpack_from(">h", body, 0)
    if error_code != 0:
        raise WireError(f"{what} error code {error_code}" + (f": {message}" if message else ""))


def handshake(sock: socket.socket, first_correlation_id: int = 1) -> None:
    """ApiVersions v0 then Metadata v1, pipelined as librdkafka does, and both responses read."""
    sock.sendall(api_versions_v0(first_correlation_id) + metadata_v1(first_correlation_id + 1))
    _check_error(read_response(sock, first_correlation_id), "ApiVersions")
    read_response(sock, first_correlation_id + 1)


def authenticated_handshake(
    sock: socket.socket, username: str, password: str, first_correlation_id: int = 1
) -> int:
    """ApiVersions v0, SaslHandshake v1 (PLAIN), SaslAuthenticate v1, then Metadata v1, each answered in turn.

    Returns the session lifetime the target granted (ms, 0 = unlimited). The SASL steps are not pipelined:
    a gateway refuses anything but the SASL exchange until it has succeeded.
    """
    correlation_id = first_correlation_id
    sock.sendall(api_versions_v0(correlation_id))
    _check_error(read_response(sock, correlation_id), "ApiVersions")
    correlation_id += 1
    sock.sendall(sasl_handshake_v1(correlation_id, "PLAIN"))
    _check_error(read_response(sock, correlation_id), "SaslHandshake")
    correlation_id += 1
    sock.sendall(sasl_authenticate_v1(correlation_id, plain_message(username, password)))
    body = read_response(sock, correlation_id)
    message, pos = _read_nullable_string(body, 2)
    _check_error(body, "SaslAuthenticate", message)
    (auth_length,) = struct.unpack_from(">i", body, pos)
    (session_lifetime_ms,) = struct.unpack_from(">q", body, pos + 4 + max(auth_length, 0))
    correlation_id += 1
    sock.sendall(metadata_v1(correlation_id))
    read_response(sock, correlation_id)
    return int(session_lifetime_ms)
