"""The test batch builder writes what Kafka clients write: checked against aiokafka, an independent codec.

Every other record-batch test trusts tests/native/batches.py, so it is checked here against aiokafka's
reader (all five codecs, headers, nulls, offsets, timestamps, flags, CRC) and, for uncompressed batches,
byte for byte against aiokafka's own batch builder.
"""

from __future__ import annotations

from typing import Any

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.native.batches import build_batch, build_legacy_message

# Runs on shared CI machines: example counts come from the profile, but wall-clock deadlines would flake.
NO_DEADLINE = settings(deadline=None)

records_strategy = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=64),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=16)), max_size=3),
    ),
    max_size=6,
)


@NO_DEADLINE
@given(
    records=records_strategy,
    compression=st.integers(0, 4),
    base_offset=st.integers(0, 2**62),
    base_timestamp=st.integers(0, 2**44),
    transactional=st.booleans(),
    data=st.data(),
)
def test_aiokafka_reads_what_build_batch_writes(
    records: list[Any],
    compression: int,
    base_offset: int,
    base_timestamp: int,
    transactional: bool,
    data: Any,
) -> None:
    deltas = data.draw(st.lists(st.integers(0, 5000), min_size=len(records), max_size=len(records)))
    raw = build_batch(
        records,
        base_offset=base_offset,
        compression=compression,
        producer_id=77,
        producer_epoch=3,
        base_sequence=11,
        base_timestamp=base_timestamp,
        timestamp_deltas=deltas,
        transactional=transactional,
    )
    batch = DefaultRecordBatch(raw)
    assert batch.validate_crc()
    assert (batch.base_offset, batch.compression_type, batch.is_transactional) == (
        base_offset,
        compression,
        transactional,
    )
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (77, 3, 11)
    assert batch.max_timestamp == base_timestamp + max(deltas, default=0)
    decoded = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    expected = [
        (base_offset + i, base_timestamp + delta, key, value, list(headers))
        for i, ((key, value, headers), delta) in enumerate(zip(records, deltas, strict=True))
    ]
    assert decoded == expected


@NO_DEADLINE
@given(records=records_strategy, base_timestamp=st.integers(0, 2**44))
def test_uncompressed_batches_match_aiokafka_builder_bytes(records: list[Any], base_timestamp: int) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, (key, value, headers) in enumerate(records):
        builder.append(offset, timestamp=base_timestamp + offset, key=key, value=value, headers=list(headers))
    if not records:
        return  # aiokafka does not build empty batches
    ours = build_batch(records, base_timestamp=base_timestamp, timestamp_deltas=range(len(records)))
    assert ours == bytes(builder.build())


def test_control_and_log_append_time_flags() -> None:
    batch = DefaultRecordBatch(
        build_batch([(b"\x00\x00\x00\x00", b"", [])], control=True, log_append_time=True)
    )
    assert batch.is_control_batch and batch.timestamp_type == 1 and batch.validate_crc()


def test_aiokafka_reads_legacy_messages() -> None:
    blob = build_legacy_message(b"k0", b"v0", magic=0, offset=4) + build_legacy_message(
        None, b"v1", magic=1, offset=5, timestamp=1234
    )
    records = MemoryRecords(blob)
    found = []
    while (batch := records.next_batch()) is not None:
        assert batch.validate_crc()
        found += [(r.offset, r.key, r.value, r.timestamp) for r in batch]
    assert found == [(4, b"k0", b"v0", None), (5, None, b"v1", 1234)]
