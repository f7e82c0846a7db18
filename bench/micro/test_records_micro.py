"""Micro benchmarks of record-batch rewriting (gateway.protocols.kafka.records.rewrite_records).

Run: ``.venv/bin/python -m pytest bench/micro/test_records_micro.py --benchmark-only``. Each blob holds 1 MiB
of uncompressed records (~1 KiB JSON values, a key and one header each) in 8 batches, as a Fetch response
for one busy partition would. Two transforms bound the cost of masking from below:

- ``identity`` returns its input: decompress + CRC check + walk every record, nothing re-encoded (the cost a
  masking pass pays on clean records before the engine itself);
- ``uppercase`` changes every value: the above plus re-encoding every record, recompressing and
  re-checksumming every batch (the cost on PII-dense records).

``extra_info`` holds ``MB/s`` (decimal megabytes of uncompressed record bytes per second, from the median
round: a shared machine preempts some rounds) and ``wire_MB/s`` (the same over the blob's size on the wire).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from gateway.protocols.kafka.records import rewrite_records
from tests.native.batches import (
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    RecordSpec,
    build_batch,
)

MIB = 1024 * 1024
BATCHES = 8

CODECS = {"none": COMPRESSION_NONE, "lz4": COMPRESSION_LZ4, "zstd": COMPRESSION_ZSTD}


def _json_value(rng: random.Random, index: int) -> bytes:
    """About 1 KiB of order-like JSON with some PII, varied enough that it compresses like real data."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    document = {
        "order_id": f"ord-{index:08d}",
        "customer": {
            "name": f"{rng.choice(words).title()} {rng.choice(words).title()}",
            "email": f"{rng.choice(words)}.{rng.randrange(10**6)}@example.com",
            "card": " ".join(f"{rng.randrange(10**4):04d}" for _ in range(4)),
            "ssn": f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
        },
        "items": [
            {
                "sku": rng.randrange(10**8),
                "qty": rng.randrange(1, 9),
                "note": " ".join(rng.choices(words, k=12)),
            }
            for _ in range(6)
        ],
        "trace": rng.randbytes(48).hex(),
    }
    return json.dumps(document).encode()


def _records(total: int) -> list[RecordSpec]:
    rng = random.Random(11)
    records: list[RecordSpec] = []
    size = 0
    while size < total:
        value = _json_value(rng, len(records))
        records.append(
            (b"customer-%d" % rng.randrange(10**6), value, [("trace-id", rng.randbytes(8).hex().encode())])
        )
        size += len(value) + 40
    return records


RECORDS = _records(MIB)
RECORD_BYTES = len(build_batch(RECORDS)) - 61


def _blob(compression: int) -> bytes:
    per_batch = -(-len(RECORDS) // BATCHES)
    return b"".join(
        build_batch(RECORDS[start : start + per_batch], base_offset=start, compression=compression)
        for start in range(0, len(RECORDS), per_batch)
    )


BLOBS = {name: _blob(compression) for name, compression in CODECS.items()}


def identity(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
    return items, {}


def uppercase(items: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
    return [None if item is None else item.upper() for item in items], {}


TRANSFORMS = {"identity": identity, "uppercase": uppercase}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("codec", list(CODECS))
def test_rewrite_1mib(benchmark: Any, codec: str, transform: str) -> None:
    blob = BLOBS[codec]
    result, stats = benchmark(rewrite_records, blob, TRANSFORMS[transform])
    assert stats.batches == BATCHES and stats.records == len(RECORDS)
    if transform == "identity":
        assert result is blob
    else:
        assert stats.values_changed == len(RECORDS) and result != blob
    median = benchmark.stats.stats.median
    benchmark.extra_info["MB/s"] = round(RECORD_BYTES / median / 1e6, 1)
    benchmark.extra_info["wire_MB/s"] = round(len(blob) / median / 1e6, 1)
    benchmark.extra_info["wire_bytes"] = len(blob)
