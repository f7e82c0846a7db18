"""Rewrite the values inside Kafka record batches (v2): decompress, transform, re-encode, re-checksum.

This is the sans-IO half of masking on the Kafka path: the caller hands over the `records` bytes of one
partition (from a Fetch response or a Produce request) and a transform; it gets back bytes a Kafka client
accepts as if the broker had written them. The rule this module keeps: **a rewritten batch differs from the
original only in the record fields the transform changed** -- same codec (and the same snappy framing), same
batch header (base offset, partition leader epoch, attributes with timestamp type / transactional / control
bits, last offset delta, timestamps, producer id/epoch, base sequence, record count), with only
`batch_length` and the CRC32C recomputed. Anything it cannot rewrite faithfully is an error, never a
silent pass-through of bytes it was asked to inspect.

What passes through untouched, byte for byte:
- control batches (transaction markers): they carry no application data;
- batches in which the transform changed nothing: the original bytes, not a re-encoding, so a rewrite with
  an identity transform costs a decode but never changes a byte; and when nothing changed in the whole blob
  `rewrite_records` returns the very object it was given, so the caller can forward the original frame;
- a trailing partial batch (a Fetch response cut at `max_bytes`): clients discard it and fetch it again;
- legacy message sets (magic 0/1), which predate record headers: passed through and counted in
  `RewriteStats.legacy_messages` so the caller can audit or refuse them; `allow_legacy=False` makes them
  an error instead. (Kafka 4 no longer writes them; a masking policy should usually refuse them.)

Errors: `RecordsError` (a ValueError) for input that is not a well-formed batch -- a CRC32C that does not
verify (rewriting would give corrupt data a valid checksum, hiding the corruption from the consumer's
`check.crcs`), corrupt or oversized compressed data, records that overrun their batch, an unknown codec or
magic. It names the base offset of the batch. `TransformContractError` is a bug in the transform (wrong
length, a null made non-null or the reverse, a non-bytes result), not bad input. Either way the caller
must not forward the original bytes in place of a masked result: close or answer with an error.

Transform calls, per complete data batch with at least one record, each a separate call with its own list:
values (always), then keys (`keys=True`), then header values (`headers=True`, all header values of the
batch in record order; header keys are never transformed). A call is skipped when its list is empty.
Separate calls keep the kinds apart so that a transform sees one kind of payload per call; the per-detector
counts of all calls are summed into `RewriteStats.counts`. The transform gets a fresh list it may mutate.
Null keeps its meaning: the transform receives None for a null and must return None for it, and must not
turn a non-null into None (a null value is a tombstone to compaction).

Record layout v2 (inside the possibly compressed batch payload), see also gateway/native/records.py:
    length varint | attributes int8 | timestamp_delta varlong | offset_delta varint |
    key_length varint (negative = null) | key | value_length varint | value | header_count varint |
    (header_key_length varint | header key | header_value_length varint | header value)*
Unchanged records are copied verbatim from the decompressed payload; a changed record is rebuilt from its
verbatim pieces plus the new fields, so non-minimal varints elsewhere survive.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import cramjam

from gateway.native import (
    BatchFormatError,
    BatchHeader,
    UnsupportedMagicError,
    batch_crc_ok,
    crc32c,
    decode_varint,
    decode_varlong,
    encode_varint,
    read_batch_header,
    scan_batches,
)
from gateway.native.records import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    CRC_OFFSET,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    BytesLike,
)

__all__ = [
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "DecodedBatch",
    "Record",
    "RecordsError",
    "RewriteStats",
    "TransformContractError",
    "ValueTransform",
    "decode_batch",
    "rewrite_records",
]

ValueTransform = Callable[[list[bytes | None]], tuple[list[bytes | None], dict[str, int]]]
"""Given every value (or key, or header value) of one batch, None for null: new items + per-detector counts."""

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
CODEC_NAMES = {
    COMPRESSION_NONE: "none",
    COMPRESSION_GZIP: "gzip",
    COMPRESSION_SNAPPY: "snappy",
    COMPRESSION_LZ4: "lz4",
    COMPRESSION_ZSTD: "zstd",
}

# A batch that decompresses to more than this is refused before it is fully inflated: one small hostile
# batch must not make a worker allocate gigabytes (all sessions of that worker would go with it).
DEFAULT_MAX_UNCOMPRESSED_BYTES = 128 * 1024 * 1024

# Re-compression levels: the fast end of each codec, because the gateway pays this cost on every masked
# fetch. On ~1 KiB JSON records gzip 1 is ~4x faster than the producers' default 6 for a few percent more
# bytes, zstd 1 ~2x faster than 3, and LZ4 level 0 (the fast compressor) ~8x faster than cramjam's default
# (high compression); the consumer decompresses any level the same way.
GZIP_LEVEL = 1
ZSTD_LEVEL = 1
LZ4_LEVEL = 0

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")  # magic, version, compatible version
_XERIAL_BLOCK_SIZE = 32 * 1024  # snappy-java's default block size
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT32_MAX = 2**31 - 1
_LEGACY_MIN_MESSAGE_SIZE = 14  # crc 4 + magic 1 + attributes 1 + key length 4 + value length 4

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"
_MIN_INFLATE_GUESS = 64 * 1024
_INFLATE_GROWTH = 4
# cramjam's message when decompress_into runs out of room (no distinct exception type); should a cramjam
# upgrade change it, the size-limit tests fail rather than valid large batches being called corrupt silently
_OUTPUT_TOO_SMALL = "failed to write whole buffer"


class RecordsError(ValueError):
    """Record bytes that cannot be rewritten faithfully; `base_offset` names the batch (None if unknown)."""

    def __init__(self, message: str, *, base_offset: int | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.base_offset = base_offset
        self.position = position


class TransformContractError(ValueError):
    """The transform broke its contract (length, nullness or type of what it returned): a gateway bug."""


@dataclass(slots=True)
class RewriteStats:
    """What one `rewrite_records` call saw and did; `counts` sums the transform's per-detector counts."""

    batches: int = 0  # complete v2 batches, control batches included
    batches_rewritten: int = 0
    records: int = 0  # records of the decoded (non-control) v2 batches
    values_changed: int = 0
    control_batches: int = 0
    trailing_partial_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    keys_changed: int = 0
    header_values_changed: int = 0
    legacy_messages: int = 0  # top-level magic 0/1 messages passed through unchanged


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record; `offset` and `timestamp` are absolute (LOG_APPEND_TIME: the batch's max)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    attributes: int
    offset_delta: int
    timestamp_delta: int


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    header: BatchHeader
    records: list[Record]
    xerial: bool  # snappy batches only: whether the payload used the xerial/snappy-java framing


# ------------------------------------------------------------------------------------------ compression


@dataclass(frozen=True, slots=True)
class _XerialFraming:
    version: int
    compatible_version: int


def _inflate_bounded(
    decompress_into: Callable[[BytesLike, bytearray], int], payload: memoryview, hint: int | None, limit: int
) -> bytes:
    """Decompress into buffers of growing size, never larger than `limit`.

    cramjam's one-shot decompressors allocate whatever the stream asks for; decompress_into stops at the end
    of the buffer it is given, which is the bound. `hint` is a size the stream claims for itself (a frame
    content size, a gzip ISIZE): right for honest producers, and only a first guess otherwise.
    """
    if hint is not None and hint > limit:
        # a content size or ISIZE never exceeds the real size (ISIZE is it mod 2**32), or the stream is corrupt
        raise _TooLarge
    guess = hint + 1 if hint is not None else max(_MIN_INFLATE_GUESS, len(payload) * _INFLATE_GROWTH)
    guess = min(guess, limit + 1)  # one byte over the limit tells "exactly limit" from "more than limit"
    while True:
        out = bytearray(guess)
        try:
            written = decompress_into(payload, out)
        except cramjam.DecompressionError as exc:
            if _OUTPUT_TOO_SMALL not in str(exc):
                raise
            if guess > limit:
                raise _TooLarge from None
            guess = min(guess * _INFLATE_GROWTH, limit + 1)
            continue
        if written > limit:
            raise _TooLarge
        del out[written:]
        return bytes(out)


class _TooLarge(Exception):
    pass


def _zstd_content_size(payload: memoryview) -> int | None:
    """Frame_Content_Size of the first zstd frame, when its header carries one (RFC 8878 3.1.1.1)."""
    if len(payload) < 6 or payload[:4] != _ZSTD_MAGIC:
        return None
    descriptor = payload[4]
    size_flag, single_segment, dictionary_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    field_size = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if field_size == 0:
        return None
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dictionary_flag]
    if len(payload) < start + field_size:
        return None
    size = int.from_bytes(payload[start : start + field_size], "little")
    return size + 256 if field_size == 2 else size


def _lz4_content_size(payload: memoryview) -> int | None:
    """Content size of the first LZ4 frame, when its FLG byte says the descriptor carries one."""
    if len(payload) < 14 or payload[:4] != _LZ4_FRAME_MAGIC or not payload[4] & 0x08:
        return None
    return int.from_bytes(payload[6:14], "little")


def _gzip_size(payload: memoryview) -> int | None:
    # ISIZE, the last member's length mod 2**32: exact for the single-member streams producers write
    return int.from_bytes(payload[-4:], "little") if len(payload) >= 18 else None


def _unsnappy_raw(block: memoryview, budget: int) -> bytes:
    size = cramjam.snappy.decompress_raw_len(block)
    if size > budget:
        raise _TooLarge
    out = bytearray(size)
    cramjam.snappy.decompress_raw_into(block, out)
    return bytes(out)


def _unsnappy_xerial(payload: memoryview, limit: int) -> bytes:
    position = _XERIAL_HEADER.size
    blocks = []
    total = 0
    while position < len(payload):
        if len(payload) - position < 4:
            raise cramjam.DecompressionError("xerial block length truncated")
        (length,) = _INT32.unpack_from(payload, position)
        position += 4
        if length < 0 or position + length > len(payload):
            raise cramjam.DecompressionError(f"xerial block of {length} bytes overruns the payload")
        block = _unsnappy_raw(payload[position : position + length], limit - total)
        total += len(block)
        blocks.append(block)
        position += length
    return b"".join(blocks)


def _decompress(codec: int, payload: memoryview, limit: int) -> tuple[bytes, _XerialFraming | None]:
    """The concatenated records of a batch payload; raises cramjam.DecompressionError or _TooLarge."""
    if codec == COMPRESSION_NONE:
        if len(payload) > limit:
            raise _TooLarge
        return bytes(payload), None
    if codec == COMPRESSION_GZIP:
        return _inflate_bounded(cramjam.gzip.decompress_into, payload, _gzip_size(payload), limit), None
    if codec == COMPRESSION_SNAPPY:
        if payload[: len(_XERIAL_MAGIC)] == _XERIAL_MAGIC:
            if len(payload) < _XERIAL_HEADER.size:
                raise cramjam.DecompressionError("xerial snappy header truncated")
            _, version, compatible = _XERIAL_HEADER.unpack_from(payload)
            return _unsnappy_xerial(payload, limit), _XerialFraming(version, compatible)
        return _unsnappy_raw(payload, limit), None
    if codec == COMPRESSION_LZ4:
        return _inflate_bounded(cramjam.lz4.decompress_into, payload, _lz4_content_size(payload), limit), None
    if codec == COMPRESSION_ZSTD:
        return _inflate_bounded(
            cramjam.zstd.decompress_into, payload, _zstd_content_size(payload), limit
        ), None
    raise AssertionError(f"codec {codec} was checked by the caller")


def _compress(codec: int, data: bytes, xerial: _XerialFraming | None) -> BytesLike:
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return memoryview(cramjam.gzip.compress(data, level=GZIP_LEVEL))
    if codec == COMPRESSION_SNAPPY:
        if xerial is None:
            return memoryview(cramjam.snappy.compress_raw(data))
        parts: list[BytesLike] = [
            _XERIAL_HEADER.pack(_XERIAL_MAGIC, xerial.version, xerial.compatible_version)
        ]
        # at least one block, even for no data: readers that sniff the framing take a bare header for raw
        for start in range(0, max(len(data), 1), _XERIAL_BLOCK_SIZE):
            block = memoryview(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_SIZE]))
            parts += (_INT32.pack(len(block)), block)
        return b"".join(parts)
    if codec == COMPRESSION_LZ4:
        # independent blocks: Kafka's Java reader refuses linked ones
        compressor = cramjam.lz4.Compressor(level=LZ4_LEVEL, content_checksum=False, block_linked=False)
        compressor.compress(data)
        return memoryview(compressor.finish())
    if codec == COMPRESSION_ZSTD:
        return memoryview(cramjam.zstd.compress(data, level=ZSTD_LEVEL))
    raise AssertionError(f"codec {codec} was checked by the caller")


# ------------------------------------------------------------------------------------- record parsing


@dataclass(slots=True)
class _RecordLayout:
    """Where each field of each record sits in the decompressed payload (positions into `data`).

    `spans[i]` = (body, key_at, value_at, headers_at, end, attributes, timestamp_delta, offset_delta,
    first_header): body is just after the length varint, key_at/value_at/headers_at are where the key
    length, value length and header count varints start, end is the record's end (the next record's start),
    and first_header indexes `header_spans` (filled only when header values were asked for).
    `header_spans[j]` = (key_at, value_at, end) of one header.
    """

    spans: list[tuple[int, int, int, int, int, int, int, int, int]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    header_spans: list[tuple[int, int, int]] = field(default_factory=list)
    header_keys: list[bytes] = field(default_factory=list)
    header_values: list[bytes | None] = field(default_factory=list)


class _Malformed(ValueError):
    pass


def _parse_records(data: bytes, count: int, *, want_keys: bool, want_headers: bool) -> _RecordLayout:
    """Walk `count` records that must fill `data` exactly, as Kafka's own reader insists.

    Negative key/value/header-value lengths mean null (Java reads any negative length so); a negative
    header key length or header count is refused, as Java does.
    """
    layout = _RecordLayout()
    spans, keys, values = layout.spans, layout.keys, layout.values
    header_spans, header_keys, header_values = layout.header_spans, layout.header_keys, layout.header_values
    size = len(data)
    position = 0
    varint, varlong = decode_varint, decode_varlong  # locals: this loop runs once per record
    for index in range(count):
        if position >= size:
            raise _Malformed(f"{count} records declared, the data ends after {index}")
        length, body = varint(data, position)
        end = body + length
        if length <= 0 or end > size:
            raise _Malformed(f"record {index} has length {length}, {size - body} bytes left")
        timestamp_delta, cursor = varlong(data, body + 1)
        offset_delta, cursor = varint(data, cursor)
        key_at = cursor
        key_length, cursor = varint(data, cursor)
        key = None
        if key_length >= 0:
            key_end = cursor + key_length
            if key_end > end:
                raise _Malformed(f"record {index}: key of {key_length} bytes overruns the record")
            if want_keys:
                key = data[cursor:key_end]
            cursor = key_end
        value_at = cursor
        value_length, cursor = varint(data, cursor)
        value = None
        if value_length >= 0:
            value_end = cursor + value_length
            if value_end > end:
                raise _Malformed(f"record {index}: value of {value_length} bytes overruns the record")
            value = data[cursor:value_end]
            cursor = value_end
        headers_at = cursor
        header_count, cursor = varint(data, cursor)
        if header_count < 0:
            raise _Malformed(f"record {index} has a negative header count {header_count}")
        first_header = len(header_spans)
        for _ in range(header_count):
            if cursor >= end:
                raise _Malformed(f"record {index}: {header_count} headers overrun the record")
            header_key_at = cursor
            header_key_length, cursor = varint(data, cursor)
            if header_key_length < 0:
                raise _Malformed(f"record {index} has a header key of negative length")
            header_value_at = cursor = cursor + header_key_length
            if cursor > end:
                raise _Malformed(f"record {index}: a header key overruns the record")
            header_value_length, cursor = varint(data, cursor)
            header_value_start = cursor
            if header_value_length >= 0:
                cursor += header_value_length
                if cursor > end:
                    raise _Malformed(f"record {index}: a header value overruns the record")
            if want_headers:
                header_spans.append((header_key_at, header_value_at, cursor))
                header_values.append(data[header_value_start:cursor] if header_value_length >= 0 else None)
                # the key bytes sit between the key length varint and the value length varint
                header_keys.append(data[header_value_at - header_key_length : header_value_at])
        if cursor != end:
            raise _Malformed(f"record {index}: fields take {cursor - body} bytes, its length says {length}")
        spans.append(
            (body, key_at, value_at, headers_at, end, data[body], timestamp_delta, offset_delta, first_header)
        )
        keys.append(key)
        values.append(value)
        position = end
    if position != size:
        raise _Malformed(f"{size - position} bytes left after the {count} declared records")
    return layout


# ------------------------------------------------------------------------------------------ transforms


def _changes(
    transform: ValueTransform, originals: list[bytes | None], stats: RewriteStats, what: str
) -> dict[int, BytesLike]:
    """Call the transform on a copy of `originals`; check its result; {index: new item} in index order."""
    result = transform(list(originals))
    if not isinstance(result, tuple) or len(result) != 2:
        raise TransformContractError(
            f"the transform must return (items, counts), got {type(result).__name__}"
        )
    replaced, counts = result
    if len(replaced) != len(originals):
        raise TransformContractError(
            f"the transform returned {len(replaced)} {what} for {len(originals)}; it must keep one per item"
        )
    merged = stats.counts
    for detector, count in counts.items():
        merged[detector] = merged.get(detector, 0) + count
    changes: dict[int, BytesLike] = {}
    for index, (old, new) in enumerate(zip(originals, replaced, strict=True)):
        if new is old:
            continue
        if old is None or new is None:
            raise TransformContractError(
                f"the transform turned a {'null' if old is None else 'non-null'} {what[:-1]} into "
                f"{'null' if new is None else 'a non-null one'}; null must stay null and non-null non-null"
            )
        if not isinstance(new, bytes | bytearray | memoryview):
            raise TransformContractError(f"the transform returned {type(new).__name__} for a {what[:-1]}")
        if new != old:
            changes[index] = new
    return changes


def _append_field(out: list[BytesLike], item: BytesLike) -> int:
    length = encode_varint(len(item))
    out += (length, item)
    return len(length) + len(item)


def _reencode(
    data: bytes,
    layout: _RecordLayout,
    key_changes: dict[int, BytesLike],
    value_changes: dict[int, BytesLike],
    header_changes: dict[int, BytesLike],
) -> bytes:
    """The records again, with the changed fields replaced and every other byte copied verbatim."""
    view = memoryview(data)
    spans = layout.spans
    header_spans = layout.header_spans
    changed_headers_by_record: dict[int, list[int]] = {}
    if header_changes:
        # header spans are in record order; map each changed header to its record
        firsts = [span[8] for span in spans]
        record = 0
        for header_index in sorted(header_changes):
            while record + 1 < len(firsts) and firsts[record + 1] <= header_index:
                record += 1
            changed_headers_by_record.setdefault(record, []).append(header_index)
    out: list[BytesLike] = []
    copied_up_to = 0
    if not key_changes and not header_changes:
        # the common case (values only), kept lean: the record is its prefix, the new value and its tail
        for index, value in value_changes.items():  # ascending: _changes builds it in record order
            body, _, value_at, headers_at, end = spans[index][:5]
            start = spans[index - 1][4] if index else 0
            if copied_up_to < start:
                out.append(view[copied_up_to:start])
            value_length = encode_varint(len(value))
            size = end - body - (headers_at - value_at) + len(value_length) + len(value)
            out += (encode_varint(size), view[body:value_at], value_length, value, view[headers_at:end])
            copied_up_to = end
        if copied_up_to < len(data):
            out.append(view[copied_up_to:])
        return b"".join(out)
    for index in sorted(key_changes.keys() | value_changes.keys() | changed_headers_by_record.keys()):
        body, key_at, value_at, headers_at, end = spans[index][:5]
        start = spans[index - 1][4] if index else 0
        if copied_up_to < start:
            out.append(view[copied_up_to:start])
        fields: list[BytesLike] = [view[body:key_at]]
        size = key_at - body
        if index in key_changes:
            size += _append_field(fields, key_changes[index])
        else:
            fields.append(view[key_at:value_at])
            size += value_at - key_at
        if index in value_changes:
            size += _append_field(fields, value_changes[index])
        else:
            fields.append(view[value_at:headers_at])
            size += headers_at - value_at
        changed_here = changed_headers_by_record.get(index)
        if changed_here is None:
            fields.append(view[headers_at:end])
            size += end - headers_at
        else:
            # header count varint and unchanged headers verbatim, changed header values re-encoded
            piece_start = headers_at
            for header_index in changed_here:
                _, header_value_at, header_end = header_spans[header_index]
                fields.append(view[piece_start:header_value_at])
                size += header_value_at - piece_start
                size += _append_field(fields, header_changes[header_index])
                piece_start = header_end
            fields.append(view[piece_start:end])
            size += end - piece_start
        out.append(encode_varint(size))
        out += fields
        copied_up_to = end
    if copied_up_to < len(data):
        out.append(view[copied_up_to:])
    return b"".join(out)


# -------------------------------------------------------------------------------------- batch rewriting


def _batch_error(header: BatchHeader, position: int, problem: str) -> RecordsError:
    return RecordsError(
        f"record batch at base offset {header.base_offset}: {problem}",
        base_offset=header.base_offset,
        position=position,
    )


def _decompressed_records(
    view: memoryview, position: int, header: BatchHeader, limit: int
) -> tuple[bytes, _XerialFraming | None]:
    """Checked, decompressed payload of the complete batch at `position` (CRC first, then codec)."""
    try:
        crc_ok = batch_crc_ok(view, position)
    except BatchFormatError as exc:  # an impossible batch_length (scan_batches already refused those)
        raise _batch_error(header, position, str(exc)) from None
    if not crc_ok:
        raise _batch_error(header, position, "CRC32C does not match its contents; refusing to rewrite it")
    codec = header.compression
    if codec not in CODEC_NAMES:
        raise _batch_error(header, position, f"unknown compression codec {codec}")
    if header.record_count < 0:
        raise _batch_error(header, position, f"negative record count {header.record_count}")
    payload = view[position + BATCH_HEADER_SIZE : position + LOG_OVERHEAD + header.batch_length]
    try:
        return _decompress(codec, payload, limit)
    except _TooLarge:
        raise _batch_error(header, position, f"decompresses to more than {limit} bytes") from None
    except cramjam.DecompressionError as exc:
        raise _batch_error(header, position, f"corrupt {CODEC_NAMES[codec]} data ({exc})") from None


def _native_layout_walk() -> Callable[..., tuple[list, list, list, list, list, list]] | None:
    """The Cython record walk (same result as `_parse_records` on well-formed data), unless disabled."""
    from gateway import native

    if native.IMPLEMENTATION != "native":
        return None
    from gateway.native._kafka import parse_record_layout

    return parse_record_layout


_NATIVE_LAYOUT = _native_layout_walk()


def _layout_of(
    data: bytes, header: BatchHeader, position: int, *, want_keys: bool, want_headers: bool
) -> _RecordLayout:
    if _NATIVE_LAYOUT is not None and type(data) is bytes:
        try:
            return _RecordLayout(*_NATIVE_LAYOUT(data, header.record_count, want_keys, want_headers))
        except ValueError:
            pass  # malformed: the reference walk below names the exact problem
    try:
        return _parse_records(data, header.record_count, want_keys=want_keys, want_headers=want_headers)
    except ValueError as exc:  # _Malformed, or a varint the codec refused
        raise _batch_error(header, position, f"malformed records: {exc}") from None


def _rewrite_batch(
    view: memoryview,
    position: int,
    header: BatchHeader,
    transform: ValueTransform,
    *,
    keys: bool,
    headers: bool,
    limit: int,
    stats: RewriteStats,
) -> list[BytesLike] | None:
    """The pieces of the rewritten batch at `position`, or None when the original bytes stay."""
    stats.batches += 1
    if header.is_control:
        stats.control_batches += 1
        return None
    if header.record_count == 0:  # emptied by compaction: nothing to transform
        return None
    data, xerial = _decompressed_records(view, position, header, limit)
    layout = _layout_of(data, header, position, want_keys=keys, want_headers=headers)
    stats.records += len(layout.spans)
    value_changes = _changes(transform, layout.values, stats, "values")
    key_changes = _changes(transform, layout.keys, stats, "keys") if keys else {}
    header_changes = (
        _changes(transform, layout.header_values, stats, "header values")
        if headers and layout.header_values
        else {}
    )
    if not (value_changes or key_changes or header_changes):
        return None
    stats.values_changed += len(value_changes)
    stats.keys_changed += len(key_changes)
    stats.header_values_changed += len(header_changes)
    stats.batches_rewritten += 1
    try:
        records = _reencode(data, layout, key_changes, value_changes, header_changes)
    except ValueError as exc:  # a record grown past the int32 varint range
        raise _batch_error(header, position, f"rewritten record too large: {exc}") from None
    payload = _compress(header.compression, records, xerial)
    batch_length = BATCH_HEADER_SIZE - LOG_OVERHEAD + len(payload)
    if batch_length > _INT32_MAX:
        raise _batch_error(header, position, f"rewritten batch of {batch_length} bytes exceeds int32")
    # everything from attributes to record_count is kept; only batch_length and crc are new
    kept_header = view[position + ATTRIBUTES_OFFSET : position + BATCH_HEADER_SIZE]
    crc = crc32c(payload, crc32c(kept_header))
    return [
        view[position : position + 8],
        _INT32.pack(batch_length),
        view[position + 12 : position + CRC_OFFSET],
        _UINT32.pack(crc),
        kept_header,
        payload,
    ]


def _byte_view(blob: BytesLike) -> memoryview:
    view = memoryview(blob)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def rewrite_records(
    blob: bytes | memoryview,
    transform: ValueTransform,
    *,
    keys: bool = False,
    headers: bool = False,
    allow_legacy: bool = True,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> tuple[bytes | memoryview, RewriteStats]:
    """Pass every record value of `blob` (one partition's `records`) through `transform`.

    Returns the new bytes, or `blob` itself when nothing changed, and what happened. See the module
    docstring for what is kept, the transform contract and the errors (RecordsError,
    TransformContractError).
    """
    view = _byte_view(blob)
    size = len(view)
    stats = RewriteStats()
    out: list[BytesLike] = []
    copied_up_to = 0
    position = 0
    while position < size:
        scan_start = position
        try:
            batch_headers, partial_at = scan_batches(view[scan_start:])
            stopped_at_magic: int | None = None
        except UnsupportedMagicError as exc:
            batch_headers, partial_at, stopped_at_magic = exc.headers, exc.offset, exc.magic
        except BatchFormatError as exc:
            where = scan_start + exc.offset
            raise RecordsError(f"malformed record batch at byte {where}: {exc}", position=where) from None
        for header in batch_headers:
            pieces = _rewrite_batch(
                view,
                position,
                header,
                transform,
                keys=keys,
                headers=headers,
                limit=max_uncompressed_bytes,
                stats=stats,
            )
            if pieces is not None:
                if copied_up_to < position:
                    out.append(view[copied_up_to:position])
                out += pieces
                copied_up_to = position + LOG_OVERHEAD + header.batch_length
            position += LOG_OVERHEAD + header.batch_length
        position = scan_start + partial_at  # the scan's positions are relative to the slice it was given
        if stopped_at_magic is None:
            break  # `position` is now where the trailing partial batch (if any) starts
        legacy_end = _legacy_message_end(view, position, stopped_at_magic, allow_legacy)
        if legacy_end is None:
            break
        stats.legacy_messages += 1
        position = legacy_end
    stats.trailing_partial_bytes = size - position
    if not out:
        return blob, stats
    if copied_up_to < size:
        out.append(view[copied_up_to:])
    return b"".join(out), stats


def _legacy_message_end(view: memoryview, position: int, magic: int, allow_legacy: bool) -> int | None:
    """End of the magic 0/1 message at `position`, or None when it is the trailing partial one."""
    if magic not in (0, 1):
        raise RecordsError(
            f"unknown record format (magic {magic}) at byte {position}; cannot inspect it", position=position
        )
    (offset,) = struct.unpack_from(">q", view, position)
    if not allow_legacy:
        raise RecordsError(
            f"legacy message set (magic {magic}) at offset {offset}: records without v2 batches are refused",
            base_offset=offset,
            position=position,
        )
    (message_size,) = _INT32.unpack_from(view, position + 8)
    if message_size < _LEGACY_MIN_MESSAGE_SIZE:
        raise RecordsError(
            f"legacy message at offset {offset} has impossible size {message_size}",
            base_offset=offset,
            position=position,
        )
    end = position + LOG_OVERHEAD + message_size
    return end if end <= len(view) else None


# --------------------------------------------------------------------------------------------- decoding


def decode_batch(
    blob: BytesLike, position: int = 0, *, max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
) -> DecodedBatch:
    """Decode the complete v2 batch at `position`, with the same checks rewriting applies (CRC included).

    For audit, tests and tools; the rewrite path never builds Record objects.
    """
    view = _byte_view(blob)
    try:
        header = read_batch_header(view, position)
        if position + LOG_OVERHEAD + header.batch_length > len(view):
            raise BatchFormatError(f"record batch at offset {position} is truncated", position)
    except BatchFormatError as exc:
        raise RecordsError(str(exc), position=exc.offset) from None
    data, xerial = _decompressed_records(view, position, header, max_uncompressed_bytes)
    layout = _layout_of(data, header, position, want_keys=True, want_headers=True)
    log_append_time = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    records = []
    for index, span in enumerate(layout.spans):
        _, _, _, _, _, attributes, timestamp_delta, offset_delta, first_header = span
        last_header = (
            layout.spans[index + 1][8] if index + 1 < len(layout.spans) else len(layout.header_spans)
        )
        try:
            header_pairs = tuple(
                (layout.header_keys[h].decode("utf-8"), layout.header_values[h])
                for h in range(first_header, last_header)
            )
        except UnicodeDecodeError as exc:
            raise _batch_error(header, position, f"record {index}: header key is not UTF-8 ({exc})") from None
        records.append(
            Record(
                offset=header.base_offset + offset_delta,
                timestamp=header.max_timestamp
                if log_append_time
                else header.base_timestamp + timestamp_delta,
                key=layout.keys[index],
                value=layout.values[index],
                headers=header_pairs,
                attributes=attributes,
                offset_delta=offset_delta,
                timestamp_delta=timestamp_delta,
            )
        )
    return DecodedBatch(header=header, records=records, xerial=xerial is not None)
