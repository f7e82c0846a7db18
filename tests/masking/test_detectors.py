"""Each built-in detector on known-valid and known-invalid values, in both implementations.

A value is embedded in plain text ("id <value> end") so the test sees exactly which span a detector
masks; negatives include the look-alikes a gateway sees all day (order ids, timestamps, dates, versions,
phone-like numbers that fail validation).
"""

from __future__ import annotations

import base64
import json

import pytest

from gateway.masking.reference import card_ok, iban_ok, luhn_ok, ssn_ok
from tests.masking.helpers import BOTH, mask_one


def _masked(impl: str, detector: str, value: str) -> tuple[bytes, int]:
    out, counts = mask_one(impl, f"id {value} end".encode(), [detector])
    assert out is not None
    return out, counts.get(detector, 0)


def _assert_found(impl: str, detector: str, value: str) -> None:
    out, count = _masked(impl, detector, value)
    assert (out, count) == (f"id [REDACTED:{detector.upper()}] end".encode(), 1), value


def _assert_not_found(impl: str, detector: str, value: str) -> None:
    out, count = _masked(impl, detector, value)
    assert (out, count) == (f"id {value} end".encode(), 0), value


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


# ------------------------------------------------------------------------------------------- credit_card

VALID_CARDS = [
    "4111111111111111",
    "4012888888881881",
    "4222222222222",  # 13-digit Visa
    "5555555555554444",
    "5105105105105100",
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "3530111333300000",
    "30569309025904",  # Diners, 14 digits
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "3782 822463 10005",  # Amex 4-6-5
    "3056 930902 5904",  # Diners 4-6-4
    "6011 0009 9013 9424",
]
INVALID_CARDS = [
    "4111111111111112",  # Luhn
    "4111-1111-1111-1112",
    "1700000000000",  # epoch milliseconds
    "1700000000000000",  # epoch microseconds
    "0000000000000000",
    "4444444444444444",  # one repeated digit
    "7992739871300000",  # issuer digit 7
    "411111111111",  # 12 digits
    "41111111111111111111",  # 20 digits
    "4111 1111-1111 1111",  # mixed separators
    "4111  1111 1111 1111",  # double space
    "ORD-20240115-000123",
    "2024-01-15T10:30:00Z",
    "card4111111111111111",  # glued to letters: part of an identifier
    "cad60802763852833edc",  # a digit run inside a hex trace id that happens to pass Luhn
    "4111 1111 1111 1111x",
]


@BOTH
@pytest.mark.parametrize("card", VALID_CARDS)
def test_valid_cards_are_found(impl: str, card: str) -> None:
    _assert_found(impl, "credit_card", card)


@BOTH
@pytest.mark.parametrize("card", [c for c in VALID_CARDS if not c.isdigit()])
def test_grouped_cards_are_found_as_whole_values(impl: str, card: str) -> None:
    # No surrounding spaces: the native structure pass must not rely on extra separators around a card.
    out, counts = mask_one(impl, card.encode(), ["credit_card"])
    assert (out, counts) == (b"[REDACTED:CREDIT_CARD]", {"credit_card": 1})


@BOTH
@pytest.mark.parametrize("card", INVALID_CARDS)
def test_invalid_cards_are_not_found(impl: str, card: str) -> None:
    _assert_not_found(impl, "credit_card", card)


def test_luhn_and_card_rules() -> None:
    assert luhn_ok(b"79927398713") and not luhn_ok(b"79927398710")
    assert card_ok(b"4111111111111111") and not card_ok(b"1111111111111117")


@BOTH
def test_card_touching_other_digits_is_not_a_card(impl: str) -> None:
    _assert_not_found(impl, "credit_card", "94111111111111111")


@BOTH
def test_card_next_to_punctuation_is_a_card(impl: str) -> None:
    out, counts = mask_one(impl, b"pan=4111111111111111;card_4111111111111111", ["credit_card"])
    assert (out, counts) == (b"pan=[REDACTED:CREDIT_CARD];card_[REDACTED:CREDIT_CARD]", {"credit_card": 2})


# ------------------------------------------------------------------------------------------- us_ssn

VALID_SSNS = ["123-45-6789", "536-22-1234", "772-01-0001", "536 22 1234", "001-01-0001"]
INVALID_SSNS = [
    "000-12-3456",  # area 000
    "666-12-3456",  # area 666
    "900-12-3456",  # area 9xx
    "999-99-9999",
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "078-05-1120",  # the Woolworth wallet card
    "219-09-9999",  # Social Security Administration pamphlet
    "457-55-5462",
    "123-45 6789",  # mixed separators
    "123456789",  # no separators: too ambiguous to mask by content
    "1123-45-6789",
    "123-45-67890",
]


@BOTH
@pytest.mark.parametrize("ssn", VALID_SSNS)
def test_valid_ssns_are_found(impl: str, ssn: str) -> None:
    _assert_found(impl, "us_ssn", ssn)


@BOTH
@pytest.mark.parametrize("ssn", INVALID_SSNS)
def test_invalid_ssns_are_not_found(impl: str, ssn: str) -> None:
    _assert_not_found(impl, "us_ssn", ssn)


def test_ssn_rules() -> None:
    assert ssn_ok(b"123456789")
    assert not ssn_ok(b"078051120") and not ssn_ok(b"666121234") and not ssn_ok(b"900121234")


# ------------------------------------------------------------------------------------------- iban

VALID_IBANS = [
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "GB82 WEST 1234 5698 7654 32",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "CH9300762011623852957",
    "NO9386011117947",  # the shortest: 15
    "NO93 8601 1117 947",
]
INVALID_IBANS = [
    "DE89370400440532013001",  # mod-97
    "DE89 3704 0044 0532 0130 01",
    "GB82WEST12345698765433",
    "DE8937040044053201300",  # one short for DE
    "DE89 3704 0044 0532 0130 000",  # one long
    "XX89370400440532013000",  # unknown country
    "DE89 370 4004 4053 2013 000",  # groups not of four
    "de89370400440532013000",
]


@BOTH
@pytest.mark.parametrize("iban", VALID_IBANS)
def test_valid_ibans_are_found(impl: str, iban: str) -> None:
    _assert_found(impl, "iban", iban)


@BOTH
@pytest.mark.parametrize("iban", INVALID_IBANS)
def test_invalid_ibans_are_not_found(impl: str, iban: str) -> None:
    _assert_not_found(impl, "iban", iban)


def test_iban_mod97() -> None:
    assert iban_ok(b"GB82WEST12345698765432") and not iban_ok(b"GB82WEST12345698765431")


# ------------------------------------------------------------------------------------------- email

VALID_EMAILS = ["john.doe@example.com", "a+tag@sub.example.co.uk", "x_y%z@d-1.io", "UPPER@EXAMPLE.ORG"]
INVALID_EMAILS = [
    "john@localhost",
    "john@example.c",
    "john@-example.com",
    "john@example.123",
    "john..doe@example.com",
]


@BOTH
@pytest.mark.parametrize("email", VALID_EMAILS)
def test_valid_emails_are_found(impl: str, email: str) -> None:
    _assert_found(impl, "email", email)


@BOTH
@pytest.mark.parametrize("email", INVALID_EMAILS)
def test_invalid_emails_are_not_found(impl: str, email: str) -> None:
    _assert_not_found(impl, "email", email)


@BOTH
def test_email_at_end_of_sentence(impl: str) -> None:
    out, counts = mask_one(impl, b"write to bob@example.com.", ["email"])
    assert (out, counts) == (b"write to [REDACTED:EMAIL].", {"email": 1})


# ------------------------------------------------------------------------------------------- phone

VALID_PHONES = [
    "+1 415 555 2671",
    "+14155552671",
    "+1 (415) 555-2671",
    "+44 20 7946 0958",
    "+49-30-123456",
    "(415) 555-2671",
    "(415)555-2671",
    "415-555-2671",
    "415.555.2671",
    "415 555 2671",
    "1-800-555-0199",
    "020 7946 0958",
    "06 12 34 56 78",
    "030-12345678",
]
INVALID_PHONES = [
    "123-456-7890",  # area code cannot start with 1
    "415-155-2671",  # nor the exchange
    "911-555-1234",  # N11 service code
    "+1 123 456 7890",
    "+12345",
    "555-1234",
    "2024-01-15",
    "10:30:00",
    "1.4.2",
    "000-000-0000",
    "415-555-2671-99",
    "00 12 34 56 78",
]


@BOTH
@pytest.mark.parametrize("phone", VALID_PHONES)
def test_valid_phones_are_found(impl: str, phone: str) -> None:
    _assert_found(impl, "phone", phone)


@BOTH
@pytest.mark.parametrize("phone", INVALID_PHONES)
def test_phone_like_numbers_failing_validation_are_not_found(impl: str, phone: str) -> None:
    _assert_not_found(impl, "phone", phone)


# ------------------------------------------------------------------------------------------- ip_address

VALID_IPS = [
    "10.0.0.1",
    "192.168.1.254",
    "255.255.255.255",
    "::1",
    "fe80::1",
    "2001:db8::8a2e:370:7334",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    "::ffff:192.0.2.1",
]
INVALID_IPS = ["256.1.1.1", "1.2.3", "1.2.3.4.5", "01.02.03.04", "10:30:00", "std::string", "1.2.3.4a", "::"]


@BOTH
@pytest.mark.parametrize("ip", VALID_IPS)
def test_valid_ips_are_found(impl: str, ip: str) -> None:
    _assert_found(impl, "ip_address", ip)


@BOTH
@pytest.mark.parametrize("ip", INVALID_IPS)
def test_invalid_ips_are_not_found(impl: str, ip: str) -> None:
    _assert_not_found(impl, "ip_address", ip)


# ------------------------------------------------------------------------------------------- aws_access_key


@BOTH
@pytest.mark.parametrize("key", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"])
def test_aws_access_key_ids_are_found(impl: str, key: str) -> None:
    _assert_found(impl, "aws_access_key", key)


@BOTH
@pytest.mark.parametrize(
    "key", ["AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPLE1", "AKIAIOSFODNN8EXAMPLE", "akiaiosfodnn7example"]
)
def test_aws_look_alikes_are_not_found(impl: str, key: str) -> None:
    _assert_not_found(impl, "aws_access_key", key)


# ------------------------------------------------------------------------------------------- private_key

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"


@BOTH
def test_pem_private_key_block_is_masked_to_its_end_line(impl: str) -> None:
    out, counts = mask_one(impl, f"key:\n{PEM}\ntrailer".encode(), ["private_key"])
    assert (out, counts) == (b"key:\n[REDACTED:PRIVATE_KEY]\ntrailer", {"private_key": 1})


@BOTH
def test_pem_without_end_line_is_masked_to_the_end_of_the_value(impl: str) -> None:
    out, counts = mask_one(
        impl, b"x -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", ["private_key"]
    )
    assert (out, counts) == (b"x [REDACTED:PRIVATE_KEY]", {"private_key": 1})


@BOTH
@pytest.mark.parametrize("label", ["PUBLIC KEY", "CERTIFICATE", "PGP PUBLIC KEY BLOCK"])
def test_public_pem_blocks_are_not_found(impl: str, label: str) -> None:
    value = f"-----BEGIN {label}-----\nMIIB\n-----END {label}-----"
    _assert_not_found(impl, "private_key", value)


# ------------------------------------------------------------------------------------------- jwt

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@BOTH
@pytest.mark.parametrize(
    "token",
    [
        JWT,
        _b64url({"alg": "none"}) + "." + _b64url({"sub": "x"}) + ".",  # unsigned: empty signature
        ".".join([_b64url({"alg": "RSA-OAEP", "enc": "A256GCM"}), "a1", "b2", "c3", "d4"]),  # JWE
    ],
)
def test_jwts_are_found(impl: str, token: str) -> None:
    _assert_found(impl, "jwt", token)


@BOTH
@pytest.mark.parametrize(
    "token",
    [
        _b64url({"foo": "bar"}) + "." + _b64url({"sub": "x"}) + ".sig",  # header without alg
        _b64url({"alg": "HS256"}) + "." + _b64url({"sub": "x"}),  # two segments
        "x" + JWT,
    ],
)
def test_jwt_look_alikes_are_not_found(impl: str, token: str) -> None:
    _assert_not_found(impl, "jwt", token)


@BOTH
def test_jwt_at_end_of_sentence_keeps_the_full_stop(impl: str) -> None:
    out, _ = mask_one(impl, f"Bearer {JWT}.".encode(), ["jwt"])
    assert out == b"Bearer [REDACTED:JWT]."


# ------------------------------------------------------------------------------------------- generic_secret

GITHUB_TOKEN = "ghp_" + "R2d2C3p0Lk9xQ8wZ1m4N7b5V6c3X0z9Y8a7B"


@BOTH
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"use {GITHUB_TOKEN} now", b"use [REDACTED:GENERIC_SECRET] now"),
        ("api_key=q8Fz2LmN4pRt end", b"api_key=[REDACTED:GENERIC_SECRET] end"),
        ('"client_secret": "aZ3kQ9vLm2Xp"', b'"client_secret": "[REDACTED:GENERIC_SECRET]"'),
        ("PASSWORD = 'Tr0ub4dorXk3' x", b"PASSWORD = '[REDACTED:GENERIC_SECRET]' x"),
    ],
)
def test_generic_secrets_are_found(impl: str, text: str, expected: bytes) -> None:
    out, counts = mask_one(impl, text.encode(), ["generic_secret"])
    assert (out, counts) == (expected, {"generic_secret": 1})


@BOTH
@pytest.mark.parametrize(
    "text",
    [
        "ghp_" + "a" * 36,  # prefix with a low-entropy body
        "password: hunter2",  # too short
        "api_key=changeme",  # entropy below the threshold
        "token_count = 5",
        "the secret is safe",
        "description: aZ3kQ9vLm2Xp",  # high entropy, but no keyword
    ],
)
def test_generic_secret_look_alikes_are_not_found(impl: str, text: str) -> None:
    out, counts = mask_one(impl, text.encode(), ["generic_secret"])
    assert (out, counts) == (text.encode(), {})


@BOTH
def test_json_member_named_like_a_secret(impl: str) -> None:
    value = json.dumps({"client_secret": "aZ3kQ9vLm2Xp", "description": "aZ3kQ9vLm2Xp", "token": "short"})
    out, counts = mask_one(impl, value.encode(), ["generic_secret"])
    assert json.loads(out or b"") == {
        "client_secret": "[REDACTED:GENERIC_SECRET]",
        "description": "aZ3kQ9vLm2Xp",
        "token": "short",
    }
    assert counts == {"generic_secret": 1}


@BOTH
def test_json_member_whose_secret_name_is_escaped(impl: str) -> None:
    # "\u0074oken" is "token": the raw bytes never spell the keyword, the decoded key does.
    value = b'{"\\u0074oken": "aZ3kQ9vLm2Xp", "x\\u00e9_api_key": "q8Fz2LmN4pRt"}'
    out, counts = mask_one(impl, value, ["generic_secret"])
    assert (
        out
        == b'{"\\u0074oken": "[REDACTED:GENERIC_SECRET]", "x\\u00e9_api_key": "[REDACTED:GENERIC_SECRET]"}'
    )
    assert counts == {"generic_secret": 2}


# ------------------------------------------------------------------------------------------- clean data


@BOTH
def test_typical_clean_event_has_no_findings(impl: str) -> None:
    event = {
        "event_id": "evt-000000000001",
        "ts": 1700000000000,
        "ts_us": 1700000000000123,
        "date": "2024-01-15T10:30:00.123Z",
        "order": {"id": "ORD-20240115-000123", "amount": 4111.11, "qty": 3, "sku": "SKU-4111111"},
        "version": "1.4.2",
        "uuid": "550e8400-e29b-41d4-a716-446655440000",
        "build": 12345678901,
        "note": "shipped in 3 boxes, tracking 1Z999AA10123456784",
    }
    value = json.dumps(event).encode()
    out, counts = mask_one(impl, value, ["credit_card", "us_ssn", "iban", "email", "phone", "ip_address",
                                         "aws_access_key", "private_key", "jwt", "generic_secret"])  # fmt: skip
    assert (out, counts) == (value, {})
