"""Shared vocabulary of the record-batch codec: wire constants and the errors both implementations raise.

The native module (`gateway.native._kafka`) and its pure-Python twin (`gateway.native.reference`) import
their exceptions from here, so a caller catches the same classes whichever implementation is selected, and
the differential tests can compare errors by type, message and attributes.

Record batch v2 fixed header (all integers big-endian), byte offsets from the batch start:

    0 base_offset int64 | 8 batch_length int32 | 12 partition_leader_epoch int32 | 16 magic int8 |
    17 crc uint32 | 21 attributes int16 | 23 last_offset_delta int32 | 27 base_timestamp int64 |
    35 max_timestamp int64 | 43 producer_id int64 | 51 producer_epoch int16 | 55 base_sequence int32 |
    57 record_count int32 | 61 records...

`batch_length` counts the bytes after itself, so a batch occupies `LOG_OVERHEAD + batch_length` bytes and
the CRC covers `attributes` up to the end of the batch. Legacy message sets (magic 0 and 1) share the first
17 bytes' layout (offset, size, crc, magic), which is how a scan recognises them.
"""

from __future__ import annotations

from typing import Any, TypeAlias

# What the codec functions accept: these, and any other C-contiguous buffer-protocol object.
BytesLike: TypeAlias = bytes | bytearray | memoryview

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: the bytes not counted by batch_length
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

# Inputs of this many bytes or more are checksummed with the GIL released by the native module.
GIL_RELEASE_THRESHOLD = 64 * 1024

BATCH_HEADER_FIELDS: tuple[str, ...] = (
    "base_offset",
    "batch_length",
    "partition_leader_epoch",
    "magic",
    "crc",
    "attributes",
    "last_offset_delta",
    "base_timestamp",
    "max_timestamp",
    "producer_id",
    "producer_epoch",
    "base_sequence",
    "record_count",
)

# (lowest, highest) value of each header field, i.e. its wire width; constructors reject anything else.
BATCH_HEADER_FIELD_RANGES: dict[str, tuple[int, int]] = {
    "base_offset": (-(2**63), 2**63 - 1),
    "batch_length": (-(2**31), 2**31 - 1),
    "partition_leader_epoch": (-(2**31), 2**31 - 1),
    "magic": (-(2**7), 2**7 - 1),
    "crc": (0, 2**32 - 1),
    "attributes": (-(2**15), 2**15 - 1),
    "last_offset_delta": (-(2**31), 2**31 - 1),
    "base_timestamp": (-(2**63), 2**63 - 1),
    "max_timestamp": (-(2**63), 2**63 - 1),
    "producer_id": (-(2**63), 2**63 - 1),
    "producer_epoch": (-(2**15), 2**15 - 1),
    "base_sequence": (-(2**31), 2**31 - 1),
    "record_count": (-(2**31), 2**31 - 1),
}


class BatchFormatError(ValueError):
    """A record batch that cannot be read: truncated where a whole batch is required, or impossible."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class UnsupportedMagicError(BatchFormatError):
    """The bytes at `offset` are not a v2 record batch (magic 0/1 message set, or an unknown magic).

    `headers` holds the v2 batches read before it, so a caller of `scan_batches` loses nothing: it can
    account for those and then pass the rest (`buf[offset:]`) through or reject it.
    """

    def __init__(self, offset: int, magic: int, headers: list[Any]) -> None:
        kind = "legacy message set" if magic in (0, 1) else "unknown record format"
        super().__init__(f"{kind} (magic {magic}) at offset {offset}, expected magic 2", offset)
        self.magic = magic
        self.headers = headers
