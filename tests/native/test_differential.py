"""Native == reference for every codec function, on generated inputs, plus known vectors for both.

Each differential test calls the function in both implementations and compares results, or exception
type, message and attributes (tests/native/differential.py). Known-vector tests run against both
implementations; where a property has an independent oracle (aiokafka's CRC32C, the batch builder's own
bookkeeping) the test checks it too, so a bug shared by both implementations still fails.
"""

from __future__ import annotations

import array
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.record.util import calc_crc32c as aiokafka_crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.native import reference
from gateway.native.records import (
    BATCH_HEADER_FIELD_RANGES,
    BATCH_HEADER_FIELDS,
    GIL_RELEASE_THRESHOLD,
    BatchFormatError,
    UnsupportedMagicError,
)
from tests.native.batches import build_batch, build_legacy_message
from tests.native.differential import IMPLEMENTATIONS, native, normalise, same_outcome

# Runs on shared CI machines: example counts come from the profile, but wall-clock deadlines would flake.
NO_DEADLINE = settings(deadline=None)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1

# Ways a caller may hand over bytes; the offset view makes the native loops start unaligned.
BUFFER_KINDS: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "unaligned-view": lambda data: memoryview(b"\x00\x01\x02" + data + b"\x03")[3 : 3 + len(data)],
    "array": lambda data: array.array("B", data),
}
buffer_kinds = st.sampled_from(sorted(BUFFER_KINDS))

# ------------------------------------------------------------------------------------------- CRC32C

CRC32C_VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    # RFC 3720 (iSCSI) appendix B.4
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@IMPLEMENTATIONS
@pytest.mark.parametrize(("data", "expected"), CRC32C_VECTORS)
def test_crc32c_known_vectors(impl: Any, data: bytes, expected: int) -> None:
    assert impl.crc32c(data) == expected


@pytest.mark.parametrize(("data", "expected"), CRC32C_VECTORS)
def test_crc32c_portable_tables_known_vectors(data: bytes, expected: int) -> None:
    # the slicing-by-8 engine is only the fallback on SSE4.2 machines, so test it on purpose
    assert native._crc32c_portable(data) == expected


@NO_DEADLINE
@given(data=st.binary(max_size=2048), kind=buffer_kinds, crc=st.integers(0, UINT32_MAX))
def test_crc32c_matches_reference(data: bytes, kind: str, crc: int) -> None:
    result = same_outcome("crc32c", BUFFER_KINDS[kind](data), crc)
    assert result == ("returned", (int, aiokafka_crc32c(data) if crc == 0 else reference.crc32c(data, crc)))
    assert native._crc32c_portable(data, crc) == result[1][1]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(GIL_RELEASE_THRESHOLD - 8, GIL_RELEASE_THRESHOLD + 3 * 8192 + 777),
    kind=buffer_kinds,
)
def test_crc32c_large_buffers_match_reference(seed: int, size: int, kind: str) -> None:
    # above the GIL-release threshold, and long enough for the three-way interleaved hardware loop
    data = random.Random(seed).randbytes(size)
    expected = aiokafka_crc32c(data)
    assert same_outcome("crc32c", BUFFER_KINDS[kind](data)) == ("returned", (int, expected))
    assert native._crc32c_portable(data) == expected


@pytest.mark.parametrize(
    "size",
    [*range(40), 255, 256, 257, 767, 768, 769, 775, 24575, 24576, 24577, 24583, 2 * 24576 + 3 * 256 + 9],
)
def test_crc32c_block_boundaries(size: int) -> None:
    # sizes around the 8-byte words and the 256/8192-byte interleave blocks, from every alignment
    backing = random.Random(size).randbytes(size + 8)
    for shift in range(8):
        view = memoryview(backing)[shift : shift + size]
        expected = aiokafka_crc32c(bytes(view))
        assert native.crc32c(view) == expected
        assert native._crc32c_portable(view) == expected
    assert reference.crc32c(backing[:size]) == aiokafka_crc32c(backing[:size])


@IMPLEMENTATIONS
@NO_DEADLINE
@given(first=st.binary(max_size=600), second=st.binary(max_size=600))
def test_crc32c_chains_across_calls(impl: Any, first: bytes, second: bytes) -> None:
    assert impl.crc32c(second, impl.crc32c(first)) == impl.crc32c(first + second)


@pytest.mark.parametrize(
    "argument",
    [
        "text",
        12,
        None,
        memoryview(b"abcdef")[::2],  # not contiguous
        memoryview(bytearray(8)).cast("B", (2, 4)),  # 2-D but contiguous: read as raw bytes
        array.array("I", [1, 2, 3]),  # wider items: read as raw bytes, like zlib.crc32
    ],
    ids=["str", "int", "none", "strided", "2d", "uint32-array"],
)
def test_crc32c_odd_buffers_behave_alike(argument: object) -> None:
    same_outcome("crc32c", argument)


@pytest.mark.parametrize("crc", [-1, UINT32_MAX + 1, 2**70, 1.0, "0", None])
def test_crc32c_rejects_bad_start_values_alike(crc: object) -> None:
    result = same_outcome("crc32c", b"abc", crc)
    assert result[0] == "raised"


# ------------------------------------------------------------------------------------------ varints

# (value, encoding): Kafka's ByteUtils test vectors follow the zigzag-then-base-128 rule below.
VARINT_VECTORS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (8191, "fe7f"),
    (-8192, "ff7f"),
    (8192, "808001"),
    (-8193, "818001"),
    (1048575, "feff7f"),
    (-1048576, "ffff7f"),
    (1048576, "80808001"),
    (-1048577, "81808001"),
    (134217727, "feffff7f"),
    (-134217728, "ffffff7f"),
    (134217728, "8080808001"),
    (-134217729, "8180808001"),
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
]
VARLONG_VECTORS = [
    *VARINT_VECTORS[:-2],
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
    (2**31, "8080808010"),
    (INT64_MAX, "feffffffffffffffff01"),
    (INT64_MIN, "ffffffffffffffffff01"),
]
UNSIGNED_VARINT_VECTORS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (UINT32_MAX, "ffffffff0f"),
]

VARINT_KINDS = {
    # name: (encode, decode, lowest, highest, maximum encoded length)
    "varint": ("encode_varint", "decode_varint", INT32_MIN, INT32_MAX, 5),
    "varlong": ("encode_varlong", "decode_varlong", INT64_MIN, INT64_MAX, 10),
    "unsigned_varint": ("encode_unsigned_varint", "decode_unsigned_varint", 0, UINT32_MAX, 5),
}


def edge_values(lowest: int, highest: int) -> list[int]:
    """Both ends of the range and every value next to a 7-bit group boundary of the encoding."""
    values = {lowest, lowest + 1, highest - 1, highest, 0, 1, -1}
    for bits in range(1, 65):
        for base in (1 << bits, -(1 << bits)):
            values.update({base - 1, base, base + 1})
    return sorted(value for value in values if lowest <= value <= highest)


@IMPLEMENTATIONS
@pytest.mark.parametrize(
    ("kind", "vectors"),
    [("varint", VARINT_VECTORS), ("varlong", VARLONG_VECTORS), ("unsigned_varint", UNSIGNED_VARINT_VECTORS)],
)
def test_varint_known_vectors(impl: Any, kind: str, vectors: list[tuple[int, str]]) -> None:
    encode, decode = (getattr(impl, name) for name in VARINT_KINDS[kind][:2])
    for value, encoded_hex in vectors:
        encoded = bytes.fromhex(encoded_hex)
        assert encode(value) == encoded, value
        assert decode(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded)), value


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
def test_varint_edge_values_round_trip_alike(kind: str) -> None:
    encode, decode, lowest, highest, max_length = VARINT_KINDS[kind]
    for value in edge_values(lowest, highest):
        encoded_outcome = same_outcome(encode, value)
        encoded = encoded_outcome[1][1]
        assert 1 <= len(encoded) <= max_length
        assert same_outcome(decode, encoded, 0) == ("returned", ((int, value), (int, len(encoded))))
        # every strict prefix is a truncated varint
        for cut in range(len(encoded)):
            assert same_outcome(decode, encoded[:cut], 0)[:2] == ("raised", ValueError)
    for outside in (lowest - 1, highest + 1, lowest - 2**70, highest + 2**70):
        assert same_outcome(encode, outside)[:2] == ("raised", ValueError)


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
@NO_DEADLINE
@given(data=st.data())
def test_varint_encode_matches_reference(kind: str, data: st.DataObject) -> None:
    encode, decode, lowest, highest, _ = VARINT_KINDS[kind]
    value = data.draw(
        st.integers(lowest, highest) | st.sampled_from(edge_values(lowest, highest)) | st.integers()
    )
    result = same_outcome(encode, value)
    if lowest <= value <= highest:
        assert same_outcome(decode, result[1][1], 0)[1][0] == (int, value)
    else:
        assert result[:2] == ("raised", ValueError)


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
@pytest.mark.parametrize("value", [1.0, "1", None, b"\x01"], ids=["float", "str", "none", "bytes"])
def test_varint_encode_rejects_non_integers_alike(kind: str, value: object) -> None:
    assert same_outcome(VARINT_KINDS[kind][0], value) == ("raised", TypeError)


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
@NO_DEADLINE
@given(data=st.data())
def test_varint_decode_arbitrary_bytes_alike(kind: str, data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=24))
    pos = data.draw(st.integers(-2, len(raw) + 2))
    kind_name = data.draw(buffer_kinds)
    same_outcome(VARINT_KINDS[kind][1], BUFFER_KINDS[kind_name](raw), pos)


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
@pytest.mark.parametrize(
    "raw",
    ["80" * 11, "ff" * 5 + "00", "8080808010", "80" * 9 + "02", "ff" * 9 + "01", "8000", "ff" * 4 + "0f"],
)
def test_varint_decode_overlong_and_wide_alike(kind: str, raw: str) -> None:
    same_outcome(VARINT_KINDS[kind][1], bytes.fromhex(raw), 0)


@IMPLEMENTATIONS
def test_varint_decode_limits(impl: Any) -> None:
    # Kafka accepts non-minimal encodings; beyond the width or the maximum length is malformed
    assert impl.decode_varint(b"\x80\x00", 0) == (0, 2)
    assert impl.decode_varint(b"\xfe\xff\xff\xff\x0f", 0) == (INT32_MAX, 5)
    assert impl.decode_unsigned_varint(b"\xff\xff\xff\xff\x0f", 0) == (UINT32_MAX, 5)
    assert impl.decode_varlong(b"\xff" * 9 + b"\x01", 0) == (INT64_MIN, 10)
    malformed = [
        (impl.decode_varint, b"\xff\xff\xff\xff\x10"),  # a 33rd bit
        (impl.decode_varint, b"\x80\x80\x80\x80\x80\x00"),  # six bytes
        (impl.decode_unsigned_varint, b"\x80\x80\x80\x80\x10"),
        (impl.decode_varlong, b"\xff" * 9 + b"\x02"),  # a 65th bit
        (impl.decode_varlong, b"\x80" * 10 + b"\x00"),  # eleven bytes
    ]
    for decode, raw in malformed:
        with pytest.raises(ValueError, match="malformed"):
            decode(raw, 0)
    with pytest.raises(ValueError, match="truncated varint at offset 1"):
        impl.decode_varint(b"\x00\x80", 1)
    with pytest.raises(ValueError, match="truncated"):
        impl.decode_varint(b"\x00", 1)
    with pytest.raises(ValueError, match="outside buffer"):
        impl.decode_varint(b"\x00", 2)
    with pytest.raises(ValueError, match="outside buffer"):
        impl.decode_varint(b"\x00", -1)


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
@pytest.mark.parametrize("pos", [2**63, -(2**63) - 1, 1.0, "0", None])
def test_varint_decode_bad_positions_alike(kind: str, pos: object) -> None:
    result = same_outcome(VARINT_KINDS[kind][1], b"\x00\x00", pos)
    assert result[0] == "raised"


@pytest.mark.parametrize("kind", sorted(VARINT_KINDS))
def test_varint_decode_keyword_and_bool_positions_alike(kind: str) -> None:
    decode = VARINT_KINDS[kind][1]
    assert same_outcome(decode, b"\x02\x04", pos=1)[0] == "returned"
    assert same_outcome(decode, b"\x02\x04", True) == same_outcome(decode, b"\x02\x04", 1)


# ------------------------------------------------------------------------------------ batch headers


@st.composite
def header_field_values(draw: st.DrawFn) -> dict[str, int]:
    return {name: draw(st.integers(*BATCH_HEADER_FIELD_RANGES[name])) for name in BATCH_HEADER_FIELDS}


@NO_DEADLINE
@given(values=header_field_values())
def test_batch_header_objects_match_reference(values: dict[str, int]) -> None:
    ours, theirs = native.BatchHeader(**values), reference.BatchHeader(**values)
    assert normalise(ours) == normalise(theirs)
    assert repr(ours) == repr(theirs)
    for derived in ("last_offset", "compression", "is_transactional", "is_control"):
        assert normalise(getattr(ours, derived)) == normalise(getattr(theirs, derived)), derived
    assert ours.last_offset == values["base_offset"] + values["last_offset_delta"]
    assert ours.compression == values["attributes"] & 7
    assert ours.is_transactional == bool(values["attributes"] & 0x10)
    assert ours.is_control == bool(values["attributes"] & 0x20)


@IMPLEMENTATIONS
@NO_DEADLINE
@given(values=header_field_values())
def test_batch_header_equality(impl: Any, values: dict[str, int]) -> None:
    header = impl.BatchHeader(**values)
    same = impl.BatchHeader(*values.values())
    assert header == same
    assert (header != same) is False
    changed = dict(values, record_count=values["record_count"] ^ 1)
    assert header != impl.BatchHeader(**changed)
    assert header != tuple(values.values())
    with pytest.raises(TypeError):
        hash(header)  # mutable, so unhashable
    same.record_count = changed["record_count"]
    assert same == impl.BatchHeader(**changed)


@pytest.mark.parametrize("name", BATCH_HEADER_FIELDS)
def test_batch_header_rejects_out_of_range_fields_alike(name: str) -> None:
    low, high = BATCH_HEADER_FIELD_RANGES[name]
    for bad in (low - 1, high + 1, 2**80, 1.5, "1"):
        values = {field: 0 for field in BATCH_HEADER_FIELDS}
        values[name] = bad
        assert same_outcome("BatchHeader", **values)[0] == "raised"


# -------------------------------------------------------------------------------------- record batches

record_specs = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=40),
        st.none() | st.binary(max_size=200),
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=16)), max_size=3),
    ),
    max_size=8,
)


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    records = draw(record_specs)
    return build_batch(
        records,
        base_offset=draw(st.integers(0, 2**62)),
        compression=draw(st.sampled_from([0, 0, 1, 2, 3, 4])),
        producer_id=draw(st.sampled_from([-1, 0, 7, 2**40])),
        producer_epoch=draw(st.sampled_from([-1, 0, 3])),
        base_sequence=draw(st.sampled_from([-1, 0, 1000])),
        partition_leader_epoch=draw(st.integers(-1, 50)),
        base_timestamp=draw(st.integers(0, 2**45)),
        timestamp_deltas=draw(st.lists(st.integers(0, 10_000), min_size=len(records), max_size=len(records))),
        transactional=draw(st.booleans()),
        control=draw(st.booleans()),
        log_append_time=draw(st.booleans()),
    )


blobs = st.lists(batches(), max_size=5)


def batch_starts(parts: list[bytes]) -> list[int]:
    starts, position = [], 0
    for part in parts:
        starts.append(position)
        position += len(part)
    return starts


@NO_DEADLINE
@given(parts=blobs, kind=buffer_kinds)
def test_scan_batches_complete_blobs(parts: list[bytes], kind: str) -> None:
    blob = b"".join(parts)
    result = same_outcome("scan_batches", BUFFER_KINDS[kind](blob))
    headers = reference.scan_batches(blob)[0]
    assert result[1][1] == (int, len(blob))
    assert len(headers) == len(parts)
    for header, part in zip(headers, parts, strict=True):
        assert header.batch_length == len(part) - 12
        assert header.magic == 2
        assert header.base_offset == struct.unpack_from(">q", part)[0]
        assert header == reference.read_batch_header(part)


@NO_DEADLINE
@given(parts=blobs.filter(bool), data=st.data())
def test_scan_batches_truncated_blobs(parts: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(parts)
    cut = data.draw(st.integers(0, len(blob)))
    result = same_outcome("scan_batches", blob[:cut])
    # oracle: every batch ending at or before the cut is complete; the next one (if any) is partial
    starts = batch_starts(parts)
    complete = sum(1 for start, part in zip(starts, parts, strict=True) if start + len(part) <= cut)
    partial_start = starts[complete] if complete < len(parts) else len(blob)
    assert result[1] == (
        [normalise(h) for h in reference.scan_batches(blob)[0][:complete]],
        (int, partial_start),
    )


@NO_DEADLINE
@given(parts=blobs.filter(bool), data=st.data())
def test_corrupted_blobs_alike(parts: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(b"".join(parts))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    same_outcome("scan_batches", blob)
    starts = batch_starts(parts)
    for start in starts:
        same_outcome("read_batch_header", blob, start)
        same_outcome("batch_crc_ok", blob, start)
    # oracle: a flipped byte anywhere from the crc field to the end of its batch fails the check
    owner = max(i for i, start in enumerate(starts) if start <= index)
    if index - starts[owner] >= 17:
        assert same_outcome("batch_crc_ok", blob, starts[owner]) == ("returned", (bool, False))


@NO_DEADLINE
@given(parts=blobs, data=st.data())
def test_batch_crc_ok_and_read_batch_header_alike(parts: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(parts)
    for start, part in zip(batch_starts(parts), parts, strict=True):
        assert same_outcome("batch_crc_ok", blob, start) == ("returned", (bool, True))
        assert same_outcome("read_batch_header", blob, start)[0] == "returned"
        assert same_outcome("batch_crc_ok", blob[: start + len(part) - 1], start)[1] is BatchFormatError
    pos = data.draw(st.integers(-2, len(blob) + 2))
    same_outcome("read_batch_header", blob, pos)
    same_outcome("batch_crc_ok", blob, pos)


@NO_DEADLINE
@given(before=blobs, after=blobs, magic=st.sampled_from([0, 1]), key=st.none() | st.binary(max_size=20))
def test_legacy_message_set_stops_the_scan(
    before: list[bytes], after: list[bytes], magic: int, key: bytes | None
) -> None:
    prefix = b"".join(before)
    blob = prefix + build_legacy_message(key, b"legacy value", magic=magic, offset=5) + b"".join(after)
    result = same_outcome("scan_batches", blob)
    assert result[:2] == ("raised", UnsupportedMagicError)
    offset, reported_magic, headers = result[3:]
    assert (offset, reported_magic) == (len(prefix), magic)
    assert headers == [normalise(h) for h in reference.scan_batches(prefix)[0]]
    assert same_outcome("read_batch_header", blob, len(prefix))[1] is UnsupportedMagicError
    assert same_outcome("batch_crc_ok", blob, len(prefix))[1] is UnsupportedMagicError


@IMPLEMENTATIONS
def test_scan_reports_legacy_and_unknown_magic(impl: Any) -> None:
    first = build_batch([(b"k", b"v", [])], base_offset=100)
    legacy = build_legacy_message(b"k", b"v", magic=0)
    with pytest.raises(UnsupportedMagicError) as raised:
        impl.scan_batches(first + legacy)
    assert (raised.value.offset, raised.value.magic) == (len(first), 0)
    assert [h.base_offset for h in raised.value.headers] == [100]
    assert "legacy message set (magic 0)" in str(raised.value)
    unknown = bytearray(first)
    unknown[16] = 0xFF
    with pytest.raises(UnsupportedMagicError, match="unknown record format") as raised:
        impl.scan_batches(first + unknown)
    assert (raised.value.offset, raised.value.magic, len(raised.value.headers)) == (len(first), -1, 1)


@IMPLEMENTATIONS
def test_scan_partial_and_impossible_lengths(impl: Any) -> None:
    batch = build_batch([(None, b"value", [("h", b"1")])])
    assert impl.scan_batches(b"") == ([], 0)
    assert impl.scan_batches(batch[:16]) == ([], 0)  # too short to see the magic byte: partial
    assert impl.scan_batches(batch + batch[:17]) == ([impl.read_batch_header(batch)], len(batch))
    too_short = bytearray(batch)
    too_short[8:12] = struct.pack(">i", 48)
    with pytest.raises(BatchFormatError, match="below the minimum 49") as raised:
        impl.scan_batches(batch + too_short)
    assert raised.value.offset == len(batch)
    with pytest.raises(BatchFormatError, match="truncated: 60 of 61 bytes"):
        impl.read_batch_header(batch[:60])
    with pytest.raises(BatchFormatError, match="truncated: needs"):
        impl.batch_crc_ok(batch[:-1], 0)


@IMPLEMENTATIONS
def test_header_fields_from_the_wire(impl: Any) -> None:
    batch = build_batch(
        [(b"a", b"1", []), (b"b", None, []), (None, b"3", [("trace", b"x")])],
        base_offset=2**40,
        compression=4,
        producer_id=4242,
        producer_epoch=7,
        base_sequence=99,
        partition_leader_epoch=12,
        base_timestamp=1_000,
        timestamp_deltas=[0, 30, 20],
        offset_deltas=[0, 1, 5],
        transactional=True,
    )
    header = impl.read_batch_header(b"junk" + batch, 4)
    assert (header.base_offset, header.last_offset, header.record_count) == (2**40, 2**40 + 5, 3)
    assert (header.base_timestamp, header.max_timestamp) == (1_000, 1_030)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4242, 7, 99)
    assert (header.partition_leader_epoch, header.compression, header.magic) == (12, 4, 2)
    assert header.is_transactional and not header.is_control
    assert header.crc == aiokafka_crc32c(batch[21:])
    control = impl.read_batch_header(build_batch([(b"\x00\x00\x00\x01", b"", [])], control=True))
    assert control.is_control


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), extra=st.integers(0, 3 * 8192))
def test_large_batches_alike(seed: int, extra: int) -> None:
    # a batch over the GIL-release threshold exercises the nogil checksum path of batch_crc_ok
    value = random.Random(seed).randbytes(GIL_RELEASE_THRESHOLD + extra)
    batch = build_batch([(b"big", value, [])])
    blob = build_batch([(b"small", b"1", [])]) + batch
    assert same_outcome("batch_crc_ok", blob, len(blob) - len(batch)) == ("returned", (bool, True))
    corrupted = bytearray(blob)
    corrupted[-1 - seed % len(value)] ^= 0x40
    assert same_outcome("batch_crc_ok", corrupted, len(blob) - len(batch)) == ("returned", (bool, False))
    assert same_outcome("scan_batches", blob)[1][1] == (int, len(blob))
