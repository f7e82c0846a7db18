"""Kafka frame and header reading for the hot path: only what a forwarding decision needs.

A Kafka frame is a big-endian int32 size followed by `size` bytes. A request starts with the request header
(api_key int16, api_version int16, correlation_id int32, then, for header v1+, client_id as a nullable int16
string, and for header v2 a tagged-field section). Responses start with correlation_id (and tagged fields for
header v1). The functions here parse these prefixes without decoding bodies, and recognise input that is not
Kafka at all (TLS or HTTP on a plaintext port) so the session can close with a clear message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HDR = struct.Struct(">hhi")  # api_key, api_version, correlation_id

# A request frame must hold at least api_key + api_version + correlation_id.
MIN_REQUEST_SIZE = 8


class NeedMoreData(Exception):
    """The buffer ends before the structure being read; wait for more bytes."""


class MalformedFrame(ValueError):
    """The bytes cannot be a valid Kafka frame; the message says why."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # offset of the body, relative to the start of the frame payload (after the size)


def read_size(buf: bytes | bytearray | memoryview, pos: int) -> int:
    return _I32.unpack_from(buf, pos)[0]


def sniff_foreign_protocol(prefix: bytes | bytearray | memoryview) -> str | None:
    """Name the protocol if the first bytes on a Kafka port are clearly not Kafka (else None)."""
    b = bytes(prefix[:8])
    if len(b) >= 3 and b[0] == 0x16 and b[1] == 0x03 and b[2] <= 0x04:
        return "a TLS handshake"
    for verb in (b"GET ", b"POST", b"PUT ", b"HEAD", b"PRI ", b"OPTI", b"CONN"):
        if b.startswith(verb):
            return "an HTTP request"
    if b.startswith(b"\x10") and len(b) >= 3 and b"MQ" in bytes(prefix[:16]):
        return "an MQTT CONNECT"
    return None


def read_request_prefix(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) at `pos` (start of the frame payload)."""
    return _HDR.unpack_from(buf, pos)


def read_unsigned_varint(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise NeedMoreData
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise MalformedFrame("unsigned varint longer than 5 bytes")


def skip_tagged_fields(buf: bytes | bytearray | memoryview, pos: int, end: int) -> int:
    count, pos = read_unsigned_varint(buf, pos, end)
    for _ in range(count):
        _tag, pos = read_unsigned_varint(buf, pos, end)
        size, pos = read_unsigned_varint(buf, pos, end)
        pos += size
        if pos > end:
            raise NeedMoreData
    return pos


def read_request_header(
    buf: bytes | bytearray | memoryview, pos: int, end: int, header_version: int
) -> RequestHeader:
    """Parse the request header of the frame payload starting at `pos` and ending at `end`."""
    if end - pos < 8:
        raise NeedMoreData
    api_key, api_version, correlation_id = _HDR.unpack_from(buf, pos)
    p = pos + 8
    client_id: str | None = None
    if header_version >= 1:
        if end - p < 2:
            raise NeedMoreData
        n = _I16.unpack_from(buf, p)[0]
        p += 2
        if n >= 0:
            if end - p < n:
                raise NeedMoreData
            client_id = bytes(buf[p : p + n]).decode("utf-8", "replace")
            p += n
        elif n != -1:
            raise MalformedFrame(f"client_id length {n} is negative")
    if header_version >= 2:
        p = skip_tagged_fields(buf, p, end)
    return RequestHeader(api_key, api_version, correlation_id, client_id, p - pos)


def read_produce_acks(buf: bytes | bytearray | memoryview, body: int, end: int, api_version: int) -> int:
    """The `acks` field of a Produce request body starting at `body` (needs only the first few bytes)."""
    p = body
    if api_version >= 3:  # transactional_id comes first
        if api_version >= 9:  # compact nullable string: uvarint length+1
            n, p = read_unsigned_varint(buf, p, end)
            p += max(n - 1, 0)
        else:
            if end - p < 2:
                raise NeedMoreData
            n = _I16.unpack_from(buf, p)[0]
            p += 2 + max(n, 0)
    if end - p < 2:
        raise NeedMoreData
    return _I16.unpack_from(buf, p)[0]


def encode_frame(payload_parts: list[bytes]) -> bytes:
    size = sum(len(p) for p in payload_parts)
    return _I32.pack(size) + b"".join(payload_parts)


def response_header(correlation_id: int, header_version: int) -> bytes:
    return _I32.pack(correlation_id) + (b"\x00" if header_version >= 1 else b"")


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str | None,
                   header_version: int) -> bytes:
    out = _HDR.pack(api_key, api_version, correlation_id)
    if header_version >= 1:
        if client_id is None:
            out += _I16.pack(-1)
        else:
            raw = client_id.encode()
            out += _I16.pack(len(raw)) + raw
    if header_version >= 2:
        out += b"\x00"
    return out
