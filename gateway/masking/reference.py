"""Pure-Python masking engine: the specification the native scanner (`_native/scanner.pyx`) must match.

Selected with STREAMGATE_NO_EXTENSIONS=1; the differential tests (tests/masking/test_differential.py)
require byte-identical output and identical counts from both implementations.

What a record is
    A value is JSON when, after optional JSON whitespace, it is one object or array (RFC 8259 grammar,
    strings valid UTF-8, at most MAX_DEPTH nested containers) followed only by whitespace. Anything else
    (including a bare JSON scalar, invalid UTF-8 inside a string, or deeper nesting) is plain text.

Scan units
    Text: the whole value is one unit. JSON: every string *value* (decoded: escapes resolved, an unpaired
    surrogate escape becomes U+FFFD) and every number token is a unit; object keys are not scanned.
    Detectors run on each unit on its own, so a finding never spans two JSON values, and an escaped
    character (`\\u0034111...`) is seen as the character it encodes.

Findings inside a unit
    Hyperscan trigger patterns (gateway.masking.detectors) point extractors at candidate spans; a candidate
    becomes a finding only if its validator accepts it. The detector definitions live in the extractor
    function `_extract`); in short: credit_card = 13-19 digits, contiguous or in 4-4-4-4, 4-4-4-4-3,
    4-6-5, 4-6-4 groups with one consistent space/dash separator, not touching a letter or digit (so hex
    ids and hashes do not qualify), issuer digit 2-6, not one repeated digit, Luhn; us_ssn = ddd-dd-dddd or ddd dd dddd, area not
    000/666/9xx, group not 00, serial not 0000, published sample numbers rejected; iban = country code +
    length table + mod-97, contiguous or in groups of four; email = local@domain with length and label
    rules and an alphabetic TLD; phone = +E.164 (8-15 digits, +1 must be a valid NANP number), NANP
    national shapes, or trunk-prefixed national forms (0..., 10-11 digits in 2+ groups); ip_address =
    dotted quad (no leading zeros, <= 255) or RFC 4291 IPv6 text; aws_access_key = AKIA/ASIA/ABIA/ACCA +
    16 base32 characters; private_key = PEM private key block (to its END line, or to the end of the unit
    when the END line is missing); jwt = three (JWS) or five (JWE) base64url segments whose header
    decodes to a JSON object with "alg"; generic_secret = a well-known token prefix with a high-entropy
    body, `keyword = value` / `keyword: value` in text, or a JSON string member whose key names a secret
    (api_key, token, password, ...), each value needing Shannon entropy >= 3.0 bits/byte.
    Custom regexes find every span Hyperscan reports (leftmost start for each end); custom dictionary
    literals find each occurrence. Custom spans are widened to whole UTF-8 characters.

Overlap rule (both implementations)
    All candidates of a unit, from every detector, are sorted by (start ascending, length descending,
    detector priority ascending) and taken greedily: a candidate is kept when it starts at or after the
    end of the last kept one. So the leftmost finding wins, then the longest, then the detector that comes
    first in gateway.masking.detectors.PRIORITY (custom detectors after the built-ins, by name).

Field rules (JSON only)
    A rule matching a value (by path, or by member name) masks the whole value, whatever its type, and
    nothing inside it is scanned. A JSON null stays null unless the rule drops the member.

Operators
    redact    finding -> `[REDACTED:<DETECTOR_ID>]`; field -> `"[REDACTED]"`; `{redact: L}` uses label L.
    keep_last every character but the last N becomes `*` (characters are UTF-8 sequences; a value of N or
              fewer characters is masked entirely). A field holding an object/array/bool -> `"[REDACTED]"`.
    hash      `tok_` + first 32 hex digits of HMAC-SHA256(key, text); card/SSN/IBAN text is hashed with
              spaces and dashes removed, so differently formatted copies still join.
    null      text: the finding is removed; JSON: the unit (or field) becomes `null`.
    drop      text: the finding is removed; JSON: the member (or array element) is removed.
    A JSON unit with a finding is re-encoded as a JSON string (numbers become strings) with minimal
    escaping; untouched units and all other bytes are kept exactly. Removing elements keeps the
    separator after each kept element except the last kept one, so the output stays valid JSON.

Counts
    One per kept finding, keyed by detector id; one per masked field keyed `field:<rule key>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gateway.masking.detectors import (
    ENTROPY_THRESHOLD,
    IBAN_LENGTHS,
    MIN_ASSIGNED_SECRET_LEN,
    MIN_PREFIXED_BODY_LEN,
    SECRET_KEYWORDS,
    SECRET_PREFIXES,
    SSN_SAMPLE_NUMBERS,
    Flag,
    Kind,
    PatternSpec,
)
from gateway.masking.profile import CompiledProfile, FieldRule, MaskingConfigError, OpCode, Operator

MAX_DEPTH = 256

_DIGITS = frozenset(b"0123456789")
_UPPER_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_WORD = _ALNUM | {ord("_")}
_TOKEN = _WORD | {ord("-")}
_LOCAL = _ALNUM | frozenset(b"._%+-_")
_DOMAIN = _ALNUM | frozenset(b".-")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_IPV4_RUN = _DIGITS | {ord(".")}
_IPV6_RUN = _HEX | frozenset(b":.")
_JWT_RUN = _TOKEN | {ord(".")}
_PEM_LABEL = _UPPER_ALNUM | {ord(" ")}
_PHONE_SEP = frozenset(b" ().-")
_SPACE = frozenset(b" \t\r\n")

_DIGIT_RUN = re.compile(rb"[0-9]*")
_DOMAIN_RUN = re.compile(rb"[A-Za-z0-9.\-]*")
_IPV4_FWD = re.compile(rb"[0-9.]*")
_IPV6_FWD = re.compile(rb"[0-9A-Fa-f:.]*")
_JWT_FWD = re.compile(rb"[A-Za-z0-9_.\-]*")
_TOKEN_FWD = re.compile(rb"[A-Za-z0-9_\-]*")
_VALUE_FWD = re.compile(rb"[A-Za-z0-9_\-./+=~]*")

# ------------------------------------------------------------------------------------------- validators


def luhn_ok(digits: bytes) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ch - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_ok(digits: bytes) -> bool:
    return (
        13 <= len(digits) <= 19
        and digits[0] in b"23456"
        and digits.count(digits[:1]) != len(digits)
        and luhn_ok(digits)
    )


def ssn_ok(digits: bytes) -> bool:
    area = int(digits[:3])
    return (
        area != 0
        and area != 666
        and area < 900
        and digits[3:5] != b"00"
        and digits[5:9] != b"0000"
        and digits not in SSN_SAMPLE_NUMBERS
    )


def iban_ok(chars: bytes) -> bool:
    if IBAN_LENGTHS.get(chars[:2]) != len(chars):
        return False
    rest = 0
    for ch in chars[4:] + chars[:4]:
        if 48 <= ch <= 57:
            rest = (rest * 10 + ch - 48) % 97
        else:
            rest = (rest * 100 + ch - 55) % 97
    return rest == 1


def _email_local_ok(local: bytes) -> bool:
    return 1 <= len(local) <= 64 and not local.endswith(b".") and b".." not in local


def _email_domain_ok(domain: bytes) -> bool:
    if not 1 <= len(domain) <= 253:
        return False
    labels = domain.split(b".")
    if len(labels) < 2:
        return False
    for label in labels:
        if not 1 <= len(label) <= 63 or label[:1] == b"-" or label[-1:] == b"-":
            return False
    tld = labels[-1]
    return 2 <= len(tld) and tld.isalpha()


def ipv4_ok(text: bytes) -> bool:
    parts = text.split(b".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not 1 <= len(part) <= 3 or not part.isdigit():
            return False
        if len(part) > 1 and part[:1] == b"0":
            return False
        if int(part) > 255:
            return False
    return True


def ipv6_ok(text: bytes) -> bool:
    if len(text) > 45:  # longer than any IPv6 text form
        return False
    if b"." in text:
        cut = text.rfind(b":")
        if cut < 0 or not ipv4_ok(text[cut + 1 :]):
            return False
        text = text[: cut + 1] + b"0:0"  # the dotted quad counts as two groups
    if b":::" in text:
        return False
    double = text.count(b"::")
    if double > 1:
        return False
    if double == 1:
        left, right = text.split(b"::")
        groups = (left.split(b":") if left else []) + (right.split(b":") if right else [])
        if not 1 <= len(groups) <= 7:
            return False
    else:
        groups = text.split(b":")
        if len(groups) != 8:
            return False
    return all(1 <= len(g) <= 4 and all(c in _HEX for c in g) for g in groups)


def jwt_header_ok(segment: bytes) -> bool:
    if len(segment) % 4 == 1:
        return False
    header = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    return b'"alg"' in header


def shannon_bits(data: bytes) -> float:
    """Shannon entropy in bits per byte; summed in byte-value order so C computes the same double."""
    n = len(data)
    counts = Counter(data)
    acc = 0.0
    for byte in sorted(counts):
        c = counts[byte]
        acc += c * math.log2(c)
    return math.log2(n) - acc / n


def _has_secret_keyword(word: bytes) -> bool:
    word = word.lower()
    return any(k in word for k in SECRET_KEYWORDS)


def secret_value_ok(value: bytes, min_len: int) -> bool:
    return len(value) >= min_len and shannon_bits(value) >= ENTROPY_THRESHOLD


# ------------------------------------------------------------------------------------------- JSON

_WS_RE = re.compile(rb"[ \t\n\r]*+")
_STR_RE = re.compile(rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*+"')
_NUM_RE = re.compile(rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+\-]?[0-9]++)?+")
_ESCAPE_SIMPLE = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
                  ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}  # fmt: skip
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')
_ESCAPE_OUT = {i: b"\\u%04x" % i for i in range(32)} | {
    ord('"'): b'\\"',
    ord("\\"): b"\\\\",
    8: b"\\b",
    12: b"\\f",
    10: b"\\n",
    13: b"\\r",
    9: b"\\t",
}

STR, NUM, LIT, OBJ, ARR = range(5)


class _NotJson(Exception):
    pass


class _Node:
    __slots__ = ("kind", "start", "end", "escaped", "items")

    def __init__(
        self, kind: int, start: int, end: int, escaped: bool = False, items: list[Any] | None = None
    ):
        self.kind = kind
        self.start = start  # strings: the opening quote; containers: the bracket
        self.end = end  # one past the closing quote / bracket / token
        self.escaped = escaped
        self.items = items  # OBJ: [(key_node, value_node)]; ARR: [value_node]


def _parse_value(buf: bytes, pos: int, depth: int) -> tuple[_Node, int]:
    if pos >= len(buf):
        raise _NotJson
    ch = buf[pos]
    if ch == 0x22:  # "
        m = _STR_RE.match(buf, pos)
        if m is None:
            raise _NotJson
        content = buf[pos + 1 : m.end() - 1]
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotJson from None
        return _Node(STR, pos, m.end(), b"\\" in content), m.end()
    if ch == 0x7B or ch == 0x5B:  # { [
        if depth >= MAX_DEPTH:
            raise _NotJson
        is_obj = ch == 0x7B
        kind, close, open_pos = (OBJ if is_obj else ARR), (0x7D if is_obj else 0x5D), pos
        items: list[Any] = []
        pos = _skip_ws(buf, pos + 1)
        if pos < len(buf) and buf[pos] == close:
            return _Node(kind, open_pos, pos + 1, items=items), pos + 1
        while True:
            if is_obj:
                if pos >= len(buf) or buf[pos] != 0x22:
                    raise _NotJson
                key, pos = _parse_value(buf, pos, depth + 1)
                pos = _skip_ws(buf, pos)
                if pos >= len(buf) or buf[pos] != 0x3A:
                    raise _NotJson
                value, pos = _parse_value(buf, _skip_ws(buf, pos + 1), depth + 1)
                items.append((key, value))
            else:
                value, pos = _parse_value(buf, pos, depth + 1)
                items.append(value)
            pos = _skip_ws(buf, pos)
            if pos >= len(buf):
                raise _NotJson
            if buf[pos] == 0x2C:
                pos = _skip_ws(buf, pos + 1)
                continue
            if buf[pos] == close:
                return _Node(kind, open_pos, pos + 1, items=items), pos + 1
            raise _NotJson
    if ch == 0x74 and buf.startswith(b"true", pos):
        return _Node(LIT, pos, pos + 4), pos + 4
    if ch == 0x66 and buf.startswith(b"false", pos):
        return _Node(LIT, pos, pos + 5), pos + 5
    if ch == 0x6E and buf.startswith(b"null", pos):
        return _Node(LIT, pos, pos + 4), pos + 4
    m = _NUM_RE.match(buf, pos)
    if m is None:
        raise _NotJson
    return _Node(NUM, pos, m.end()), m.end()


def _skip_ws(buf: bytes, pos: int) -> int:
    return _WS_RE.match(buf, pos).end()  # type: ignore[union-attr]


def parse_json_document(buf: bytes) -> _Node | None:
    """The root object/array of a JSON record, or None when the value is to be treated as text."""
    pos = _skip_ws(buf, 0)
    if pos >= len(buf) or buf[pos] not in b"{[":
        return None
    try:
        root, end = _parse_value(buf, pos, 0)
    except _NotJson:
        return None
    if _skip_ws(buf, end) != len(buf):
        return None
    return root


def decode_json_string(raw: bytes) -> bytes:
    """Decode the content of a JSON string (without quotes) to UTF-8; lone surrogates become U+FFFD."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        j = raw.find(b"\\", i)
        if j < 0:
            out += raw[i:]
            break
        out += raw[i:j]
        kind = raw[j + 1]
        if kind != 0x75:  # not \u
            out += _ESCAPE_SIMPLE[kind]
            i = j + 2
            continue
        cp = int(raw[j + 2 : j + 6], 16)
        i = j + 6
        if 0xD800 <= cp <= 0xDBFF and raw[i : i + 2] == b"\\u":
            low = int(raw[i + 2 : i + 6], 16)
            if 0xDC00 <= low <= 0xDFFF:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        out += chr(cp).encode()
    return bytes(out)


def json_string(text: bytes) -> bytes:
    """A JSON string literal for UTF-8 text: quotes, backslashes and control characters escaped."""
    return b'"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPE_OUT[m.group()[0]], text) + b'"'


# ------------------------------------------------------------------------------------------- operators


def keep_last(text: bytes, n: int) -> bytes:
    """Every character but the last n becomes '*'; a character starts at a byte that is not 10xxxxxx."""
    starts = [i for i, b in enumerate(text) if i == 0 or b & 0xC0 != 0x80]
    count = len(starts)
    if count <= n:
        return b"*" * count
    if n == 0:
        return b"*" * count
    return b"*" * (count - n) + text[starts[count - n] :]


def hash_token(key: bytes, text: bytes) -> bytes:
    return b"tok_" + hmac.new(key, text, hashlib.sha256).hexdigest()[:32].encode()


# ------------------------------------------------------------------------------------------- extractors

Candidate = tuple[int, int, int]  # (start, end, detector index)


class _UnitScan:
    """Per-unit extraction state: dedupe marks of run-based extractors and the PEM END-line cache."""

    __slots__ = ("run_end", "pem_marker", "pem_from", "pem_found")

    def __init__(self) -> None:
        self.run_end: dict[int, int] = {}
        self.pem_marker = b""
        self.pem_from = 0
        self.pem_found = -1


def _back(u: bytes, i: int, allowed: frozenset[int]) -> int:
    while i > 0 and u[i - 1] in allowed:
        i -= 1
    return i


def _extract(
    u: bytes, pid: int, spec: PatternSpec, frm: int, e: int, st: _UnitScan, out: list[Candidate]
) -> None:
    kind, n, det = spec.kind, len(u), spec.detector
    if kind == Kind.TRIGGER:
        return
    if kind in (Kind.CARD_RUN, Kind.IPV4, Kind.IPV6, Kind.JWT):
        if e <= st.run_end.get(pid, -1):
            return  # same run as an earlier trigger of this pattern
        table, fwd = {
            Kind.CARD_RUN: (_DIGITS, _DIGIT_RUN),
            Kind.IPV4: (_IPV4_RUN, _IPV4_FWD),
            Kind.IPV6: (_IPV6_RUN, _IPV6_FWD),
            Kind.JWT: (_JWT_RUN, _JWT_FWD),
        }[kind]
        a = _back(u, e, table)
        b = fwd.match(u, e).end()  # type: ignore[union-attr]
        st.run_end[pid] = b
        if kind == Kind.CARD_RUN:
            if not ((a > 0 and u[a - 1] in _ALNUM) or (b < n and u[b] in _ALNUM)) and card_ok(u[a:b]):
                out.append((a, b, det))
        elif kind == Kind.IPV4:
            sa, sb = a, b
            while sa < sb and u[sa] == 0x2E:
                sa += 1
            while sb > sa and u[sb - 1] == 0x2E:
                sb -= 1
            if (sa > 0 and u[sa - 1] in _WORD) or (sb < n and u[sb] in _WORD):
                return
            if ipv4_ok(u[sa:sb]):
                out.append((sa, sb, det))
        elif kind == Kind.IPV6:
            sa, sb = a, b
            while sb > sa and u[sb - 1] == 0x2E:
                sb -= 1
            if sb > sa and u[sb - 1] == 0x3A and not (sb - 2 >= sa and u[sb - 2] == 0x3A):
                sb -= 1
            if sb > sa and u[sa] == 0x3A and not (sa + 1 < sb and u[sa + 1] == 0x3A):
                sa += 1
            if (sa > 0 and u[sa - 1] in _WORD) or (sb < n and u[sb] in _WORD):
                return
            if sb > sa and ipv6_ok(u[sa:sb]):
                out.append((sa, sb, det))
        else:  # JWT
            if u[a : a + 3] != b"eyJ":
                return
            segments = u[a:b].split(b".")
            if len(segments) in (4, 6) and segments[-1] == b"":
                segments.pop()
                b -= 1
            if len(segments) not in (3, 5) or (len(segments) == 3 and not segments[1]):
                return
            if jwt_header_ok(segments[0]):
                out.append((a, b, det))
        return

    if kind == Kind.CUSTOM_REGEX:
        s = frm
        while s > 0 and u[s] & 0xC0 == 0x80:
            s -= 1
        while e < n and u[e] & 0xC0 == 0x80:
            e += 1
        out.append((s, e, det))
        return

    width = spec.width
    if width:
        s = e - width
        if s < 0:
            return
    else:
        s = -1

    if kind == Kind.CARD_GROUP:
        if (s > 0 and u[s - 1] in _ALNUM) or (e < n and u[e] in _ALNUM):
            return
        span = u[s:e]
        if len({c for c in span if c not in _DIGITS}) != 1:
            return
        if card_ok(bytes(c for c in span if c in _DIGITS)):
            out.append((s, e, det))
    elif kind == Kind.SSN:
        if (s > 0 and u[s - 1] in _DIGITS) or (e < n and u[e] in _DIGITS):
            return
        if ssn_ok(u[s : s + 3] + u[s + 4 : s + 6] + u[s + 7 : s + 11]):
            out.append((s, e, det))
    elif kind in (Kind.IBAN_CONTIG, Kind.IBAN_GROUPED):
        if s > 0 and u[s - 1] in _ALNUM:
            return
        length = IBAN_LENGTHS.get(u[s : s + 2])
        if length is None:
            return
        if kind == Kind.IBAN_CONTIG:
            end = s + length
            if end > n or any(c not in _UPPER_ALNUM for c in u[s + 4 : end]):
                return
            chars = u[s:end]
        else:
            end, count, parts = s + 4, 4, [u[s : s + 4]]
            while count < length:
                if end >= n or u[end] != 0x20:
                    return
                end += 1
                take = min(4, length - count)
                group = u[end : end + take]
                if len(group) < take or any(c not in _UPPER_ALNUM for c in group):
                    return
                parts.append(group)
                end += take
                count += take
            chars = b"".join(parts)
        if end < n and u[end] in _ALNUM:
            return
        if iban_ok(chars):
            out.append((s, end, det))
    elif kind == Kind.EMAIL:
        at = e - 2
        a = _back(u, at, _LOCAL)
        while a < at and u[a] == 0x2E:
            a += 1
        b = _DOMAIN_RUN.match(u, at + 1).end()  # type: ignore[union-attr]
        while b > at + 1 and u[b - 1] in b".-":
            b -= 1
        if _email_local_ok(u[a:at]) and _email_domain_ok(u[at + 1 : b]):
            out.append((a, b, det))
    elif kind == Kind.PHONE_INTL:
        if s > 0 and (u[s - 1] in _ALNUM or u[s - 1] == 0x2B):
            return
        digits = bytearray()
        p = s + 1
        while True:
            q = p
            while q < n and u[q] in _DIGITS and len(digits) <= 15:
                digits.append(u[q])
                q += 1
            if len(digits) > 15:
                return
            last = q
            k = 0
            while k < 3 and q + k < n and u[q + k] in _PHONE_SEP:
                k += 1
            if 1 <= k <= 2 and q + k < n and u[q + k] in _DIGITS and _phone_sep_ok(u[q : q + k]):
                p = q + k
                continue
            break
        if not 8 <= len(digits) <= 15:
            return
        if digits[0] == 0x31 and not (len(digits) == 11 and _nanp_ok(bytes(digits[1:]))):
            return
        if last < n and u[last] in _ALNUM:
            return
        out.append((s, last, det))
    elif kind == Kind.PHONE_NANP:
        if s > 0 and (u[s - 1] in _WORD or u[s - 1] in b"+-.("):
            return
        if e < n and (u[e] in _WORD or (u[e] in b"-. " and e + 1 < n and u[e + 1] in _DIGITS)):
            return
        nanp_digits = bytes(c for c in u[s:e] if c in _DIGITS)
        if _nanp_ok(nanp_digits[-10:]):
            out.append((s, e, det))
    elif kind == Kind.PHONE_TRUNK:
        sep_pos = e - 3
        g = _back(u, sep_pos, _DIGITS)
        first = sep_pos - g
        if not (2 <= first <= 5 and u[g] == 0x30 and u[g + 1] != 0x30):
            return
        if g > 0 and (u[g - 1] in _WORD or u[g - 1] in b"+.-"):
            return
        sep = u[sep_pos]
        groups, total, p = 1, first, sep_pos
        while p + 1 < n and u[p] == sep and u[p + 1] in _DIGITS and total <= 11:
            q = _DIGIT_RUN.match(u, p + 1).end()  # type: ignore[union-attr]
            size = q - p - 1
            if not 2 <= size <= 8:
                return
            groups += 1
            total += size
            p = q
        if groups < 2 or total not in (10, 11):
            return
        if p < n and (u[p] in _WORD or (u[p] in b" .-" and p + 1 < n and u[p + 1] in _DIGITS)):
            return
        out.append((g, p, det))
    elif kind == Kind.AWS:
        if (s > 0 and u[s - 1] in _ALNUM) or (e < n and u[e] in _ALNUM):
            return
        out.append((s, e, det))
    elif kind == Kind.PEM:
        if e >= 22 and u[e - 22 : e] == b"PRIVATE KEY BLOCK-----":
            q = e - 22
        elif e >= 16 and u[e - 16 : e] == b"PRIVATE KEY-----":
            q = e - 16
        else:
            return
        p = _back(u, q, _PEM_LABEL)
        if p < 5 or u[p - 5 : p] != b"-----" or u[p : p + 6] != b"BEGIN " or p + 6 > q:
            return
        marker = b"-----END " + u[p + 6 : e]
        if marker == st.pem_marker and st.pem_from <= e and (st.pem_found < 0 or st.pem_found >= e):
            found = st.pem_found
        else:
            found = u.find(marker, e)
            st.pem_marker, st.pem_from, st.pem_found = marker, e, found
        out.append((p - 5, found + len(marker) if found >= 0 else n, det))
    elif kind == Kind.SECRET_PREFIX:
        body = e - MIN_PREFIXED_BODY_LEN
        for prefix in SECRET_PREFIXES:
            start = body - len(prefix)
            if start < 0 or u[start:body] != prefix:
                continue
            if start > 0 and u[start - 1] in _TOKEN:
                continue
            end = _TOKEN_FWD.match(u, body).end()  # type: ignore[union-attr]
            if shannon_bits(u[body:end]) >= ENTROPY_THRESHOLD:
                out.append((start, end, det))
    elif kind == Kind.SECRET_ASSIGN:
        v = e - 1
        p = v
        if p > 0 and u[p - 1] in b"'\"":
            p -= 1
        while p > 0 and u[p - 1] in b" \t":
            p -= 1
        if p == 0 or u[p - 1] not in b":=":
            return
        p -= 1
        while p > 0 and u[p - 1] in b" \t":
            p -= 1
        if p > 0 and u[p - 1] in b"'\"":
            p -= 1
        w = _back(u, p, _TOKEN)
        if not _has_secret_keyword(u[w:p]):
            return
        end = _VALUE_FWD.match(u, v).end()  # type: ignore[union-attr]
        if secret_value_ok(u[v:end], MIN_ASSIGNED_SECRET_LEN):
            out.append((v, end, det))
    elif kind == Kind.CUSTOM_DICT:
        if spec.param and ((s > 0 and u[s - 1] in _WORD) or (e < n and u[e] in _WORD)):
            return
        while s > 0 and u[s] & 0xC0 == 0x80:
            s -= 1
        while e < n and u[e] & 0xC0 == 0x80:
            e += 1
        out.append((s, e, det))


def _phone_sep_ok(sep: bytes) -> bool:
    return sum(c in b" .-" for c in sep) <= 1 and sum(c in b"()" for c in sep) <= 1


def _nanp_ok(ten: bytes) -> bool:
    return (
        len(ten) == 10
        and ten[0] in b"23456789"
        and ten[3] in b"23456789"
        and ten[1:3] != b"11"
        and ten[4:6] != b"11"
    )


def resolve_overlaps(candidates: list[Candidate]) -> list[Candidate]:
    """Leftmost first, then longest, then detector priority; keep what does not overlap a kept one."""
    candidates.sort(key=lambda c: (c[0], c[0] - c[1], c[2]))
    kept: list[Candidate] = []
    end = 0
    for cand in candidates:
        if cand[0] >= end:
            kept.append(cand)
            end = cand[1]
    return kept


# ------------------------------------------------------------------------------------------- engine


def compile_reference_database(compiled: CompiledProfile) -> Any:
    import hyperscan

    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        db.compile(
            expressions=[p.expression for p in compiled.patterns],
            ids=list(range(len(compiled.patterns))),
            elements=len(compiled.patterns),
            flags=[p.flags for p in compiled.patterns],
        )
    except hyperscan.error as exc:
        raise MaskingConfigError(describe_compile_error(compiled, str(exc))) from None
    return db


def describe_compile_error(compiled: CompiledProfile, message: str) -> str:
    """Name the detector whose pattern Hyperscan rejected (messages look like 'Expression 3 ...')."""
    m = re.search(r"[Ee]xpression (?:id )?(\d+)", message)
    if m is not None and int(m.group(1)) < len(compiled.patterns):
        spec = compiled.patterns[int(m.group(1))]
        if spec.detector >= 0:
            return (
                f"custom_detectors.{compiled.detector_names[spec.detector]}: Hyperscan rejects it: {message}"
            )
    return f"Hyperscan rejects the profile: {message}"


class ReferenceMaskingEngine:
    """The masking engine in pure Python (the Hyperscan wheel finds triggers, Python does the rest)."""

    implementation = "reference"

    def __init__(self, compiled: CompiledProfile, hmac_key: bytes | None) -> None:
        self._profile = compiled
        self._patterns = compiled.patterns
        self._key = hmac_key or b""
        self._db = compile_reference_database(compiled)
        self._som = [bool(p.flags & Flag.SOM_LEFTMOST) for p in compiled.patterns]

    # -- public API

    def mask_values(self, values: Sequence[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        counts: Counter[str] = Counter()
        out: list[bytes | None] = []
        for value in values:
            out.append(None if value is None else self._record(value, counts, rewrite=True))
        return out, dict(counts)

    def scan_counts(self, values: Sequence[bytes | None]) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for value in values:
            if value is not None:
                self._record(value, counts, rewrite=False)
        return dict(counts)

    # -- records

    def _record(self, value: bytes, counts: Counter[str], rewrite: bool) -> bytes:
        root = parse_json_document(value)
        if root is None:
            findings = self.unit_findings(value, None)
            if not findings:
                return value
            self._count(findings, counts)
            return self._splice(value, findings) if rewrite else value
        edits: list[tuple[int, int, bytes]] = []
        self._walk(value, root, [], None, edits, counts)
        if not edits or not rewrite:
            return value
        edits.sort()
        parts, pos = [], 0
        for start, end, replacement in edits:
            parts.append(value[pos:start])
            parts.append(replacement)
            pos = end
        parts.append(value[pos:])
        return b"".join(parts)

    def _count(self, findings: list[Candidate], counts: Counter[str]) -> None:
        names = self._profile.detector_names
        for _, _, det in findings:
            counts[names[det]] += 1

    def _replacement(self, text: bytes, det: int) -> bytes:
        op = self._profile.operator
        if op.code == OpCode.REDACT:
            return b"[REDACTED:" + (op.label or self._profile.labels[det]) + b"]"
        if op.code == OpCode.KEEP_LAST:
            return keep_last(text, op.keep_last)
        if op.code == OpCode.HASH:
            if self._profile.normalise[det]:
                text = text.replace(b" ", b"").replace(b"-", b"")
            return hash_token(self._key, text)
        return b""  # null / drop inside text: the finding is removed

    def _splice(self, unit: bytes, findings: list[Candidate]) -> bytes:
        parts, pos = [], 0
        for start, end, det in findings:
            parts.append(unit[pos:start])
            parts.append(self._replacement(unit[start:end], det))
            pos = end
        parts.append(unit[pos:])
        return b"".join(parts)

    # -- units

    def unit_findings(self, unit: bytes, member_key: bytes | None) -> list[Candidate]:
        """Findings of one scan unit; member_key is the decoded key of a JSON string member."""
        candidates: list[Candidate] = []
        if unit:
            matches: list[tuple[int, int, int]] = []
            longest: dict[tuple[int, int], int] = {}
            som = self._som

            def on_match(pid: int, frm: int, to: int, flags: int, context: object) -> None:
                if som[pid]:
                    longest[(pid, frm)] = max(to, longest.get((pid, frm), 0))
                else:
                    matches.append((to, pid, frm))

            self._db.scan(unit, match_event_handler=on_match)
            matches.extend((to, pid, frm) for (pid, frm), to in longest.items())
            matches.sort()
            st = _UnitScan()
            for to, pid, frm in matches:
                _extract(unit, pid, self._patterns[pid], frm, to, st, candidates)
        if (
            member_key is not None
            and self._profile.json_secret_members
            and _has_secret_keyword(member_key)
            and not any(c in _SPACE for c in unit)
            and secret_value_ok(unit, MIN_ASSIGNED_SECRET_LEN)
        ):
            candidates.append((0, len(unit), self._profile.detector_names.index("generic_secret")))
        if not candidates:
            return candidates
        return resolve_overlaps(candidates)

    # -- JSON walk

    def _match_rule(self, path: list[bytes | int], member_key: bytes | None) -> FieldRule | None:
        for rule in self._profile.field_rules:
            if rule.name is not None:
                if member_key is not None and member_key.lower() == rule.name:
                    return rule
                continue
            steps = rule.path
            assert steps is not None
            if len(steps) != len(path):
                continue
            for step, comp in zip(steps, path, strict=True):
                if step.name is not None:
                    if not isinstance(comp, bytes) or comp != step.name:
                        break
                elif not isinstance(comp, int) or (step.index is not None and comp != step.index):
                    break
            else:
                return rule
        return None

    def _walk(
        self,
        buf: bytes,
        node: _Node,
        path: list[bytes | int],
        member_key: bytes | None,
        edits: list[tuple[int, int, bytes]],
        counts: Counter[str],
    ) -> bool:
        """Mask one JSON value; True when the element holding it must be removed."""
        if path and self._profile.field_rules:
            rule = self._match_rule(path, member_key)
            if rule is not None:
                return self._apply_rule(buf, node, rule, edits, counts)
        if node.kind == OBJ or node.kind == ARR:
            assert node.items is not None
            ranges: list[tuple[int, int]] = []
            dropped: list[bool] = []
            if node.kind == OBJ:
                for key_node, value_node in node.items:
                    key = decode_json_string(buf[key_node.start + 1 : key_node.end - 1])
                    dropped.append(self._walk(buf, value_node, [*path, key], key, edits, counts))
                    ranges.append((key_node.start, value_node.end))
            else:
                for index, value_node in enumerate(node.items):
                    dropped.append(self._walk(buf, value_node, [*path, index], None, edits, counts))
                    ranges.append((value_node.start, value_node.end))
            if any(dropped):
                _delete_elements(ranges, dropped, edits)
            return False
        if node.kind == LIT:
            return False
        if node.kind == STR:
            raw = buf[node.start + 1 : node.end - 1]
            unit = decode_json_string(raw) if node.escaped else raw
            findings = self.unit_findings(unit, member_key)
        else:
            unit = buf[node.start : node.end]
            findings = self.unit_findings(unit, None)
        if not findings:
            return False
        self._count(findings, counts)
        op = self._profile.operator
        if op.code == OpCode.DROP:
            return True
        if op.code == OpCode.NULL:
            edits.append((node.start, node.end, b"null"))
        else:
            edits.append((node.start, node.end, json_string(self._splice(unit, findings))))
        return False

    def _apply_rule(
        self,
        buf: bytes,
        node: _Node,
        rule: FieldRule,
        edits: list[tuple[int, int, bytes]],
        counts: Counter[str],
    ) -> bool:
        op: Operator = rule.operator
        raw = buf[node.start : node.end]
        if op.code == OpCode.DROP:
            counts[rule.count_key] += 1
            return True
        if node.kind == LIT and raw == b"null":
            return False
        counts[rule.count_key] += 1
        if node.kind == STR:
            text = decode_json_string(raw[1:-1]) if node.escaped else raw[1:-1]
        else:
            text = raw
        if op.code == OpCode.NULL:
            replacement = b"null"
        elif op.code == OpCode.HASH:
            replacement = b'"' + hash_token(self._key, text) + b'"'
        elif op.code == OpCode.KEEP_LAST and node.kind in (STR, NUM):
            replacement = json_string(keep_last(text, op.keep_last))
        elif op.label is not None:
            replacement = b'"[REDACTED:' + op.label + b']"'
        else:
            replacement = b'"[REDACTED]"'
        edits.append((node.start, node.end, replacement))
        return False


def _delete_elements(
    ranges: list[tuple[int, int]], dropped: list[bool], edits: list[tuple[int, int, bytes]]
) -> None:
    """Remove dropped elements; keep the separator after each kept element except the last kept one."""
    kept = [i for i, gone in enumerate(dropped) if not gone]
    last_kept = kept[-1] if kept else -1
    for i, (start, end) in enumerate(ranges):
        if dropped[i]:
            edits.append((start, end, b""))
        if i + 1 < len(ranges) and (dropped[i] or i >= last_kept):
            edits.append((end, ranges[i + 1][0], b""))
