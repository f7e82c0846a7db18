"""Record-batch rewriting: the result is what the broker would have written had the values been different.

Batches come from tests/native/batches.py (checked against aiokafka elsewhere); results are read back with
aiokafka's record reader, an independent decoder that also verifies the CRC32C, and with our own
`decode_batch`. Compressed payloads are opened with stdlib gzip and aiokafka's codec functions, not with
the module under test.
"""

from __future__ import annotations

import gzip
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cramjam
import pytest
from aiokafka.codec import lz4_decode, snappy_decode, zstd_decode
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.native import batch_crc_ok, crc32c, read_batch_header, scan_batches
from gateway.native.records import BATCH_HEADER_FIELDS
from gateway.protocols.kafka.records import (
    RecordsError,
    RewriteStats,
    TransformContractError,
    decode_batch,
    rewrite_records,
)
from tests.native.batches import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    RecordSpec,
    build_batch,
    build_legacy_message,
    encode_record,
)

XERIAL_MAGIC = b"\x82SNAPPY\x00"
HEADER_SIZE = 61

# A bit of everything a record can hold: keys and null keys, null and empty values, headers with null
# values, several headers, non-ASCII bytes.
RECORDS: list[RecordSpec] = [
    (b"key-1", b"card 4111 1111 1111 1111", [("trace", b"abc"), ("empty", None)]),
    (None, None, []),
    (b"key-3", b"", [("a", b"x"), ("b", b"y"), ("c", b"")]),
    (b"", b'{"email": "ann@example.com"}', []),
    (b"key-5", "caf\u00e9 \u00fcber".encode(), [("h\u00e9", b"v\xff")]),
    (None, b"ALREADY UPPER 123", [("only-null", None)]),
]


def _with_payload(batch: bytes, payload: bytes, *, compression: int | None = None, **fields: int) -> bytes:
    """`batch` with its records payload (and optionally header fields) replaced; length and CRC redone."""
    header = read_batch_header(batch, 0)
    for name, value in fields.items():
        setattr(header, name, value)
    attributes = header.attributes if compression is None else (header.attributes & ~0x07) | compression
    crc_covered = (
        struct.pack(
            ">hiqqqhii",
            attributes,
            header.last_offset_delta,
            header.base_timestamp,
            header.max_timestamp,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.record_count,
        )
        + payload
    )
    prefix = struct.pack(">qiib", header.base_offset, 9 + len(crc_covered), header.partition_leader_epoch, 2)
    return prefix + struct.pack(">I", crc32c(crc_covered)) + crc_covered


def _raw_snappy_batch(records: Sequence[RecordSpec], **kwargs: Any) -> bytes:
    """A snappy batch without the xerial framing, as librdkafka and some other producers write it."""
    plain = build_batch(records, compression=COMPRESSION_NONE, **kwargs)
    payload = bytes(cramjam.snappy.compress_raw(plain[HEADER_SIZE:]))
    return _with_payload(plain, payload, compression=COMPRESSION_SNAPPY)


CODECS: dict[str, tuple[int, Callable[..., bytes]]] = {
    "none": (COMPRESSION_NONE, build_batch),
    "gzip": (COMPRESSION_GZIP, build_batch),
    "snappy-xerial": (COMPRESSION_SNAPPY, build_batch),
    "snappy-raw": (COMPRESSION_SNAPPY, _raw_snappy_batch),
    "lz4": (COMPRESSION_LZ4, build_batch),
    "zstd": (COMPRESSION_ZSTD, build_batch),
}
ALL_CODECS = pytest.mark.parametrize("codec", sorted(CODECS))


def make_batch(codec: str, records: Sequence[RecordSpec], **kwargs: Any) -> bytes:
    compression, builder = CODECS[codec]
    if builder is build_batch:
        kwargs["compression"] = compression
    return builder(records, **kwargs)


def uppercase(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
    new = [None if item is None else item.upper() for item in items]
    return new, {"upper": sum(1 for old, item in zip(items, new, strict=True) if old != item)}


def identity(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
    return items, {}


def _upper_values(records: Sequence[RecordSpec]) -> list[RecordSpec]:
    return [(key, None if value is None else value.upper(), headers) for key, value, headers in records]


def aiokafka_batches(blob: bytes | memoryview) -> list[tuple[dict[str, Any], list[tuple[Any, ...]]]]:
    """(header fields, [(offset, timestamp, key, value, headers)]) of every batch, CRCs verified."""
    memory = MemoryRecords(bytes(blob))
    out = []
    while (batch := memory.next_batch()) is not None:
        assert batch.validate_crc(), f"aiokafka rejects the CRC of the batch at {batch.base_offset}"
        fields = {
            name: getattr(batch, name)
            for name in (
                "base_offset",
                "compression_type",
                "is_transactional",
                "is_control_batch",
                "timestamp_type",
                "producer_id",
                "producer_epoch",
                "base_sequence",
                "first_timestamp",
                "max_timestamp",
                "last_offset_delta",
            )
        }
        out.append((fields, [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]))
    return out


def expected_records(
    records: Sequence[RecordSpec], base_offset: int, base_timestamp: int
) -> list[tuple[Any, ...]]:
    return [
        (base_offset + index, base_timestamp, key, value, list(headers))
        for index, (key, value, headers) in enumerate(records)
    ]


def kept_header_fields(batch: bytes | memoryview, position: int = 0) -> dict[str, int]:
    header = read_batch_header(batch, position)
    return {
        name: getattr(header, name) for name in BATCH_HEADER_FIELDS if name not in ("batch_length", "crc")
    }


def independent_decompress(compression: int, payload: bytes) -> bytes:
    if compression == COMPRESSION_NONE:
        return payload
    if compression == COMPRESSION_GZIP:
        return gzip.decompress(payload)
    if compression == COMPRESSION_SNAPPY:
        return snappy_decode(payload)
    if compression == COMPRESSION_LZ4:
        return lz4_decode(payload)
    return zstd_decode(payload)


# ------------------------------------------------------------------------------------------ one batch


@ALL_CODECS
def test_uppercase_values_in_each_codec(codec: str) -> None:
    original = make_batch(
        codec,
        RECORDS,
        base_offset=1000,
        producer_id=42,
        producer_epoch=7,
        base_sequence=900,
        partition_leader_epoch=5,
    )
    rewritten, stats = rewrite_records(original, uppercase)

    assert isinstance(rewritten, bytes) and rewritten != original
    assert batch_crc_ok(rewritten, 0)
    assert kept_header_fields(rewritten) == kept_header_fields(original)
    [(fields, records)] = aiokafka_batches(rewritten)
    [(original_fields, _)] = aiokafka_batches(original)
    assert fields == original_fields  # compression type, flags, producer fields, timestamps
    assert records == expected_records(_upper_values(RECORDS), 1000, 1_700_000_000_000)
    ours = decode_batch(rewritten)
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in ours.records] == records
    assert stats == RewriteStats(
        batches=1, batches_rewritten=1, records=len(RECORDS), values_changed=3, counts={"upper": 3}
    )


@ALL_CODECS
def test_payload_is_the_same_codec_and_framing_with_unchanged_records_verbatim(codec: str) -> None:
    compression, _ = CODECS[codec]
    original = make_batch(codec, RECORDS, base_offset=3)
    rewritten, _ = rewrite_records(original, uppercase)
    payload = bytes(rewritten[HEADER_SIZE:])

    # the records, once decompressed, are byte for byte what a producer of the new values would have sent
    expected_plain = build_batch(_upper_values(RECORDS), base_offset=3)
    assert independent_decompress(compression, payload) == expected_plain[HEADER_SIZE:]
    if codec == "none":
        assert rewritten == expected_plain
    magic_of = {
        "gzip": b"\x1f\x8b",
        "lz4": b"\x04\x22\x4d\x18",
        "zstd": b"\x28\xb5\x2f\xfd",
        "snappy-xerial": XERIAL_MAGIC,
    }
    if codec in magic_of:
        assert payload.startswith(magic_of[codec])
    if codec == "snappy-raw":
        assert not payload.startswith(XERIAL_MAGIC)
        assert bytes(cramjam.snappy.decompress_raw(payload)) == expected_plain[HEADER_SIZE:]
    assert decode_batch(rewritten).xerial is (codec == "snappy-xerial")


@ALL_CODECS
def test_keys_and_header_values_in_separate_calls(codec: str) -> None:
    calls: list[list[bytes | None]] = []

    def recording_uppercase(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        calls.append(list(items))
        return uppercase(items)

    original = make_batch(codec, RECORDS, base_offset=10)
    rewritten, stats = rewrite_records(original, recording_uppercase, keys=True, headers=True)

    assert calls == [
        [value for _, value, _ in RECORDS],
        [key for key, _, _ in RECORDS],
        [header_value for _, _, headers in RECORDS for _, header_value in headers],
    ]
    expected = [
        (
            None if key is None else key.upper(),
            None if value is None else value.upper(),
            [(name, None if hv is None else hv.upper()) for name, hv in headers],  # header keys untouched
        )
        for key, value, headers in RECORDS
    ]
    [(_, records)] = aiokafka_batches(rewritten)
    assert records == expected_records(expected, 10, 1_700_000_000_000)
    assert (stats.values_changed, stats.keys_changed, stats.header_values_changed) == (3, 3, 4)
    assert stats.counts == {"upper": 10}


def test_only_keys_or_only_headers_change() -> None:
    records: list[RecordSpec] = [(b"k", b"VALUE", [("h", b"v")]), (b"K2", b"V2", [])]
    keys_only, stats = rewrite_records(build_batch(records), uppercase, keys=True)
    assert aiokafka_batches(keys_only)[0][1][0][2:] == (b"K", b"VALUE", [("h", b"v")])
    assert (stats.values_changed, stats.keys_changed, stats.batches_rewritten) == (0, 1, 1)
    headers_only, stats = rewrite_records(build_batch(records), uppercase, headers=True)
    assert aiokafka_batches(headers_only)[0][1][0][2:] == (b"k", b"VALUE", [("h", b"V")])
    assert (stats.values_changed, stats.header_values_changed) == (0, 1)


def test_values_that_grow_past_one_varint_byte() -> None:
    # lengths crossing 63/64 (zigzag one-byte limit) and 8191/8192 change the width of the length varints
    records: list[RecordSpec] = [(b"k", b"a" * 60, [("h", b"v")]), (b"k", b"b" * 8190, []), (None, b"c", [])]

    def grow(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        return [None if item is None else item * 3 for item in items], {}

    rewritten, _ = rewrite_records(build_batch(records), grow)
    assert [r[3] for r in aiokafka_batches(rewritten)[0][1]] == [b"a" * 180, b"b" * 24570, b"ccc"]


# ------------------------------------------------------------------------------- what stays untouched


def _commit_marker(base_offset: int, producer_id: int) -> bytes:
    # control record: key = version int16 0 + type int16 (1 = commit); value = version + coordinator epoch
    return build_batch(
        [(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x05", [])],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=2,
        transactional=True,
        control=True,
    )


def test_control_batch_untouched_and_never_shown_to_the_transform() -> None:
    seen: list[list[bytes | None]] = []

    def spy(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        seen.append(list(items))
        return uppercase(items)

    data = build_batch(
        [(b"k", b"order paid", [])],
        base_offset=0,
        producer_id=9,
        producer_epoch=2,
        base_sequence=0,
        transactional=True,
    )
    marker = _commit_marker(1, 9)
    rewritten, stats = rewrite_records(data + marker, spy, keys=True, headers=True)

    assert seen == [[b"order paid"], [b"k"]]
    assert bytes(rewritten).endswith(marker)
    (data_fields, data_records), (marker_fields, _) = aiokafka_batches(rewritten)
    assert data_records[0][3] == b"ORDER PAID"
    assert data_fields["is_transactional"] and not data_fields["is_control_batch"]
    assert (data_fields["producer_id"], data_fields["producer_epoch"], data_fields["base_sequence"]) == (
        9,
        2,
        0,
    )
    assert marker_fields["is_control_batch"] and marker_fields["is_transactional"]
    assert (stats.batches, stats.control_batches, stats.batches_rewritten, stats.records) == (2, 1, 1, 1)


def test_control_batch_alone_returns_the_same_object() -> None:
    marker = _commit_marker(5, 1)
    rewritten, stats = rewrite_records(marker, uppercase)
    assert rewritten is marker and stats.control_batches == 1


@ALL_CODECS
def test_log_append_time_and_timestamps_kept(codec: str) -> None:
    original = make_batch(
        codec,
        RECORDS[:3],
        base_timestamp=1_600_000_000_000,
        timestamp_deltas=[0, 5, 99],
        log_append_time=True,
        max_timestamp=1_600_000_000_500,
    )
    rewritten, _ = rewrite_records(original, uppercase)
    assert kept_header_fields(rewritten) == kept_header_fields(original)
    [(fields, records)] = aiokafka_batches(rewritten)
    assert fields["timestamp_type"] == 1
    assert [r.timestamp_delta for r in decode_batch(rewritten).records] == [0, 5, 99]
    assert {r.timestamp for r in decode_batch(rewritten).records} == {1_600_000_000_500}
    assert [record[1] for record in records] == [1_600_000_000_500] * 3


def test_gaps_in_offsets_as_left_by_compaction_are_kept() -> None:
    original = build_batch(RECORDS[:3], base_offset=100, offset_deltas=[0, 4, 9], last_offset_delta=12)
    rewritten, _ = rewrite_records(original, uppercase)
    [(fields, records)] = aiokafka_batches(rewritten)
    assert [record[0] for record in records] == [100, 104, 109]
    assert fields["last_offset_delta"] == 12


@pytest.mark.parametrize("cut", [1, 16, 17, 40, 61, 62, -1])
def test_trailing_partial_batch_passes_through_byte_for_byte(cut: int) -> None:
    first = build_batch([(b"k", b"first", [])], base_offset=0)
    second = build_batch([(b"k", b"second", [])], base_offset=1, compression=COMPRESSION_ZSTD)
    partial = second[:cut]
    rewritten, stats = rewrite_records(first + partial, uppercase)

    assert bytes(rewritten).endswith(partial)
    assert bytes(rewritten)[: len(rewritten) - len(partial)] == build_batch([(b"k", b"FIRST", [])])
    assert stats.trailing_partial_bytes == len(partial)
    assert (stats.batches, stats.batches_rewritten) == (1, 1)
    headers, partial_at = scan_batches(rewritten)
    assert (len(headers), len(rewritten) - partial_at) == (1, len(partial))


def test_only_a_partial_batch_is_returned_as_is() -> None:
    partial = build_batch(RECORDS)[:-3]
    rewritten, stats = rewrite_records(partial, uppercase)
    assert rewritten is partial and stats.trailing_partial_bytes == len(partial) and stats.batches == 0


@ALL_CODECS
def test_unchanged_blob_is_the_same_object(codec: str) -> None:
    blob = make_batch(codec, RECORDS, base_offset=0) + make_batch(codec, RECORDS, base_offset=6)

    def equal_copies(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        return [None if item is None else bytes(bytearray(item)) for item in items], {"seen": len(items)}

    for transform in (identity, equal_copies):
        rewritten, stats = rewrite_records(blob, transform, keys=True, headers=True)
        assert rewritten is blob
        assert (stats.batches, stats.batches_rewritten, stats.records) == (2, 0, 12)
    view = memoryview(blob)
    assert rewrite_records(view, identity)[0] is view
    assert rewrite_records(b"", uppercase) == (b"", RewriteStats())


def test_memoryview_input_is_rewritten_into_bytes() -> None:
    blob = b"junk" + build_batch(RECORDS, base_offset=50) + b"more"
    rewritten, _ = rewrite_records(memoryview(blob)[4:-4], uppercase)
    assert isinstance(rewritten, bytes)
    assert rewritten == build_batch(_upper_values(RECORDS), base_offset=50)


def test_multiple_batches_only_changed_ones_reencoded() -> None:
    digits: list[RecordSpec] = [(None, b"12345", []), (b"k", b"678", [("h", b"9")])]
    first = build_batch(RECORDS, base_offset=0, compression=COMPRESSION_LZ4)
    untouched = build_batch(digits, base_offset=6, compression=COMPRESSION_GZIP)  # uppercase changes nothing
    third = _raw_snappy_batch(RECORDS, base_offset=8)
    empty = build_batch([], base_offset=14)  # emptied by compaction
    blob = first + untouched + empty + third
    rewritten, stats = rewrite_records(blob, uppercase)

    assert untouched + empty in bytes(rewritten)
    batches = aiokafka_batches(rewritten)
    assert [fields["compression_type"] for fields, _ in batches] == [3, 1, 0, 2]
    assert [records for _, records in batches] == [
        expected_records(_upper_values(RECORDS), 0, 1_700_000_000_000),
        expected_records(digits, 6, 1_700_000_000_000),
        [],
        expected_records(_upper_values(RECORDS), 8, 1_700_000_000_000),
    ]
    assert (stats.batches, stats.batches_rewritten, stats.records, stats.values_changed) == (4, 2, 14, 6)
    assert stats.counts == {"upper": 6}


# --------------------------------------------------------------------------------- legacy message sets


def test_legacy_messages_pass_through_and_are_counted() -> None:
    legacy = build_legacy_message(b"k", b"clear text", magic=0, offset=0) + build_legacy_message(
        None, b"more", magic=1, offset=1
    )
    v2 = build_batch([(b"k", b"masked", [])], base_offset=2)
    rewritten, stats = rewrite_records(legacy + v2 + legacy[:20], uppercase)
    assert bytes(rewritten) == legacy + build_batch([(b"k", b"MASKED", [])], base_offset=2) + legacy[:20]
    assert (stats.legacy_messages, stats.batches, stats.trailing_partial_bytes) == (2, 1, 20)

    with pytest.raises(RecordsError, match="legacy message set") as refused:
        rewrite_records(v2 + legacy, uppercase, allow_legacy=False)
    assert refused.value.base_offset == 0 and refused.value.position == len(v2)


def test_unknown_magic_is_an_error() -> None:
    batch = bytearray(build_batch(RECORDS, base_offset=77))
    batch[16] = 3
    with pytest.raises(RecordsError, match="magic 3"):
        rewrite_records(build_batch([(None, b"v", [])]) + bytes(batch), uppercase)


# ------------------------------------------------------------------------------------------- errors


def test_bad_crc_is_refused_naming_the_base_offset() -> None:
    good = build_batch(RECORDS, base_offset=0)
    bad = bytearray(build_batch(RECORDS, base_offset=4242))
    bad[-1] ^= 0x01
    with pytest.raises(RecordsError, match="base offset 4242.*CRC32C") as raised:
        rewrite_records(good + bytes(bad), identity)
    assert raised.value.base_offset == 4242 and raised.value.position == len(good)


# Flipped bytes inside a stream are only detectable where the codec carries a checksum (gzip's CRC-32, the
# LZ4 block checksums the builder writes); snappy and zstd without a checksum may decode them into other
# bytes, which Kafka's CRC over the compressed bytes cannot catch either.
@pytest.mark.parametrize(
    ("codec", "damage"),
    [
        (codec, damage)
        for codec in ("gzip", "snappy-xerial", "snappy-raw", "lz4", "zstd")
        for damage in ("garbage", "truncated")
    ]
    + [("gzip", "flipped"), ("lz4", "flipped")],
)
def test_corrupt_compression_is_refused(codec: str, damage: str) -> None:
    original = make_batch(codec, RECORDS * 20, base_offset=31)
    payload = original[HEADER_SIZE:]
    if damage == "garbage":
        payload = b"this is not compressed data at all"
    elif damage == "truncated":
        payload = payload[: len(payload) // 2]
    else:
        middle = len(payload) // 2
        payload = (
            payload[:middle] + bytes(b ^ 0x5A for b in payload[middle : middle + 8]) + payload[middle + 8 :]
        )
    corrupt = _with_payload(original, payload)  # a valid CRC over the damaged payload
    with pytest.raises(RecordsError, match="base offset 31") as raised:
        rewrite_records(corrupt, uppercase)
    assert raised.value.base_offset == 31


@ALL_CODECS
def test_decompressed_size_limit(codec: str) -> None:
    records: list[RecordSpec] = [(None, bytes(200_000), [])]
    original = make_batch(codec, records)
    exact = len(build_batch(records)) - HEADER_SIZE
    with pytest.raises(RecordsError, match=f"more than {exact - 1} bytes"):
        rewrite_records(original, identity, max_uncompressed_bytes=exact - 1)
    assert rewrite_records(original, identity, max_uncompressed_bytes=exact)[0] is original


def test_size_limit_without_any_size_hint_in_the_stream() -> None:
    # a streamed zstd frame (no content size, as Java's ZstdOutputStream writes) and a multi-member gzip
    plain = build_batch([(None, bytes(300_000), [])])
    compressor = cramjam.zstd.Compressor()
    compressor.compress(plain[HEADER_SIZE : HEADER_SIZE + 1000])
    compressor.compress(plain[HEADER_SIZE + 1000 :])
    streamed = bytes(compressor.finish())
    two_members = gzip.compress(plain[HEADER_SIZE:1000]) + gzip.compress(plain[1000:])
    for compression, payload in ((COMPRESSION_ZSTD, streamed), (COMPRESSION_GZIP, two_members)):
        batch = _with_payload(plain, payload, compression=compression)
        with pytest.raises(RecordsError, match="more than 250000 bytes"):
            rewrite_records(batch, identity, max_uncompressed_bytes=250_000)
        rewritten, _ = rewrite_records(batch, lambda items: ([b"x"], {}))
        assert aiokafka_batches(rewritten)[0][1][0][3] == b"x"


def _records_payload(records: Sequence[RecordSpec]) -> bytes:
    return b"".join(encode_record(k, v, h, i, 0) for i, (k, v, h) in enumerate(records))


@pytest.mark.parametrize(
    ("payload", "fields", "message"),
    [
        (_records_payload(RECORDS[:2]), {"record_count": 3}, "3 records declared"),
        (_records_payload(RECORDS[:2]), {"record_count": 1}, "bytes left after"),
        (_records_payload(RECORDS[:2]), {"record_count": -1}, "negative record count"),
        (b"\xff" * 12, {"record_count": 1}, "malformed records"),
        # record length 100 with only a few bytes behind it
        (b"\xc8\x01" + _records_payload(RECORDS[:1])[1:], {"record_count": 1}, "has length 100"),
        # value length claims more than the record holds
        (
            b"\x0e\x00\x00\x00\x01\x7e\x02ab\x00" + b"\x00" * 5,
            {"record_count": 1},
            "value of 63 bytes overruns",
        ),
        # header count says 5, record ends after none
        (b"\x0e\x00\x00\x00\x01\x02a\x0a", {"record_count": 1}, "headers overrun"),
    ],
)
def test_malformed_records_are_refused(payload: bytes, fields: dict[str, int], message: str) -> None:
    batch = _with_payload(build_batch(RECORDS[:2], base_offset=64), payload, **fields)
    with pytest.raises(RecordsError, match=message) as raised:
        rewrite_records(batch, identity)
    assert raised.value.base_offset == 64
    with pytest.raises(RecordsError, match=message):
        decode_batch(batch)


def test_decode_batch_refuses_truncated_and_impossible_batches() -> None:
    batch = build_batch(RECORDS, base_offset=12)
    for broken in (batch[:-1], batch[:30]):
        with pytest.raises(RecordsError, match="truncated"):
            decode_batch(broken)
    impossible = bytearray(batch)
    impossible[8:12] = struct.pack(">i", 10)
    with pytest.raises(RecordsError, match="below the minimum") as raised:
        decode_batch(bytes(impossible))
    assert raised.value.base_offset == 12
    assert [r.offset for r in decode_batch(b"xx" + batch, 2).records] == list(range(12, 18))


def test_unknown_codec_is_refused() -> None:
    batch = build_batch(RECORDS, base_offset=8)
    with pytest.raises(RecordsError, match="unknown compression codec 5"):
        rewrite_records(_with_payload(batch, batch[HEADER_SIZE:], compression=5), identity)


def test_impossible_batch_length_is_refused() -> None:
    batch = bytearray(build_batch(RECORDS))
    batch[8:12] = struct.pack(">i", 10)
    with pytest.raises(RecordsError, match="below the minimum"):
        rewrite_records(bytes(batch), identity)


# ------------------------------------------------------------------------------- transform contract


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda items: (items[:-1], {}), "returned 5 values for 6"),
        (lambda items: ([b"x" for _ in items], {}), "null value into a non-null"),
        (lambda items: ([None for _ in items], {}), "non-null value into null"),
        (lambda items: ([None if i is None else i.decode("utf-8", "replace") for i in items], {}), "str"),
        (lambda items: items, "must return \\(items, counts\\)"),
    ],
)
def test_transform_contract_violations(transform: Any, message: str) -> None:
    with pytest.raises(TransformContractError, match=message):
        rewrite_records(build_batch(RECORDS), transform)


def test_transform_may_mutate_its_list_and_return_other_buffer_types() -> None:
    def in_place(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        for index, item in enumerate(items):
            if item:
                items[index] = memoryview(bytearray(item.upper()))  # type: ignore[call-overload]
        return items, {"mutated": 1}

    rewritten, stats = rewrite_records(build_batch(RECORDS), in_place)
    assert rewritten == build_batch(_upper_values(RECORDS))
    assert stats.counts == {"mutated": 1}


def test_counts_summed_over_batches_and_kinds() -> None:
    def counting(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        return items, {"items": len(items), "batches": 1}

    blob = build_batch(RECORDS, base_offset=0) + build_batch(RECORDS[:2], base_offset=6)
    _, stats = rewrite_records(blob, counting, keys=True, headers=True)
    header_values = sum(len(h) for _, _, h in RECORDS) + sum(len(h) for _, _, h in RECORDS[:2])
    assert stats.counts == {"items": 8 + 8 + header_values, "batches": 6}

    _, stats = rewrite_records(build_batch([(b"k", b"v", [])]), counting, keys=True, headers=True)
    assert stats.counts == {"items": 2, "batches": 2}  # no header values: no third call


# ----------------------------------------------------------------------------------------- Hypothesis

NO_DEADLINE = settings(deadline=None, max_examples=60)

records_strategy = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=40),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=6), st.none() | st.binary(max_size=12)), max_size=3),
    ),
    max_size=8,
)


def _suffix_every(stride: int, suffix: bytes) -> Callable[[list[bytes | None]], Any]:
    def transform(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        return [
            item + suffix if item is not None and index % stride == 0 else item
            for index, item in enumerate(items)
        ], {"calls": 1}

    return transform


def _apply_expected(items: list[bytes | None], stride: int, suffix: bytes) -> list[bytes | None]:
    return [item + suffix if item is not None and i % stride == 0 else item for i, item in enumerate(items)]


def _expected_after(
    records: Sequence[RecordSpec], stride: int, suffix: bytes, keys: bool, headers: bool
) -> list[RecordSpec]:
    values = _apply_expected([v for _, v, _ in records], stride, suffix)
    record_keys = [k for k, _, _ in records]
    if keys:
        record_keys = _apply_expected(record_keys, stride, suffix)
    flat = [hv for _, _, hs in records for _, hv in hs]
    if headers:
        flat = _apply_expected(flat, stride, suffix)
    it: Iterator[bytes | None] = iter(flat)
    return [
        (key, value, [(name, next(it)) for name, _ in hs])
        for key, value, (_, _, hs) in zip(record_keys, values, records, strict=True)
    ]


@NO_DEADLINE
@given(
    records=records_strategy,
    codec=st.sampled_from(sorted(CODECS)),
    base_offset=st.integers(0, 2**62),
    base_timestamp=st.integers(0, 2**44),
    producer=st.tuples(st.integers(-1, 2**40), st.integers(-1, 2**15 - 1), st.integers(-1, 2**31 - 1)),
    flags=st.tuples(st.booleans(), st.booleans()),
    stride=st.integers(1, 3),
    suffix=st.binary(max_size=3),
    kinds=st.tuples(st.booleans(), st.booleans()),
)
def test_rewrite_preserves_everything_but_the_transformed_fields(
    records: list[RecordSpec],
    codec: str,
    base_offset: int,
    base_timestamp: int,
    producer: tuple[int, int, int],
    flags: tuple[bool, bool],
    stride: int,
    suffix: bytes,
    kinds: tuple[bool, bool],
) -> None:
    producer_id, producer_epoch, base_sequence = producer
    transactional, log_append_time = flags
    keys, headers = kinds
    original = make_batch(
        codec,
        records,
        base_offset=base_offset,
        base_timestamp=base_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
        log_append_time=log_append_time,
    )
    rewritten, stats = rewrite_records(original, _suffix_every(stride, suffix), keys=keys, headers=headers)
    expected = _expected_after(records, stride, suffix, keys, headers)

    if expected == [(k, v, list(h)) for k, v, h in records]:
        assert rewritten is original
    assert batch_crc_ok(rewritten, 0)
    assert kept_header_fields(rewritten) == kept_header_fields(original)
    [(fields, decoded)] = aiokafka_batches(rewritten)
    assert fields == aiokafka_batches(original)[0][0]
    timestamp = base_timestamp if not log_append_time else fields["max_timestamp"]
    assert decoded == expected_records(expected, base_offset, timestamp)
    ours = decode_batch(rewritten).records
    assert [(r.key, r.value, list(r.headers)) for r in ours] == [(k, v, list(h)) for k, v, h in expected]
    assert stats.records == len(records) and stats.batches == 1


@NO_DEADLINE
@given(
    batches=st.lists(st.tuples(records_strategy, st.sampled_from(sorted(CODECS))), min_size=1, max_size=3),
    cut=st.none() | st.integers(1, 200),
)
def test_multi_batch_blobs_with_partial_tail(
    batches: list[tuple[list[RecordSpec], str]], cut: int | None
) -> None:
    parts, expected, offset = [], [], 0
    for records, codec in batches:
        parts.append(make_batch(codec, records, base_offset=offset))
        expected.append(expected_records(_upper_values(records), offset, 1_700_000_000_000))
        offset += max(len(records), 1)
    tail = b""
    if cut is not None:
        spare = make_batch("zstd", RECORDS, base_offset=offset)
        tail = spare[: min(cut, len(spare) - 1)]
    rewritten, stats = rewrite_records(b"".join(parts) + tail, uppercase)

    assert [records for _, records in aiokafka_batches(rewritten)] == expected
    assert bytes(rewritten).endswith(tail) and stats.trailing_partial_bytes == len(tail)
    assert stats.batches == len(batches)


# ------------------------------------------------------------------------------ batches from librdkafka


def _fetch_records(address: str, topic: str) -> bytes:
    """The raw `records` of partition 0 of `topic`, from a Fetch v12 (topics by name) on a plain socket."""
    import socket

    from gateway.protocols.kafka import codec, framing
    from gateway.protocols.kafka.generated.fetch import FetchRequestFetchPartition, FetchRequestFetchTopic

    host, port = address.rsplit(":", 1)
    request = codec.request_class(1)(
        max_wait_ms=100,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchRequestFetchTopic(
                topic=topic,
                partitions=[
                    FetchRequestFetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
                ],
            )
        ],
    )
    header = framing.request_header(1, 12, 1, "records-test", codec.request_header_version(1, 12))
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(framing.encode_frame([header, codec.encode_request(1, 12, request)]))
        reader = sock.makefile("rb")
        (size,) = struct.unpack(">i", reader.read(4))
        payload = reader.read(size)
    body, _ = codec.decode_response(1, 12, payload, 4 + codec.response_header_version(1, 12))
    partition = body.responses[0].partitions[0]
    assert partition.error_code == 0
    return bytes(partition.records)


@pytest.mark.integration
@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_batches_written_by_librdkafka(tansu: Any, compression: str) -> None:
    from confluent_kafka import Producer

    from tests.integration.kafka_helpers import create_topic, unique_topic

    topic = unique_topic(f"records-{compression}")
    create_topic(tansu.address, topic)
    producer = Producer(
        {"bootstrap.servers": tansu.address, "compression.type": compression, "linger.ms": 50}
    )
    sent = [(b"key-%d" % i, b'{"n": %d, "card": "4111 1111 1111 1111"}' % i) for i in range(50)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value, partition=0, headers=[("source", b"test")])
    assert producer.flush(20) == 0

    deadline = time.monotonic() + 20
    blob = b""
    while time.monotonic() < deadline:  # the broker may need a moment before the records are readable
        blob = _fetch_records(tansu.address, topic)
        if sum(len(records) for _, records in aiokafka_batches(blob)) == len(sent):
            break
        time.sleep(0.1)
    original = aiokafka_batches(blob)
    codec_id = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[compression]
    assert {fields["compression_type"] for fields, _ in original} == {codec_id}

    rewritten, stats = rewrite_records(blob, uppercase)
    assert stats.values_changed == len(sent)
    batches = aiokafka_batches(rewritten)
    assert [fields for fields, _ in batches] == [fields for fields, _ in original]
    assert [(r[2], r[3], r[4]) for _, records in batches for r in records] == [
        (key, value.upper(), [("source", b"test")]) for key, value in sent
    ]
    position = 0
    for header in scan_batches(blob)[0]:
        assert kept_header_fields(rewritten, position) == {
            name: getattr(header, name) for name in BATCH_HEADER_FIELDS if name not in ("batch_length", "crc")
        }
        position += 12 + read_batch_header(rewritten, position).batch_length
