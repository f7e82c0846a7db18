"""The built-in detectors: ids, priorities, Hyperscan trigger patterns and the tables validators use.

This module is the single source of truth shared by the native scanner (`_native/scanner.pyx`, which
receives the pattern table when an engine is built) and the pure-Python reference
(`gateway.masking.reference`). What a detector *finds* is defined in `gateway.masking.reference`; the
patterns here are only triggers: a Hyperscan match tells an extractor where to look, and the extractor
decides the exact span and validates it. A trigger kind (`Kind`) names the extractor.

Rules kept here:
- detector ids are stable (config, audit events and docs use them);
- `PRIORITY` orders detectors for ties (same start, same length) in the overlap rule;
- every built-in pattern is matched *without* start-of-match tracking, and no pattern that yields
  findings can match a NUL byte, which is what lets the native scanner scan a whole batch joined with NUL
  separators and trust the per-record matches of plain-text records (TRIGGER patterns may cross records:
  they only make the scanner look closer at a record, never decide a finding);
- the native engine compiles only the literal-anchored patterns into Hyperscan; the character-class ones
  (kinds CARD_RUN, CARD_GROUP, SSN, PHONE_NANP, PHONE_TRUNK, IPV4, IBAN_*, and the full-form IPV6
  pattern) are reported by a C structure pass that must agree with Hyperscan on these expressions
  (tests/masking/test_native_tables.py compares them on generated text);
- the numeric values of `Kind`, `Flag` and the tables below are mirrored in `_native/validators.h`;
  tests/masking/test_native_tables.py checks that both sides agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final


class Kind(IntEnum):
    """Which extractor turns a trigger match into candidate findings (mirrored in validators.h)."""

    CARD_RUN = 1  # a run of 13+ digits; the candidate is the maximal digit run
    CARD_GROUP = 2  # fixed-width grouped card shapes (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4)
    SSN = 3  # ddd-dd-dddd / ddd dd dddd
    IBAN_CONTIG = 4
    IBAN_GROUPED = 5
    EMAIL = 6  # trigger "x@y"; the extractor grows the local part and domain around the '@'
    PHONE_INTL = 7  # '+' and a country code
    PHONE_NANP = 8  # fixed-width North American shapes
    PHONE_TRUNK = 9  # national forms with a leading 0 trunk prefix
    IPV4 = 10
    IPV6 = 11
    AWS = 12
    PEM = 13
    JWT = 14
    SECRET_PREFIX = 15  # well-known token prefixes (ghp_, sk_live_, xoxb-, ...)
    SECRET_ASSIGN = 16  # keyword [:=] value in text
    CUSTOM_REGEX = 17  # user regex, start of match tracked by Hyperscan
    CUSTOM_DICT = 18  # user literal, fixed width
    TRIGGER = 19  # no finding of its own: tells the native fast path that a record needs a closer look


# `param` of TRIGGER patterns: what the trigger announces (mirrored in validators.h).
TRIGGER_FIELD_KEY: Final = 0  # a field rule's member name
TRIGGER_SECRET_KEY: Final = 1  # a member name that names a secret (generic_secret member rule)
TRIGGER_BACKSLASH: Final = 2  # an escape: decoded text may differ from the bytes


class Flag:
    """Hyperscan compile flags used here (values from hs_compile.h)."""

    CASELESS: Final = 1
    SOM_LEFTMOST: Final = 256


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One Hyperscan expression of a compiled profile; its id is its index in the profile's table."""

    expression: bytes
    flags: int
    kind: Kind
    width: int  # fixed match width for fixed-width kinds, else 0
    detector: int  # index into the profile's detector list, -1 for TRIGGER
    param: int = 0  # CUSTOM_DICT: 1 when the literal must stand as a whole word


# Detector ids in priority order (lower index wins a tie). Custom detectors follow, sorted by name.
PRIORITY: Final[tuple[str, ...]] = (
    "private_key",
    "jwt",
    "aws_access_key",
    "generic_secret",
    "credit_card",
    "iban",
    "us_ssn",
    "email",
    "phone",
    "ip_address",
)
BUILTIN_DETECTORS: Final[frozenset[str]] = frozenset(PRIORITY)

# Detectors whose findings are hashed after removing spaces and dashes, so "4111 1111 1111 1111" and
# "4111111111111111" produce the same token (masked values still join).
NORMALISED_FOR_HASH: Final[frozenset[str]] = frozenset({"credit_card", "us_ssn", "iban"})

# --- generic_secret -------------------------------------------------------------------------------------
ENTROPY_THRESHOLD: Final = 3.0  # bits per byte (Shannon), for every generic_secret form
MIN_ASSIGNED_SECRET_LEN: Final = 8  # keyword=value in text, and JSON members whose key names a secret
MIN_PREFIXED_BODY_LEN: Final = 16  # body after a known prefix
# Lower-case substrings that make a key name a secret's name (the expansion of KEYWORD_REGEX).
SECRET_KEYWORDS: Final[tuple[bytes, ...]] = (
    b"apikey",
    b"api_key",
    b"api-key",
    b"secret",
    b"token",
    b"password",
    b"passwd",
    b"pwd",
    b"credential",
    b"accesskey",
    b"access_key",
    b"access-key",
    b"privatekey",
    b"private_key",
    b"private-key",
)
KEYWORD_REGEX: Final = (
    rb"(?:api[_\-]?key|secret|token|passw(?:or)?d|pwd|credential|access[_\-]?key|private[_\-]?key)"
)
SECRET_VALUE_CHARS: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./+=~"
)
SECRET_PREFIXES: Final[tuple[bytes, ...]] = (
    b"sk_live_",
    b"sk_test_",
    b"rk_live_",
    b"rk_test_",
    b"github_pat_",
    b"ghp_",
    b"gho_",
    b"ghu_",
    b"ghs_",
    b"ghr_",
    b"glpat-",
    b"xoxb-",
    b"xoxp-",
    b"xoxa-",
    b"xoxr-",
    b"xoxs-",
    b"xapp-",
    b"AIza",
    b"npm_",
    b"pypi-",
    b"hf_",
    b"sk-",
)

# --- us_ssn ---------------------------------------------------------------------------------------------
# Numbers published as examples (wallet inserts, advertising) that were never valid SSNs.
SSN_SAMPLE_NUMBERS: Final[frozenset[bytes]] = frozenset({b"078051120", b"219099999", b"457555462"})

# --- iban -----------------------------------------------------------------------------------------------
IBAN_LENGTHS: Final[dict[bytes, int]] = {
    b"AD": 24, b"AE": 23, b"AL": 28, b"AT": 20, b"AZ": 28, b"BA": 20, b"BE": 16, b"BG": 22, b"BH": 22,
    b"BI": 27, b"BR": 29, b"BY": 28, b"CH": 21, b"CR": 22, b"CY": 28, b"CZ": 24, b"DE": 22, b"DJ": 27,
    b"DK": 18, b"DO": 28, b"EE": 20, b"EG": 29, b"ES": 24, b"FI": 18, b"FK": 18, b"FO": 18, b"FR": 27,
    b"GB": 22, b"GE": 22, b"GI": 23, b"GL": 18, b"GR": 27, b"GT": 28, b"HR": 21, b"HU": 28, b"IE": 22,
    b"IL": 23, b"IQ": 23, b"IS": 26, b"IT": 27, b"JO": 30, b"KW": 30, b"KZ": 20, b"LB": 28, b"LC": 32,
    b"LI": 21, b"LT": 20, b"LU": 20, b"LV": 21, b"LY": 25, b"MC": 27, b"MD": 24, b"ME": 22, b"MK": 19,
    b"MN": 20, b"MR": 27, b"MT": 31, b"MU": 30, b"NI": 28, b"NL": 18, b"NO": 15, b"OM": 23, b"PK": 24,
    b"PL": 28, b"PS": 29, b"PT": 25, b"QA": 29, b"RO": 24, b"RS": 22, b"RU": 33, b"SA": 24, b"SC": 31,
    b"SD": 18, b"SE": 24, b"SI": 19, b"SK": 24, b"SM": 27, b"SO": 23, b"ST": 25, b"SV": 28, b"TL": 23,
    b"TN": 24, b"TR": 26, b"UA": 29, b"VA": 22, b"VG": 24, b"XK": 20, b"YE": 30,
}  # fmt: skip


# Fixed-width shapes, written in the notation the native structure pass uses (validators.h mirrors these):
# d = [0-9], ? = [ -], U = [A-Z], A = [A-Z0-9], anything else is itself. A pattern's `param` is the index
# of its shape in its kind's tuple.
CARD_SHAPES: Final = (
    "dddd?dddd?dddd?dddd",
    "dddd?dddd?dddd?dddd?ddd",
    "dddd?dddddd?ddddd",
    "dddd?dddddd?dddd",
)
SSN_SHAPES: Final = ("ddd-dd-dddd", "ddd dd dddd")
NANP_SHAPES: Final = (
    "ddd-ddd-dddd",
    "ddd.ddd.dddd",
    "ddd ddd dddd",
    "(ddd)ddd-dddd",
    "(ddd) ddd-dddd",
    "1-ddd-ddd-dddd",
)
IBAN_SHAPES: Final = ("UUddAAAAAAAAAAA", "UUdd AAAA AAAA A")
_SHAPE_CLASSES: Final = {"d": rb"[0-9]", "?": rb"[ \-]", "U": rb"[A-Z]", "A": rb"[A-Z0-9]"}


def shape_regex(shape: str) -> bytes:
    """The Hyperscan expression of a fixed-width shape (runs of one class become counted repeats)."""
    out, i = [], 0
    while i < len(shape):
        j = i
        while j < len(shape) and shape[j] == shape[i]:
            j += 1
        cls = _SHAPE_CLASSES.get(shape[i])
        if cls is None:
            out.append(re_escape(shape[i]) * (j - i))
        else:
            out.append(cls + (b"{%d}" % (j - i) if j - i > 1 else b""))
        i = j
    return b"".join(out)


def re_escape(ch: str) -> bytes:
    return ch.encode() if ch.isalnum() or ch == " " else b"\\" + ch.encode()


def _builtin_patterns() -> dict[str, list[tuple[bytes, int, Kind, int, int]]]:
    """(expression, flags, kind, width, param) per built-in detector."""
    prefixes = b"|".join(p.replace(b"-", rb"\-") for p in SECRET_PREFIXES)
    hexg = rb"[0-9A-Fa-f]{1,4}"

    def shapes(kind: Kind, table: tuple[str, ...]) -> list[tuple[bytes, int, Kind, int, int]]:
        return [(shape_regex(shape), 0, kind, len(shape), i) for i, shape in enumerate(table)]

    return {
        "credit_card": [(rb"[0-9]{13,}", 0, Kind.CARD_RUN, 0, 0), *shapes(Kind.CARD_GROUP, CARD_SHAPES)],
        "us_ssn": shapes(Kind.SSN, SSN_SHAPES),
        "iban": [
            (shape_regex(IBAN_SHAPES[0]), 0, Kind.IBAN_CONTIG, 15, 0),
            (shape_regex(IBAN_SHAPES[1]), 0, Kind.IBAN_GROUPED, 16, 1),
        ],
        "email": [(rb"[A-Za-z0-9._%+_\-]@[A-Za-z0-9]", 0, Kind.EMAIL, 3, 0)],
        "phone": [
            (rb"\+[1-9][0-9 ().\-]{5}", 0, Kind.PHONE_INTL, 7, 0),
            *shapes(Kind.PHONE_NANP, NANP_SHAPES),
            (rb"0[1-9][0-9]{0,3}[ .\-][0-9]{2}", 0, Kind.PHONE_TRUNK, 0, 0),
        ],
        "ip_address": [
            (rb"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]", 0, Kind.IPV4, 0, 0),
            (rb"::", 0, Kind.IPV6, 0, 0),
            (rb"(?:" + hexg + rb":){6}", 0, Kind.IPV6, 0, 1),
        ],
        "aws_access_key": [(rb"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}", 0, Kind.AWS, 20, 0)],
        "private_key": [(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----", 0, Kind.PEM, 0, 0)],
        "jwt": [(rb"eyJ[A-Za-z0-9_\-]*\.", 0, Kind.JWT, 0, 0)],
        "generic_secret": [
            (rb"(?:" + prefixes + rb")[A-Za-z0-9_\-]{16}", 0, Kind.SECRET_PREFIX, 0, 0),
            (
                KEYWORD_REGEX + rb"[A-Za-z0-9_\-]*['\"]?[ \t]*[:=][ \t]*['\"]?[A-Za-z0-9_\-./+=~]",
                Flag.CASELESS,
                Kind.SECRET_ASSIGN,
                0,
                0,
            ),
            # A JSON key naming a secret: the record needs a closer look (see the member rule).
            (KEYWORD_REGEX + rb'[^"\\]*"[ \t\r\n]*:', Flag.CASELESS, Kind.TRIGGER, 0, TRIGGER_SECRET_KEY),
        ],
    }


BUILTIN_PATTERNS: Final[dict[str, list[tuple[bytes, int, Kind, int, int]]]] = _builtin_patterns()

# Any backslash: a JSON record with escapes must have its escaped strings decoded before they are scanned.
BACKSLASH_TRIGGER: Final = rb"\\"
