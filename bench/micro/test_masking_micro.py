"""Micro benchmarks of the masking engine: native beside the reference, a naive baseline and the ceiling.

Two data sets of ~1 KiB JSON records (a fixed seed, so runs compare): PII-dense records (a customer block
with email, phone and SSN, a card, an IP address and a note; nine in ten records carry findings) and clean
records of the same shape (timestamps, order ids, amounts, UUIDs, dates: the look-alikes, no PII).
Variants, each masking 256-record batches with all ten detectors and the `pii` field rules:

- ``native``     MaskingEngine with the Cython/Hyperscan engine;
- ``reference``  the pure-Python engine (same output);
- ``naive``      the python ``hyperscan`` wheel, one scan per record, a Python callback per match that only
                 collects matches (no validation, no rewriting): the floor of any per-match-callback design;
- ``hyperscan``  Hyperscan alone over the joined batch with a C callback that counts (the engine's own
                 database: the ceiling), and ``hyperscan-all`` with every precise trigger pattern of the
                 reference compiled in (what a pure-Hyperscan design would scan with).

Run ``.venv/bin/python -m pytest bench/micro/test_masking_micro.py --benchmark-only`` (MB/s from the
median round in ``extra_info``), or ``.venv/bin/python -m bench.micro.test_masking_micro`` for a table
of MB/s per core (CPU time, best of several rounds, which is what matters on a shared machine).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.masking import MaskingEngine, MaskingProfile, compile_profile
from gateway.masking.reference import compile_reference_database

DETECTORS = [
    "credit_card",
    "us_ssn",
    "iban",
    "email",
    "phone",
    "ip_address",
    "aws_access_key",
    "private_key",
    "jwt",
    "generic_secret",
]
PROFILE = MaskingProfile(
    detectors=DETECTORS,
    fields={"$.customer.ssn": "redact", "$.payment.card": {"keep_last": 4}},
    operator="redact",
)
BATCH = 256
RECORDS = 2048
KEY = b"bench-key"

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu parcel invoice shipment warehouse"
).split()


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed([*digits, check])):
            if i % 2:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return "".join(map(str, [*digits, check]))
    raise AssertionError("unreachable")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _clean_record(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "event_id": f"evt-{i:012d}",
        "ts": 1_700_000_000_000 + i * 37,
        "created": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.{i % 1000:03d}Z",
        "type": rng.choice(["order.created", "order.paid", "cart.updated", "shipment.sent"]),
        "trace": f"{rng.getrandbits(128):032x}",
        "order": {
            "id": f"ORD-2024{rng.randrange(10**8):08d}",
            "amount": round(rng.random() * 900, 2),
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "items": [
                {"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randint(1, 5), "name": _sentence(rng, 3)}
                for _ in range(3)
            ],
        },
        "session": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
        "note": _sentence(rng, 30),
        "client": {"version": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}", "build": rng.randrange(10**9)},
    }  # fmt: skip


def _pii_record(rng: random.Random, i: int) -> dict[str, Any]:
    record = _clean_record(rng, i)
    if i % 10 == 9:  # one record in ten carries nothing to mask
        return record
    first, last = rng.choice(_WORDS).title(), rng.choice(_WORDS).title()
    record["customer"] = {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "phone": f"+1 415 555 {rng.randrange(1000, 10000)}",
        "ssn": f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
    }
    record["payment"] = {
        "card": _luhn_complete(rng, "4", 16),
        "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.7",
    }
    record["note"] = (
        _sentence(rng, 12)
        + f" call {rng.randint(200, 999)}-555-{rng.randrange(1000, 10000)} or "
        + (f"write {first.lower()}@corp.example.org")
    )
    return record


def make_records(kind: str, count: int = RECORDS) -> list[bytes]:
    rng = random.Random(20240515 if kind == "pii" else 20240516)
    build = _pii_record if kind == "pii" else _clean_record
    return [json.dumps(build(rng, i)).encode() for i in range(count)]


DATASETS = {kind: make_records(kind) for kind in ("pii", "clean")}
BATCHES = {kind: [recs[k : k + BATCH] for k in range(0, len(recs), BATCH)] for kind, recs in DATASETS.items()}


def _naive_masker() -> Callable[[list[bytes]], int]:
    db = compile_reference_database(compile_profile(PROFILE))

    def scan(batch: list[bytes]) -> int:
        found: list[tuple[int, int, int]] = []
        for value in batch:
            db.scan(value, match_event_handler=lambda pid, frm, to, flags, ctx: found.append((pid, frm, to)))
        return len(found)

    return scan


def _variant(name: str, kind: str) -> tuple[Callable[[], object], int]:
    """A callable that processes one pass over the data set, and the bytes it covers."""
    batches = BATCHES[kind]
    if name == "reference":
        batches = batches[:1]  # the reference is ~100x slower; one batch is enough to measure it
    nbytes = sum(len(value) for batch in batches for value in batch)
    if name in ("native", "reference"):
        engine = MaskingEngine(PROFILE, hmac_key=KEY, implementation=name)
        return (lambda: [engine.mask_values(batch) for batch in batches]), nbytes
    if name == "naive":
        naive = _naive_masker()
        return (lambda: [naive(batch) for batch in batches]), nbytes
    raise ValueError(name)


def _joined(kind: str) -> bytes:
    return b"\x00".join(DATASETS[kind]) + b"\x00"


def counting_database(all_patterns: bool) -> Any:
    """Hyperscan alone: the engine's database (literal-anchored patterns), or every precise pattern."""
    from gateway.masking import _scanner

    compiled = compile_profile(PROFILE)
    emulated = set(_scanner.NativeMaskingEngine(compiled, KEY).emulated_pattern_ids())
    chosen = [p for i, p in enumerate(compiled.patterns) if all_patterns or i not in emulated]
    return _scanner.CountingDatabase([p.expression for p in chosen], [p.flags for p in chosen])


def ceiling_mb_s(kind: str, all_patterns: bool, rounds: int = 9) -> float:
    """Hyperscan alone over the joined data set: MB per CPU second, best of `rounds`."""
    database, data = counting_database(all_patterns), _joined(kind)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        database.count(data)
        best = min(best, time.process_time() - started)
    return len(data) / best / 1e6


def _record_throughput(benchmark: Any, nbytes: int) -> None:
    if benchmark.stats is None:  # --benchmark-disable: the code ran once, nothing was timed
        return
    # the median, not the mean: on a shared machine a few preempted rounds would dominate the mean
    benchmark.extra_info["MB/s"] = round(nbytes / benchmark.stats.stats.median / 1e6, 2)
    benchmark.extra_info["bytes"] = nbytes


# ------------------------------------------------------------------------------------------- pytest-benchmark


@pytest.mark.parametrize("kind", ["pii", "clean"])
@pytest.mark.parametrize("name", ["native", "reference", "naive"])
def test_masking(benchmark: Any, name: str, kind: str) -> None:
    run, nbytes = _variant(name, kind)
    benchmark.pedantic(run, rounds=3 if name == "reference" else 10, warmup_rounds=1)
    _record_throughput(benchmark, nbytes)


@pytest.mark.parametrize("kind", ["pii", "clean"])
@pytest.mark.parametrize("which", ["engine-db", "all-patterns"])
def test_hyperscan_ceiling(benchmark: Any, which: str, kind: str) -> None:
    database, data = counting_database(which == "all-patterns"), _joined(kind)
    benchmark.pedantic(database.count, args=(data,), rounds=10, warmup_rounds=1)
    _record_throughput(benchmark, len(data))


def test_native_output_matches_reference_on_the_bench_data() -> None:
    native = MaskingEngine(PROFILE, hmac_key=KEY, implementation="native")
    reference = MaskingEngine(PROFILE, hmac_key=KEY, implementation="reference")
    for kind in ("pii", "clean"):
        batch = BATCHES[kind][0]
        assert native.mask_values(batch) == reference.mask_values(batch)
    _, counts = native.mask_values(DATASETS["pii"])
    assert counts["email"] >= RECORDS * 0.9 * 2 - 1  # most PII records really carry findings
    assert native.mask_values(DATASETS["clean"])[1] == {}


# ------------------------------------------------------------------------------------------- table


def cpu_mb_s(name: str, kind: str, rounds: int = 7) -> float:
    run, nbytes = _variant(name, kind)
    run()
    best = float("inf")
    for _ in range(rounds if name != "reference" else 2):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return nbytes / best / 1e6


def main() -> None:
    sizes = {kind: sum(map(len, recs)) / len(recs) for kind, recs in DATASETS.items()}
    print(f"records: pii {sizes['pii']:.0f} B, clean {sizes['clean']:.0f} B average; batches of {BATCH}")
    print(f"{'variant':<34}{'pii MB/s':>12}{'clean MB/s':>12}")
    for name in ("native", "reference", "naive"):
        print(f"{name:<34}{cpu_mb_s(name, 'pii'):>12.1f}{cpu_mb_s(name, 'clean'):>12.1f}")
    for label, all_patterns in (
        ("hyperscan ceiling (engine db)", False),
        ("hyperscan (all precise patterns)", True),
    ):
        print(
            f"{label:<34}{ceiling_mb_s('pii', all_patterns):>12.1f}{ceiling_mb_s('clean', all_patterns):>12.1f}"
        )


if __name__ == "__main__":
    main()
