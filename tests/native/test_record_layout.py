"""The native record walk returns exactly what the reference walk (`records._parse_records`) returns, and on
malformed data it refuses (the caller then re-runs the reference walk for the exact message)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import native
from gateway.protocols.kafka.records import _parse_records
from tests.native.batches import build_batch

if native.IMPLEMENTATION != "native":  # the session check already fails when the extension is missing
    pytest.fail("the native extension is not loaded", pytrace=False)

from gateway.native._kafka import parse_record_layout  # noqa: E402

BATCH_HEADER_SIZE = 61
maybe_bytes = st.one_of(st.none(), st.binary(max_size=40))
records = st.lists(st.tuples(maybe_bytes, maybe_bytes,
                             st.lists(st.tuples(st.text(max_size=8), maybe_bytes), max_size=3)),
                   min_size=1, max_size=12)


def payload(specs: list) -> tuple[bytes, int]:
    return build_batch(specs)[BATCH_HEADER_SIZE:], len(specs)


@settings(max_examples=150, deadline=None)
@given(specs=records, want_keys=st.booleans(), want_headers=st.booleans())
def test_native_walk_equals_reference(specs, want_keys, want_headers):
    data, count = payload(specs)
    ref = _parse_records(data, count, want_keys=want_keys, want_headers=want_headers)
    got = parse_record_layout(data, count, want_keys, want_headers)
    assert got == (ref.spans, ref.keys, ref.values, ref.header_spans, ref.header_keys, ref.header_values)


@settings(max_examples=150, deadline=None)
@given(specs=records, cut=st.integers(min_value=1, max_value=200), extra=st.integers(min_value=-2, max_value=2))
def test_native_walk_refuses_what_the_reference_refuses(specs, cut, extra):
    data, count = payload(specs)
    broken = data[: max(len(data) - cut, 0)]
    for candidate, n in ((broken, count), (data, count + extra)):
        try:
            _parse_records(candidate, n, want_keys=True, want_headers=True)
            reference_ok = True
        except ValueError:
            reference_ok = False
        try:
            parse_record_layout(candidate, n, True, True)
            native_ok = True
        except ValueError:
            native_ok = False
        assert native_ok == reference_ok
