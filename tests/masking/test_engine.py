"""MaskingEngine behaviour, in both implementations: batch contract, operators, field rules, JSON handling,
custom detectors and configuration errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys

import pytest

from gateway.masking import MaskingConfigError, MaskingEngine, MaskingProfile
from tests.masking.helpers import ALL_DETECTORS, BOTH, IMPLS, KEY, engine, mask_one

CARD = "4111 1111 1111 1111"


def token(text: bytes, key: bytes = KEY) -> str:
    return "tok_" + hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


# ------------------------------------------------------------------------------------------- batch contract


@BOTH
def test_batch_keeps_length_nulls_and_unchanged_objects(impl: str) -> None:
    clean = b'{"status": "ok", "n": 3}'
    values = [None, b"", clean, f"card {CARD}".encode(), None, b"plain"]
    out, counts = engine(impl, ["credit_card"]).mask_values(values)
    assert out == [None, b"", clean, b"card [REDACTED:CREDIT_CARD]", None, b"plain"]
    assert out[2] is clean  # nothing to mask: the very same object comes back
    assert counts == {"credit_card": 1}


@BOTH
def test_counts_cover_the_whole_batch_and_match_scan_counts(impl: str) -> None:
    values = [f"{CARD} and bob@example.com".encode(), b'{"email": "eve@example.org"}', f"{CARD}".encode()]
    eng = engine(impl, ["credit_card", "email"])
    out, counts = eng.mask_values(values)
    assert counts == {"credit_card": 2, "email": 2}
    assert eng.scan_counts(values) == counts
    assert out[1] == b'{"email": "[REDACTED:EMAIL]"}'


@BOTH
def test_other_buffer_types_are_accepted(impl: str) -> None:
    out, _ = engine(impl, ["email"]).mask_values([bytearray(b"a@example.com"), memoryview(b"x")])
    assert out[0] == b"[REDACTED:EMAIL]"
    assert bytes(out[1]) == b"x"  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- operators


@BOTH
def test_keep_last(impl: str) -> None:
    out, _ = mask_one(impl, f"card {CARD}".encode(), ["credit_card"], operator={"keep_last": 4})
    assert out == b"card " + b"*" * 15 + b"1111"


@BOTH
def test_keep_last_counts_characters_not_bytes(impl: str) -> None:
    custom = {"name_x": {"regex": "Zoë[a-z]+"}}
    out, _ = mask_one(impl, "to Zoëlle.".encode(), ["name_x"], custom=custom, operator={"keep_last": 2})
    assert out == b"to ****le."


@BOTH
def test_keep_last_masks_short_values_entirely(impl: str) -> None:
    custom = {"code": {"dictionary": ["ab"]}}
    out, _ = mask_one(impl, b"x ab y", ["code"], custom=custom, operator={"keep_last": 4})
    assert out == b"x ** y"


@BOTH
def test_hash_is_keyed_deterministic_and_joins_formats(impl: str) -> None:
    values = [f"a {CARD}".encode(), b"a 4111-1111-1111-1111", b"a 4111111111111111"]
    out, _ = engine(impl, ["credit_card"], operator="hash").mask_values(values)
    expected = f"a {token(b'4111111111111111')}".encode()
    assert out == [expected, expected, expected]
    other, _ = engine(impl, ["credit_card"], operator="hash", key=b"another key").mask_values(values[:1])
    assert other[0] != expected


@BOTH
def test_redact_with_label(impl: str) -> None:
    out, _ = mask_one(impl, b"mail bob@example.com", ["email"], operator={"redact": "PII"})
    assert out == b"mail [REDACTED:PII]"


@BOTH
@pytest.mark.parametrize("operator", ["null", "drop"])
def test_null_and_drop_remove_findings_from_text(impl: str, operator: str) -> None:
    out, counts = mask_one(impl, b"mail bob@example.com now", ["email"], operator=operator)
    assert (out, counts) == (b"mail  now", {"email": 1})


@BOTH
def test_null_in_json_nulls_the_value(impl: str) -> None:
    value = b'{"a": "mail bob@example.com", "b": [1, "x@example.com"], "c": 7}'
    out, _ = mask_one(impl, value, ["email"], operator="null")
    assert out == b'{"a": null, "b": [1, null], "c": 7}'


@BOTH
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"a": "x@example.com", "b": 1}', b'{"b": 1}'),
        (b'{"b": 1, "a": "x@example.com"}', b'{"b": 1}'),
        (b'{"a": "x@example.com"}', b"{}"),
        (b'{ "a" : "x@example.com" , "b" : 2 , "c" : "y@example.com" }', b'{ "b" : 2 }'),
        (b'["x@example.com", 1, "y@example.com", 2, "z@example.com"]', b"[1, 2]"),
        (b'{"k": ["x@example.com", "y@example.com"], "m": {"n": "z@example.com"}}', b'{"k": [], "m": {}}'),
    ],
)
def test_drop_removes_members_and_elements_and_keeps_valid_json(
    impl: str, value: bytes, expected: bytes
) -> None:
    out, _ = mask_one(impl, value, ["email"], operator="drop")
    assert out == expected
    json.loads(out or b"")


# ------------------------------------------------------------------------------------------- JSON handling


@BOTH
def test_numbers_with_findings_become_strings(impl: str) -> None:
    out, _ = mask_one(impl, b'{"card": 4111111111111111, "n": 17}', ["credit_card"])
    assert out == b'{"card": "[REDACTED:CREDIT_CARD]", "n": 17}'


@BOTH
def test_findings_across_json_escapes_are_seen_decoded(impl: str) -> None:
    value = b'{"c": "4111\\u00201111 1111 1111", "e": "bob\\u0040example.com", "k": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"}'
    out, counts = mask_one(impl, value, ["credit_card", "email", "private_key"])
    assert json.loads(out or b"") == {
        "c": "[REDACTED:CREDIT_CARD]",
        "e": "[REDACTED:EMAIL]",
        "k": "[REDACTED:PRIVATE_KEY]",
    }
    assert counts == {"credit_card": 1, "email": 1, "private_key": 1}


@BOTH
def test_masked_strings_are_reescaped_and_untouched_bytes_kept(impl: str) -> None:
    value = b'{"note":"line\\none \\"q\\" bob@example.com \\u00e9", "raw":"\\u0041"}'
    out, _ = mask_one(impl, value, ["email"])
    assert out == '{"note":"line\\none \\"q\\" [REDACTED:EMAIL] \u00e9", "raw":"\\u0041"}'.encode()


@BOTH
def test_keys_are_not_scanned(impl: str) -> None:
    value = b'{"bob@example.com": 1}'
    out, counts = mask_one(impl, value, ["email"])
    assert (out, counts) == (value, {})


@BOTH
@pytest.mark.parametrize(
    "value",
    [
        b'{"a": "bob@example.com"',  # truncated
        b'"bob@example.com"',  # a bare JSON string is text
        b'{"a": "bob@example.com"} trailing',
        b'{"a": "\xff bob@example.com"}',  # invalid UTF-8: text
    ],
)
def test_not_json_is_masked_as_text(impl: str, value: bytes) -> None:
    out, counts = mask_one(impl, value, ["email"])
    assert out == value.replace(b"bob@example.com", b"[REDACTED:EMAIL]")
    assert counts == {"email": 1}


@BOTH
def test_deep_nesting_beyond_the_limit_is_text(impl: str) -> None:
    deep = b"[" * 300 + b'"bob@example.com"' + b"]" * 300
    out, _ = mask_one(impl, deep, ["email"])
    assert out == b"[" * 300 + b'"[REDACTED:EMAIL]"' + b"]" * 300


# ------------------------------------------------------------------------------------------- field rules

DOC = {
    "customer": {"ssn": "123-45-6789", "name": "Bob", "SSN": 42, "nested": {"ssn": None}},
    "items": [{"card": "4111111111111111", "qty": 1}, {"card": 5, "qty": 2}],
    "card_number": {"pan": "x"},
    "password": "hunter2",
}


@BOTH
def test_field_rules_by_path_and_name(impl: str) -> None:
    fields = {
        "$.customer.ssn": "redact",
        "$.items[*].card": {"keep_last": 4},
        "card_number": "hash",
        "password": "drop",
        "ssn": "null",
    }
    out, counts = mask_one(impl, json.dumps(DOC).encode(), [], fields=fields)
    assert json.loads(out or b"") == {
        "customer": {"ssn": None, "name": "Bob", "SSN": None, "nested": {"ssn": None}},
        "items": [{"card": "************1111", "qty": 1}, {"card": "*", "qty": 2}],
        "card_number": token(b'{"pan": "x"}'),
    }
    # The stricter rule wins on $.customer.ssn (null beats redact); nulls stay null and are not counted.
    assert counts == {"field:ssn": 2, "field:$.items[*].card": 2, "field:card_number": 1, "field:password": 1}


@BOTH
def test_field_rule_values_are_not_scanned_again(impl: str) -> None:
    value = b'{"contact": "bob@example.com", "other": "eve@example.com"}'
    out, counts = mask_one(impl, value, ["email"], fields={"contact": "redact"})
    assert out == b'{"contact": "[REDACTED]", "other": "[REDACTED:EMAIL]"}'
    assert counts == {"field:contact": 1, "email": 1}


@BOTH
def test_path_rules_with_indexes_and_escaped_keys(impl: str) -> None:
    value = b'{"a b": [{"x": 1}, {"x": 2}], "\\u0073sn": "123"}'
    out, _ = mask_one(impl, value, [], fields={"$['a b'][1].x": "redact", "$.ssn": {"redact": "GONE"}})
    assert out == b'{"a b": [{"x": 1}, {"x": "[REDACTED]"}], "\\u0073sn": "[REDACTED:GONE]"}'


# ------------------------------------------------------------------------------------------- overlaps


@BOTH
def test_leftmost_then_longest_then_priority(impl: str) -> None:
    custom = {"ordref": {"regex": "ORD-[0-9]+"}, "digits": {"regex": "[0-9]{6,}"}}
    out, counts = mask_one(
        impl, b"ORD-4111111111111111 x", ["credit_card", "ordref", "digits"], custom=custom
    )
    # ORD-... starts first and wins over the card inside it.
    assert (out, counts) == (b"[REDACTED:ORDREF] x", {"ordref": 1})
    out, counts = mask_one(impl, b"x 4111111111111111 x", ["credit_card", "digits"], custom=custom)
    # same span: credit_card has priority over a custom detector
    assert (out, counts) == (b"x [REDACTED:CREDIT_CARD] x", {"credit_card": 1})


# ------------------------------------------------------------------------------------------- custom detectors


@BOTH
def test_custom_regex_and_dictionary(impl: str) -> None:
    custom = {
        "employee_id": {"regex": r"EMP-\d{6}"},
        "codename": {"dictionary": ["bluebird", "Night Jar"], "ignore_case": True, "whole_word": True},
    }
    value = b"EMP-123456 met BLUEBIRD and night jar, not bluebirds"
    out, counts = mask_one(impl, value, ["employee_id", "codename"], custom=custom)
    assert out == b"[REDACTED:EMPLOYEE_ID] met [REDACTED:CODENAME] and [REDACTED:CODENAME], not bluebirds"
    assert counts == {"employee_id": 1, "codename": 2}


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"bad": {"regex": r"(a)\1"}}, "RE2 does not support"),
        ({"bad": {"regex": r"(?<=a)b"}}, "RE2"),
        ({"bad": {"regex": "^abc"}}, "anchors"),
        ({"bad": {"regex": "abc$"}}, "anchors"),
        ({"bad": {"regex": "a*"}}, "empty"),
        ({"bad": {"regex": "(unclosed"}}, "RE2"),
        ({"bad": {"regex": "x", "dictionary": ["y"]}}, "exactly one"),
        ({"email": {"regex": "x"}}, "built-in"),
        ({"Bad-Name": {"regex": "x"}}, "name"),
        ({"bad": {"dictionary": []}}, "entries"),
        ({"bad": {"regex": "x", "nope": 1}}, "nope"),
    ],
)
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_custom_detectors_are_rejected(impl: str, custom: dict[str, object], message: str) -> None:
    name = next(iter(custom))
    with pytest.raises(MaskingConfigError, match=message):
        engine(impl, [name] if name in ("bad",) else [], custom=custom)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (MaskingProfile(detectors=["nope"]), "unknown detector"),
        (MaskingProfile(fields={"$": "redact"}), "name at least one member"),
        (MaskingProfile(fields={"$.a[": "redact"}), "malformed"),
        (MaskingProfile(fields={"a": "scramble"}), "unknown operator"),
        (MaskingProfile(operator={"keep_last": 99}), "keep_last"),
        (MaskingProfile(operator={"redact": "bad\nlabel"}), "label"),
    ],
)
def test_bad_profiles_are_rejected(profile: MaskingProfile, message: str) -> None:
    with pytest.raises(MaskingConfigError, match=message):
        MaskingEngine(profile, hmac_key=KEY)


def test_hash_needs_a_key() -> None:
    with pytest.raises(MaskingConfigError, match="HMAC key"):
        MaskingEngine(MaskingProfile(detectors=["email"], operator="hash"), hmac_key=None)
    with pytest.raises(MaskingConfigError, match="HMAC key"):
        MaskingEngine(MaskingProfile(fields={"a": "hash"}), hmac_key=b"")


# ------------------------------------------------------------------------------------------- processes


def test_environment_switch_selects_the_reference() -> None:
    code = "from gateway.masking import engine; print(engine.IMPLEMENTATION)"
    env = dict(os.environ, STREAMGATE_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"


@pytest.mark.skipif("native" not in IMPLS, reason="native extension not built")
def test_forked_worker_scans_with_its_own_database() -> None:
    eng = engine("native", ALL_DETECTORS)
    values = [f"card {CARD} mail bob@example.com".encode()]
    expected = eng.mask_values(values)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must compile its own database and scratch on first use
        try:
            ok = eng.mask_values(values) == expected
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert eng.mask_values(values) == expected  # the parent's own database is untouched
