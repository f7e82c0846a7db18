"""Pure-Python twin of `gateway.native._kafka`: Kafka varints, CRC32C and record-batch v2 headers.

This module is the specification. The Cython module must return the same values and raise the same
exception types (with the same messages for the errors raised here) for every input; the differential
tests in tests/native enforce that. It is also what runs when STREAMGATE_NO_EXTENSIONS=1, so it favours
being obviously correct over being fast.

Rules both implementations keep:
- Buffers: any C-contiguous buffer-protocol object, read as raw bytes (like `zlib.crc32`); nothing is
  copied. A non-contiguous buffer raises BufferError, a non-buffer TypeError.
- Positions: an int in [0, len(buf)], else ValueError (OverflowError beyond the C ssize_t range).
- Varints: zigzag-encoded signed varint (int32, at most 5 bytes) and varlong (int64, at most 10 bytes),
  and the unsigned varint of flexible-version lengths (uint32, at most 5 bytes). Decoding accepts
  non-minimal encodings, as Kafka does, but rejects a truncated varint and one whose bytes run past the
  maximum length or carry bits beyond the type's width (ValueError). Encoding a value outside the type's
  range raises ValueError; a non-integer raises TypeError.
- `scan_batches` stops at a legacy (magic 0/1) or unknown-magic batch by raising UnsupportedMagicError,
  whose `offset` is where that batch starts and whose `headers` are the v2 batches before it. A trailing
  batch that is cut short (the normal end of a Fetch response) is not an error: its start is returned.
"""

from __future__ import annotations

import operator
import struct

from gateway.native.records import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_FIELD_RANGES,
    BATCH_HEADER_FIELDS,
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    CONTROL_MASK,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MIN_BATCH_LENGTH,
    TRANSACTIONAL_MASK,
    BatchFormatError,
    BytesLike,
    UnsupportedMagicError,
)

__all__ = [
    "BatchHeader",
    "batch_crc_ok",
    "crc32c",
    "decode_unsigned_varint",
    "decode_varint",
    "decode_varlong",
    "encode_unsigned_varint",
    "encode_varint",
    "encode_varlong",
    "read_batch_header",
    "scan_batches",
]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_SSIZE_T = (-(2**63), 2**63 - 1)

_HEADER = struct.Struct(">qiibIhiqqqhii")
_BATCH_LENGTH = struct.Struct(">i")
assert _HEADER.size == BATCH_HEADER_SIZE


def _build_crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _build_crc32c_table()


def _byte_view(data: BytesLike) -> memoryview:
    """A flat unsigned-byte view of `data`, accepting what PyBUF_SIMPLE accepts in the native module."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _ssize(pos: int) -> int:
    """Convert a position argument the way the native module's Py_ssize_t parameters do."""
    pos = int(operator.index(pos))
    if not _SSIZE_T[0] <= pos <= _SSIZE_T[1]:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return pos


def _check_position(pos: int, size: int) -> None:
    if pos < 0 or pos > size:
        raise ValueError(f"position {pos} outside buffer of {size} bytes")


def _int_in_range(value: int, low: int, high: int, what: str) -> int:
    value = int(operator.index(value))
    if value < low or value > high:
        raise ValueError(f"{what} {value} out of range [{low}, {high}]")
    return value


def crc32c(data: BytesLike, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of `data`; pass a previous result as `crc` to continue over more data."""
    view = _byte_view(data)
    state = _int_in_range(crc, *_UINT32, "crc") ^ 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in view:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state ^ 0xFFFFFFFF


def _encode_unsigned(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_unsigned(buf: BytesLike, pos: int, max_bytes: int, bits: int, what: str) -> tuple[int, int]:
    start = position = _ssize(pos)
    view = _byte_view(buf)
    size = len(view)
    _check_position(start, size)
    # the last allowed byte may only carry the bits left over from the 7-bit groups before it
    last_byte_limit = (1 << (bits - 7 * (max_bytes - 1))) - 1
    result = 0
    for index in range(max_bytes):
        if position >= size:
            raise ValueError(f"truncated {what} at offset {start}")
        byte = view[position]
        position += 1
        if index == max_bytes - 1 and byte > last_byte_limit:
            raise ValueError(
                f"malformed {what} at offset {start}: longer than {max_bytes} bytes or {bits} bits"
            )
        result |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return result, position
    raise AssertionError("unreachable: the last byte check ends every varint")


def encode_varint(value: int) -> bytes:
    """Zigzag varint of a signed 32-bit value (Kafka record fields: lengths, offset deltas)."""
    value = _int_in_range(value, *_INT32, "varint value")
    return _encode_unsigned(((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def decode_varint(buf: BytesLike, pos: int) -> tuple[int, int]:
    """Read a zigzag varint at `pos`; returns (value, position after it)."""
    raw, position = _decode_unsigned(buf, pos, 5, 32, "varint")
    return (raw >> 1) ^ -(raw & 1), position


def encode_varlong(value: int) -> bytes:
    """Zigzag varint of a signed 64-bit value (Kafka record timestamp deltas)."""
    value = _int_in_range(value, *_INT64, "varlong value")
    return _encode_unsigned(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


def decode_varlong(buf: BytesLike, pos: int) -> tuple[int, int]:
    """Read a zigzag varlong at `pos`; returns (value, position after it)."""
    raw, position = _decode_unsigned(buf, pos, 10, 64, "varlong")
    return (raw >> 1) ^ -(raw & 1), position


def encode_unsigned_varint(value: int) -> bytes:
    """Unsigned varint of a 32-bit value (compact lengths and tagged fields of flexible versions)."""
    return _encode_unsigned(_int_in_range(value, *_UINT32, "unsigned varint value"))


def decode_unsigned_varint(buf: BytesLike, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at `pos`; returns (value, position after it)."""
    return _decode_unsigned(buf, pos, 5, 32, "unsigned varint")


class BatchHeader:
    """The fixed 61-byte header of a record batch v2, as plain mutable attributes.

    The constructor checks every field against its wire width (ValueError) and type (TypeError);
    later assignments are not checked here (the native class stores fixed-width C fields instead).
    """

    __slots__ = BATCH_HEADER_FIELDS
    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable like a dataclass with eq

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    def __init__(
        self,
        base_offset: int,
        batch_length: int,
        partition_leader_epoch: int,
        magic: int,
        crc: int,
        attributes: int,
        last_offset_delta: int,
        base_timestamp: int,
        max_timestamp: int,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        record_count: int,
    ) -> None:
        values = (
            base_offset,
            batch_length,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        )
        for name, value in zip(BATCH_HEADER_FIELDS, values, strict=True):
            setattr(self, name, _int_in_range(value, *BATCH_HEADER_FIELD_RANGES[name], name))

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        """Codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd."""
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchHeader):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in BATCH_HEADER_FIELDS)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in BATCH_HEADER_FIELDS)
        return f"BatchHeader({fields})"


def _signed_byte(value: int) -> int:
    return value - 256 if value >= 128 else value


def _header_at(view: memoryview, start: int, size: int, headers: list[BatchHeader]) -> BatchHeader:
    """The header at `start`, after checking magic (when present) first, then that 61 bytes are there."""
    remaining = size - start
    if remaining > MAGIC_OFFSET:
        magic = _signed_byte(view[start + MAGIC_OFFSET])
        if magic != 2:
            raise UnsupportedMagicError(start, magic, headers)
    if remaining < BATCH_HEADER_SIZE:
        raise BatchFormatError(
            f"record batch header at offset {start} truncated: {remaining} of {BATCH_HEADER_SIZE} bytes",
            start,
        )
    return BatchHeader(*_HEADER.unpack_from(view, start))


def _check_batch_length(batch_length: int, start: int) -> None:
    if batch_length < MIN_BATCH_LENGTH:
        raise BatchFormatError(
            f"record batch at offset {start} has length {batch_length}, below the minimum {MIN_BATCH_LENGTH}",
            start,
        )


def read_batch_header(buf: BytesLike, pos: int = 0) -> BatchHeader:
    """Decode the v2 batch header at `pos` (BatchFormatError, a ValueError, if it is not one)."""
    start = _ssize(pos)
    view = _byte_view(buf)
    size = len(view)
    _check_position(start, size)
    return _header_at(view, start, size, [])


def scan_batches(buf: BytesLike) -> tuple[list[BatchHeader], int]:
    """Headers of the complete v2 batches in a `records` blob, and where a trailing partial batch starts.

    The second value is len(buf) when the blob ends on a batch boundary. Raises UnsupportedMagicError at a
    non-v2 batch and BatchFormatError at a batch whose length is impossible.
    """
    view = _byte_view(buf)
    size = len(view)
    headers: list[BatchHeader] = []
    position = 0
    while True:
        remaining = size - position
        if remaining <= MAGIC_OFFSET:
            return headers, position
        magic = _signed_byte(view[position + MAGIC_OFFSET])
        if magic != 2:
            raise UnsupportedMagicError(position, magic, headers)
        (batch_length,) = _BATCH_LENGTH.unpack_from(view, position + 8)
        _check_batch_length(batch_length, position)
        end = position + LOG_OVERHEAD + batch_length
        if end > size:
            return headers, position
        headers.append(BatchHeader(*_HEADER.unpack_from(view, position)))
        position = end


def batch_crc_ok(buf: BytesLike, pos: int) -> bool:
    """Whether the CRC32C over attributes..end of the batch at `pos` matches its stored crc.

    The batch must be complete: a truncated or impossible batch raises BatchFormatError.
    """
    start = _ssize(pos)
    view = _byte_view(buf)
    size = len(view)
    _check_position(start, size)
    header = _header_at(view, start, size, [])
    _check_batch_length(header.batch_length, start)
    end = start + LOG_OVERHEAD + header.batch_length
    if end > size:
        raise BatchFormatError(
            f"record batch at offset {start} truncated: needs {end - start} bytes, {size - start} available",
            start,
        )
    return crc32c(view[start + ATTRIBUTES_OFFSET : end]) == header.crc
