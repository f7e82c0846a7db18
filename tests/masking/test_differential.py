"""Native == reference, byte for byte and count for count, on generated profiles and record batches.

Generated values mix real PII, near misses and the separators and escapes around which the native fast
paths take shortcuts: JSON serialised in every escaping style (so findings straddle `\\uXXXX` and `\\n`
escapes), overlapping candidates from several detectors, NUL bytes (the native batch separator),
invalid UTF-8, empty values, nulls, and ~1 MiB values. Set HYPOTHESIS_PROFILE=deep for many more examples.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.masking import MaskingEngine, MaskingProfile
from tests.masking.helpers import ALL_DETECTORS, DEEP, IMPLS, KEY

if "native" not in IMPLS:
    pytest.skip("native masking extension not built (reference explicitly allowed)", allow_module_level=True)

EXAMPLES = 1500 if DEEP else 120
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PII = [
    "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "3782 822463 10005",
    "4222222222222", "123-45-6789", "536 22 1234", "078-05-1120", "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "NO93 8601 1117 947", "bob@example.com",
    "x_y%z@d-1.io", "+1 415 555 2671", "+44 20 7946 0958", "(415) 555-2671", "415-555-2671", "415.555.2671",
    "1-800-555-0199", "020 7946 0958", "06 12 34 56 78", "10.0.0.1", "255.255.255.255", "::1", "fe80::1",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.1", "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.",
    "ghp_R2d2C3p0Lk9xQ8wZ1m4N7b5V6c3X0z9Y8a7B", "sk_live_q8Fz2LmN4pRtQ9vLm2XpAz3k", "api_key=q8Fz2LmN4pRt",
    "password: 'Tr0ub4dorXk3'", "token = aZ3kQ9vLm2Xp", "ORD-20240115", "EMP-123456", "bluebird",
]  # fmt: skip
NEAR_MISSES = [
    "4111111111111112", "1700000000000", "123-45-0000", "666-12-3456", "DE89370400440532013001",
    "john@localhost", "123-456-7890", "911-555-1234", "256.1.1.1", "1.2.3.4.5", "std::string", "10:30:00",
    "2024-01-15", "AKIAIOSFODNN8EXAMPLE", "eyJmb28iOiJiYXIifQ.eyJ4IjoxfQ.sig", "ghp_aaaaaaaaaaaaaaaaaaaa",
    "api_key=changeme", "1.4.2",
]  # fmt: skip
GLUE = [" ", "", "-", ".", "@", ":", "=", "(", ")", "+", "_", "/", ",", "\n", "\t", '"', "'", "\\", "é", "€",
        "😀", "\x00", "\x7f", "A", "z", "0", "9", "1", "::", "--", "  "]  # fmt: skip

digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
fragments = st.one_of(
    st.sampled_from(PII),
    st.sampled_from(PII),
    st.sampled_from(NEAR_MISSES),
    st.sampled_from(GLUE),
    st.sampled_from(GLUE),
    digits,
    st.text(max_size=6),
)
texts = st.lists(fragments, min_size=1, max_size=10).map("".join)
rule_keys = ["ssn", "SSN", "card", "email", "client_secret", "api_key", "token", "note", "items", "a b"]

json_scalars = st.one_of(
    texts,
    texts,
    texts,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([4111111111111111, 1700000000000, 378282246310005, 4111111111111112]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
keys = st.one_of(st.sampled_from(rule_keys), st.sampled_from(rule_keys), st.sampled_from(rule_keys), texts)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=20,
)
json_docs = st.tuples(
    st.one_of(
        st.lists(json_values, min_size=1, max_size=5),
        st.dictionaries(keys, json_values, min_size=1, max_size=6),
    ),
    st.booleans(),
    st.sampled_from([None, (",", ":"), (", ", ": ")]),
    st.sampled_from([None, 2]),
).map(lambda t: json.dumps(t[0], ensure_ascii=t[1], separators=t[2], indent=t[3]).encode())


def _corrupt(data: bytes, cut: int) -> bytes:
    """JSON-ish bytes broken in a way that makes them text: truncated, or with invalid UTF-8 spliced in."""
    cut = cut % (len(data) + 1)
    return data[:cut] + b"\xff\xc3" + data[cut:] if cut % 2 else data[:cut]


record_values = st.one_of(
    json_docs,
    json_docs,
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
    st.tuples(json_docs, st.integers(min_value=0)).map(lambda t: _corrupt(*t)),
    st.just(b""),
    st.none(),
)
batches = st.lists(record_values, min_size=1, max_size=8)

CUSTOM_REGEXES = [
    r"ORD-[0-9]{4,}",
    r"[0-9]{6,}",
    r"(?i)secret[a-z]*",
    r"\bkey\b",
    r"a.b",
    r"[^ ]+@[^ ]+",
    r"x+y?",
]
operators = st.one_of(
    st.sampled_from(["redact", "hash", "null", "drop"]),
    st.integers(min_value=0, max_value=6).map(lambda n: {"keep_last": n}),
    st.just({"redact": "PII"}),
)
field_rules = st.dictionaries(
    st.sampled_from(
        ["ssn", "card", "note", "token", "a b", "$.items[*].card", "$.a b", "$[0].ssn", "$.ssn"]
    ).map(lambda k: k.replace("$.a b", "$['a b']").replace("$[0].ssn", "$.items[0].ssn")),
    operators,
    min_size=1,
    max_size=4,
)
field_rules = st.one_of(st.just({}), field_rules)


@st.composite
def profiles(draw: st.DrawFn) -> tuple[MaskingProfile, dict[str, Any]]:
    detectors = draw(
        st.one_of(st.just(ALL_DETECTORS), st.lists(st.sampled_from(ALL_DETECTORS), min_size=1, unique=True))
    )
    custom: dict[str, Any] = {}
    if draw(st.booleans()):
        custom["custom_re"] = {
            "regex": draw(st.sampled_from(CUSTOM_REGEXES)),
            "ignore_case": draw(st.booleans()),
        }
    if draw(st.booleans()):
        words = draw(
            st.lists(st.sampled_from(["bluebird", "key", "EMP", "é", "a b", "00", "bob"]), min_size=1)
        )
        custom["custom_words"] = {"dictionary": words, "whole_word": draw(st.booleans())}
    profile = MaskingProfile(
        detectors=detectors + sorted(custom), fields=draw(field_rules), operator=draw(operators)
    )
    return profile, custom


def _engines(profile: MaskingProfile, custom: dict[str, Any]) -> tuple[MaskingEngine, MaskingEngine]:
    return (
        MaskingEngine(profile, hmac_key=KEY, custom_detectors=custom, implementation="native"),
        MaskingEngine(profile, hmac_key=KEY, custom_detectors=custom, implementation="reference"),
    )


def _assert_same(profile: MaskingProfile, custom: dict[str, Any], batch: list[bytes | None]) -> None:
    native, reference = _engines(profile, custom)
    got, want = native.mask_values(batch), reference.mask_values(batch)
    assert got == want
    assert native.scan_counts(batch) == reference.scan_counts(batch) == want[1]
    for before, after in zip(batch, want[0], strict=True):
        if before is not None and after != before:
            try:
                json.loads(before)
            except ValueError:
                continue
            if before.lstrip()[:1] in (b"{", b"["):
                json.loads(after or b"")  # masked JSON stays JSON


@SETTINGS
@given(profiles(), batches)
def test_native_equals_reference(
    profile: tuple[MaskingProfile, dict[str, Any]], batch: list[bytes | None]
) -> None:
    _assert_same(*profile, batch)


spaced_texts = st.lists(
    st.one_of(st.sampled_from(PII), st.sampled_from(NEAR_MISSES), texts), min_size=1, max_size=6
).map(" ".join)
pii_records = st.one_of(
    st.dictionaries(
        st.sampled_from(rule_keys), st.one_of(spaced_texts, json_values), min_size=1, max_size=6
    ).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(rule_keys), spaced_texts, min_size=1).map(
        lambda d: json.dumps({"items": [d, d], **d}, ensure_ascii=False).encode()
    ),
    spaced_texts.map(str.encode),
)


@SETTINGS
@given(profiles(), st.lists(pii_records, min_size=1, max_size=6))
def test_native_equals_reference_on_pii_records(
    profile: tuple[MaskingProfile, dict[str, Any]], batch: list[bytes | None]
) -> None:
    _assert_same(*profile, batch)


@SETTINGS
@given(st.lists(st.sampled_from(PII + NEAR_MISSES + GLUE), max_size=40).map("".join))
def test_native_equals_reference_on_dense_overlapping_text(text: str) -> None:
    profile = MaskingProfile(detectors=ALL_DETECTORS)
    value = text.encode()
    _assert_same(
        profile,
        {},
        [value, json.dumps({"v": text}).encode(), json.dumps([text], ensure_ascii=False).encode()],
    )


@settings(max_examples=30 if DEEP else 4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(PII + NEAR_MISSES + ["0", "a", "é", "\\", "1.", "::", "-----BEGIN PRIVATE KEY-----"]),
    st.sampled_from(GLUE),
    st.booleans(),
)
def test_native_equals_reference_on_huge_values(fragment: str, glue: str, as_json: bool) -> None:
    piece = fragment + glue
    text = piece * (1024 * 1024 // max(1, len(piece.encode())))
    value = json.dumps({"big": text, "tail": "bob@example.com"}).encode() if as_json else text.encode()
    _assert_same(MaskingProfile(detectors=ALL_DETECTORS), {}, [value, b"4111111111111111", None])
