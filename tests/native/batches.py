"""Test helper: write Kafka record batches (magic 2) and legacy messages (magic 0/1) byte by byte.

Shared by every test that needs real `records` bytes. It is written straight from the wire format, with
its own varint encoder, so it does not lean on the codec under test; the only borrowed piece is CRC32C
(gateway.native.crc32c), and test_batches_helper.py checks the output with aiokafka's independent
reader, including the CRC.

Record batch v2: see gateway/native/records.py for the fixed header. Each record is
    length varint | attributes int8 | timestamp_delta varlong | offset_delta varint |
    key_length varint (-1 = null) | key | value_length varint (-1 = null) | value |
    header_count varint | (key_length varint | key utf-8 | value_length varint (-1 = null) | value)*
and with compression the concatenated records (not the record count) are compressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence

import cramjam

from gateway.native import crc32c

RecordSpec = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4

_HEADER_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. record_count
_XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024


def zigzag_varint(value: int, bits: int = 32) -> bytes:
    """Kafka's zigzag varint (bits=32) or varlong (bits=64)."""
    raw = ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)
    return unsigned_varint(raw)


def unsigned_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _nullable(data: bytes | None) -> bytes:
    if data is None:
        return zigzag_varint(-1)
    return zigzag_varint(len(data)) + data


def encode_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    offset_delta: int,
    timestamp_delta: int,
) -> bytes:
    body = bytearray(b"\x00")  # record attributes: unused, always 0
    body += zigzag_varint(timestamp_delta, 64)
    body += zigzag_varint(offset_delta)
    body += _nullable(key)
    body += _nullable(value)
    body += zigzag_varint(len(headers))
    for header_key, header_value in headers:
        body += _nullable(header_key.encode("utf-8"))
        body += _nullable(header_value)
    return zigzag_varint(len(body)) + bytes(body)


def _compress(codec: int, data: bytes) -> bytes:
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return gzip.compress(data)
    if codec == COMPRESSION_SNAPPY:
        # xerial framing, as the Java producer writes it; empty input still gets one (empty) block, as
        # readers that sniff the framing (aiokafka) take a bare 16-byte header for raw snappy
        out = bytearray(_XERIAL_HEADER)
        for start in range(0, max(len(data), 1), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK]))
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    if codec == COMPRESSION_LZ4:
        # LZ4 frame with independent blocks: Kafka's reader rejects linked blocks
        compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
        compressor.compress(data)
        return bytes(compressor.finish())
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")


def build_batch(
    records: Sequence[RecordSpec],
    base_offset: int = 0,
    compression: int = COMPRESSION_NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    *,
    partition_leader_epoch: int = -1,  # what producers send; brokers fill in the real epoch
    base_timestamp: int = 1_700_000_000_000,
    timestamp_deltas: Sequence[int] | None = None,
    offset_deltas: Sequence[int] | None = None,
    last_offset_delta: int | None = None,
    max_timestamp: int | None = None,
    transactional: bool = False,
    control: bool = False,
    log_append_time: bool = False,
) -> bytes:
    """One complete, CRC-correct record batch v2 holding `records` as (key, value, headers).

    Offset deltas default to 0..n-1 and timestamp deltas to 0; last_offset_delta and max_timestamp
    default to what the records imply (an empty batch, as left by compaction, gets 0 and base_timestamp).
    """
    count = len(records)
    offset_deltas = list(range(count)) if offset_deltas is None else list(offset_deltas)
    timestamp_deltas = [0] * count if timestamp_deltas is None else list(timestamp_deltas)
    if len(offset_deltas) != count or len(timestamp_deltas) != count:
        raise ValueError("offset_deltas and timestamp_deltas need one entry per record")
    if last_offset_delta is None:
        last_offset_delta = max(offset_deltas, default=0)
    if max_timestamp is None:
        max_timestamp = base_timestamp + max(timestamp_deltas, default=0)

    encoded = b"".join(
        encode_record(key, value, headers, offset_delta, timestamp_delta)
        for (key, value, headers), offset_delta, timestamp_delta in zip(
            records, offset_deltas, timestamp_deltas, strict=True
        )
    )
    attributes = (
        (compression & 0x07)
        | (0x08 if log_append_time else 0)
        | (0x10 if transactional else 0)
        | (0x20 if control else 0)
    )
    crc_covered = _HEADER_AFTER_CRC.pack(
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) + _compress(compression, encoded)
    batch_length = 4 + 1 + 4 + len(crc_covered)  # leader epoch + magic + crc + the rest
    prefix = struct.pack(">qiib", base_offset, batch_length, partition_leader_epoch, 2)
    return prefix + struct.pack(">I", crc32c(crc_covered)) + crc_covered


def build_legacy_message(
    key: bytes | None,
    value: bytes | None,
    *,
    magic: int = 1,
    offset: int = 0,
    timestamp: int = 1_700_000_000_000,
) -> bytes:
    """One uncompressed message of a legacy message set (magic 0 or 1), with its offset and size prefix."""
    if magic not in (0, 1):
        raise ValueError("legacy messages have magic 0 or 1")
    body = struct.pack(">bb", magic, 0)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    for part in (key, value):
        body += struct.pack(">i", -1) if part is None else struct.pack(">i", len(part)) + part
    message = struct.pack(">I", zlib.crc32(body)) + body  # legacy messages use CRC-32, not CRC32C
    return struct.pack(">qi", offset, len(message)) + message
