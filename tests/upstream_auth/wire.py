"""A tiny blocking Kafka wire loop for tests: send one request, read its response (no pipelining).

It exists so tests can drive the sans-IO ``UpstreamSaslClient`` against a real broker; the gateway's own I/O
lives in ``gateway/worker``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Self

import msgspec

from gateway.protocols.kafka import codec

_LENGTH = struct.Struct(">i")


class WireConnection:
    """One TCP connection to a broker that sends requests one at a time and decodes their responses."""

    def __init__(self, address: str, timeout: float = 10.0, client_id: str = "upstream-auth-test") -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_id = client_id
        self._correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, api_key: int, api_version: int, body: msgspec.Struct) -> Any:
        """Send one request and return the decoded response body; raises ConnectionError if the broker hangs up."""
        self._correlation_id += 1
        header = codec.RequestHeader(
            request_api_key=api_key,
            request_api_version=api_version,
            correlation_id=self._correlation_id,
            client_id=self.client_id,
        )
        payload = codec.encode_request_header(
            header, codec.request_header_version(api_key, api_version)
        ) + codec.encode_request(api_key, api_version, body)
        self.sock.sendall(_LENGTH.pack(len(payload)) + payload)
        frame = self._read_exact(_LENGTH.unpack(self._read_exact(4))[0])
        response_header, offset = codec.decode_response_header(
            frame, 0, codec.response_header_version(api_key, api_version)
        )
        if response_header.correlation_id != self._correlation_id:
            raise AssertionError(f"correlation id {response_header.correlation_id} != {self._correlation_id}")
        message, _ = codec.decode_response(api_key, api_version, frame, offset)
        return message

    def _read_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self.sock.recv(size)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
