"""The C side's constants, tables and primitives agree with the Python specification."""

from __future__ import annotations

import hashlib
import hmac
import re

import hyperscan
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.masking import detectors
from gateway.masking.detectors import Kind
from gateway.masking.profile import OpCode
from gateway.masking.reference import MAX_DEPTH, shannon_bits
from tests.masking.helpers import native_available

if not native_available():
    pytest.skip("native masking extension not built (reference explicitly allowed)", allow_module_level=True)

from gateway.masking import _scanner  # noqa: E402

TABLES = _scanner.native_tables()


def test_kind_and_operator_numbers_match() -> None:
    assert TABLES["kinds"] == {kind.name: int(kind) for kind in Kind}
    assert TABLES["ops"] == {op.name: int(op) for op in OpCode}


def test_tables_match() -> None:
    assert TABLES["keywords"] == detectors.SECRET_KEYWORDS
    assert TABLES["prefixes"] == detectors.SECRET_PREFIXES
    assert TABLES["ssn_samples"] == detectors.SSN_SAMPLE_NUMBERS
    assert TABLES["iban_lengths"] == detectors.IBAN_LENGTHS
    assert TABLES["entropy_threshold"] == detectors.ENTROPY_THRESHOLD
    assert TABLES["min_assigned_secret_len"] == detectors.MIN_ASSIGNED_SECRET_LEN
    assert TABLES["min_prefixed_body_len"] == detectors.MIN_PREFIXED_BODY_LEN
    assert TABLES["max_json_depth"] == MAX_DEPTH
    assert TABLES["shapes"] == {
        "card": detectors.CARD_SHAPES,
        "ssn": detectors.SSN_SHAPES,
        "nanp": detectors.NANP_SHAPES,
        "iban": detectors.IBAN_SHAPES,
    }


def test_keyword_list_is_the_expansion_of_the_keyword_regex() -> None:
    pattern = re.compile(detectors.KEYWORD_REGEX)
    assert all(pattern.fullmatch(k) for k in detectors.SECRET_KEYWORDS)
    # Every word the regex accepts is in the list: enumerate its finite language.
    words = {b"api" + sep + b"key" for sep in (b"", b"_", b"-")} | {
        b"secret",
        b"token",
        b"password",
        b"passwd",
    }
    words |= {b"pwd", b"credential"} | {
        p + sep + b"key" for p in (b"access", b"private") for sep in (b"", b"_", b"-")
    }
    assert words == set(detectors.SECRET_KEYWORDS)


def test_trigger_ids_match() -> None:
    assert TABLES["triggers"] == {
        "FIELD_KEY": detectors.TRIGGER_FIELD_KEY,
        "SECRET_KEY": detectors.TRIGGER_SECRET_KEY,
        "BACKSLASH": detectors.TRIGGER_BACKSLASH,
    }


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"", b""),
        (b"k", b"message"),
        (b"x" * 64, b"a" * 55),
        (b"y" * 65, b"b" * 56),
        (b"z" * 200, b"c" * 1000),
    ],
)
def test_hmac_sha256_matches_python(key: bytes, message: bytes) -> None:
    assert _scanner.native_hmac_hex(key, message) == hmac.new(key, message, hashlib.sha256).hexdigest()


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_sha256_matches_python_generated(key: bytes, message: bytes) -> None:
    assert _scanner.native_hmac_hex(key, message) == hmac.new(key, message, hashlib.sha256).hexdigest()


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_entropy_is_the_same_double(data: bytes) -> None:
    assert _scanner.native_shannon_bits(data) == shannon_bits(data)


def test_shape_notation_expands_to_the_detector_patterns() -> None:
    expected = {(p[2], p[4]): p[0] for patterns in detectors.BUILTIN_PATTERNS.values() for p in patterns}
    for kind, table in (
        (Kind.CARD_GROUP, detectors.CARD_SHAPES),
        (Kind.SSN, detectors.SSN_SHAPES),
        (Kind.PHONE_NANP, detectors.NANP_SHAPES),
    ):
        for i, shape in enumerate(table):
            assert expected[(kind, i)] == detectors.shape_regex(shape)
    assert expected[(Kind.IBAN_CONTIG, 0)] == detectors.shape_regex(detectors.IBAN_SHAPES[0])
    assert expected[(Kind.IBAN_GROUPED, 1)] == detectors.shape_regex(detectors.IBAN_SHAPES[1])


# ------------------------------------------------------------------------------------------- structure pass
# The native database leaves out the character-class trigger patterns and a C pass reports their matches
# instead; in exhaustive mode it must report exactly what Hyperscan reports for those patterns.

# Long enough to cross the 64-byte blocks the pass classifies at a time.
_digit_shape_text = st.one_of(
    st.text(alphabet="0123456789 ().-+:ABCDEFabcfxZ", max_size=200),
    st.text(alphabet="0123456789 .-", min_size=60, max_size=300),
).map(str.encode)
_PROFILE_PATTERNS = None


def _structure_engine() -> tuple[object, list[detectors.PatternSpec], object]:
    global _PROFILE_PATTERNS
    if _PROFILE_PATTERNS is None:
        from gateway.masking import MaskingProfile, compile_profile

        compiled = compile_profile(
            MaskingProfile(detectors=["credit_card", "us_ssn", "iban", "phone", "ip_address"])
        )
        engine = _scanner.NativeMaskingEngine(compiled, None)
        ids = engine.emulated_pattern_ids()
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=[compiled.patterns[i].expression for i in ids],
            ids=ids,
            elements=len(ids),
            flags=[compiled.patterns[i].flags for i in ids],
        )
        _PROFILE_PATTERNS = (engine, [compiled.patterns[i] for i in ids], db)
    return _PROFILE_PATTERNS  # type: ignore[return-value]


def _hyperscan_ends(db: object, text: bytes) -> list[tuple[int, int]]:
    ends: list[tuple[int, int]] = []
    if text:
        db.scan(text, match_event_handler=lambda pid, frm, to, flags, ctx: ends.append((pid, to)))  # type: ignore[attr-defined]
    return sorted(ends)


def test_structure_pass_stands_in_for_the_character_class_patterns() -> None:
    engine, specs, _ = _structure_engine()
    kinds = {spec.kind for spec in specs}
    assert kinds == {
        Kind.CARD_RUN, Kind.CARD_GROUP, Kind.SSN, Kind.PHONE_NANP, Kind.PHONE_TRUNK, Kind.IPV4,
        Kind.IBAN_CONTIG, Kind.IBAN_GROUPED, Kind.IPV6,
    }  # fmt: skip
    assert [s.expression for s in specs if s.kind == Kind.IPV6] == [rb"(?:[0-9A-Fa-f]{1,4}:){6}"]


@pytest.mark.parametrize(
    "text",
    [
        b"4111 1111 1111 1111 and 378282246310005 and 123-45-6789 or 123 45 6789",
        b"(415) 555-2671 / (415)555-2671 / 1-800-555-0199 / 415.555.2671 / 020 7946 0958 / 06 12 34 56 78",
        b"10.0.0.1 1.2.3.4.5 255.255.255.255 2001:0db8:85a3:0000:0000:8a2e:0370:7334 a:b:c:d:e:f:",
        b"DE89 3704 0044 0532 0130 00 GB82WEST12345698765432 XXDE89370400440532013000",
        b"12345678901234567890123 0123-4567 0.12 345.67",
    ],
)
def test_structure_pass_equals_hyperscan_on_examples(text: bytes) -> None:
    engine, _, db = _structure_engine()
    assert engine.structure_ends(text) == _hyperscan_ends(db, text)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(_digit_shape_text)
def test_structure_pass_equals_hyperscan_generated(text: bytes) -> None:
    engine, _, db = _structure_engine()
    assert engine.structure_ends(text) == _hyperscan_ends(db, text)  # type: ignore[attr-defined]
