"""Micro benchmarks of gateway.native: the Cython module beside its pure-Python twin.

Run: ``.venv/bin/python -m pytest bench/micro/test_native_micro.py --benchmark-only``. Each benchmark runs
once per implementation and stores its throughput from the median round in ``extra_info`` (``MB/s``,
decimal megabytes, and ``ns/op``); the JSON report (``--benchmark-json``) keeps them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from gateway.native import _kafka, reference
from tests.native.batches import build_batch

IMPLEMENTATIONS = pytest.mark.parametrize("impl", [_kafka, reference], ids=["native", "reference"])

KIB = 1024
MIB = 1024 * KIB


def _blob_of_batches(batch_count: int, total: int) -> bytes:
    """`batch_count` uncompressed batches of 1 KiB records filling about `total` bytes."""
    rng = random.Random(7)
    per_batch = total // batch_count
    records_per_batch = per_batch // (KIB + 40)
    parts = []
    for index in range(batch_count):
        records = [(b"key-%d" % i, rng.randbytes(KIB), [("trace", b"abc")]) for i in range(records_per_batch)]
        parts.append(build_batch(records, base_offset=index * records_per_batch))
    return b"".join(parts)


BLOB = _blob_of_batches(16, MIB)
# Varints as records carry them: mostly 1-2 byte lengths and deltas, some timestamps-sized values.
VARINT_VALUES = [random.Random(3).choice([5, 100, 300, -1, 20_000, 2**30]) for _ in range(1000)]
VARINTS = b"".join(reference.encode_varint(value) for value in VARINT_VALUES)


def _record_throughput(benchmark: Any, nbytes: int, operations: int = 1) -> None:
    # the median, not the mean: on a shared machine a few preempted rounds would dominate the mean
    median = benchmark.stats.stats.median
    benchmark.extra_info["MB/s"] = round(nbytes / median / 1e6, 2)
    benchmark.extra_info["ns/op"] = round(median / operations * 1e9, 1)


@IMPLEMENTATIONS
@pytest.mark.parametrize("size", [KIB, MIB], ids=["1KiB", "1MiB"])
def test_crc32c(benchmark: Any, impl: ModuleType, size: int) -> None:
    data = random.Random(size).randbytes(size)
    result = benchmark(impl.crc32c, data)
    assert result == _kafka.crc32c(data)
    _record_throughput(benchmark, size)


@IMPLEMENTATIONS
def test_read_batch_header(benchmark: Any, impl: ModuleType) -> None:
    header = benchmark(impl.read_batch_header, BLOB, 0)
    assert header.magic == 2
    _record_throughput(benchmark, 61)


@IMPLEMENTATIONS
def test_scan_batches_1mib_16_batches(benchmark: Any, impl: ModuleType) -> None:
    headers, partial = benchmark(impl.scan_batches, BLOB)
    assert (len(headers), partial) == (16, len(BLOB))
    _record_throughput(benchmark, len(BLOB))


@IMPLEMENTATIONS
def test_batch_crc_ok_64kib(benchmark: Any, impl: ModuleType) -> None:
    assert benchmark(impl.batch_crc_ok, BLOB, 0) is True
    _record_throughput(benchmark, len(BLOB) // 16)


def _decode_all(decode: Callable[[bytes, int], tuple[int, int]]) -> int:
    position, total, end = 0, 0, len(VARINTS)
    while position < end:
        value, position = decode(VARINTS, position)
        total += value
    return total


@IMPLEMENTATIONS
def test_decode_varint_1000(benchmark: Any, impl: ModuleType) -> None:
    assert benchmark(_decode_all, impl.decode_varint) == sum(VARINT_VALUES)
    _record_throughput(benchmark, len(VARINTS), operations=len(VARINT_VALUES))
