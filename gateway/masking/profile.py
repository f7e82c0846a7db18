"""Masking profiles: validated once, compiled into the tables both engine implementations run.

A profile (`masking.profiles.<name>` in the config) names detectors, JSON field rules and a default
operator. `compile_profile` checks everything a scan would otherwise trip over (unknown detectors,
malformed paths, custom regexes RE2 rejects or that could behave differently per record) and returns a
`CompiledProfile`: the Hyperscan pattern table, detector order, field rules sorted strictest first.

Rules kept here:
- errors are `MaskingConfigError` naming the offending key, and never echo values of the HMAC key;
- a custom regex must be accepted by RE2 (so it cannot blow up) and must not use anchors (`^ $ \\A \\z`):
  detectors find occurrences inside a value, and whole-value masking is what field rules are for;
- when several field rules match one JSON value, the strictest operator wins
  (drop > null > redact > hash > keep_last, a smaller keep_last being stricter); ties go to the rule
  key that sorts first. Name rules (`ssn`) compare the member name ASCII-case-insensitively; path rules
  (`$.customer.ssn`, `$.items[*].card`, `$['odd key'][0]`) compare exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgspec

from gateway.masking.detectors import (
    BACKSLASH_TRIGGER,
    BUILTIN_DETECTORS,
    BUILTIN_PATTERNS,
    NORMALISED_FOR_HASH,
    PRIORITY,
    TRIGGER_BACKSLASH,
    Flag,
    Kind,
    PatternSpec,
)

__all__ = [
    "CompiledProfile",
    "CustomDetector",
    "FieldRule",
    "MaskingConfigError",
    "MaskingProfile",
    "OpCode",
    "Operator",
    "PathStep",
    "compile_profile",
    "parse_operator",
    "parse_path",
]

MAX_CUSTOM_REGEX_LEN = 1024
MAX_DICTIONARY_ENTRIES = 10_000
MAX_LITERAL_LEN = 256
MAX_KEEP_LAST = 64
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_LABEL_RE = re.compile(r"[A-Za-z0-9_.:\- ]{1,64}")
_PATH_NAME_RE = re.compile(r"[^.\[\]'\"\s]+")


class MaskingConfigError(ValueError):
    """A profile or custom detector that cannot be compiled; the message names the offending key."""


class CustomDetector(msgspec.Struct, forbid_unknown_fields=True):
    """A user detector: a regex (RE2 syntax) or a dictionary of literals; exactly one of the two."""

    regex: str | None = None
    dictionary: list[str] | None = None
    ignore_case: bool = False
    whole_word: bool = False  # dictionary only: the literal must not touch a letter, digit or '_'


class MaskingProfile(msgspec.Struct, forbid_unknown_fields=True):
    """`masking.profiles.<name>`: detectors scanned everywhere, field rules, the default operator."""

    detectors: list[str] = msgspec.field(default_factory=list)
    fields: dict[str, str | dict[str, Any]] = msgspec.field(default_factory=dict)
    operator: str | dict[str, Any] = "redact"


class OpCode(IntEnum):
    """Operators; the numeric order is the strictness order (lower is stricter). Mirrored in C."""

    DROP = 0
    NULL = 1
    REDACT = 2
    HASH = 3
    KEEP_LAST = 4


@dataclass(frozen=True, slots=True)
class Operator:
    code: OpCode
    keep_last: int = 0
    label: bytes | None = None  # redact with an explicit label: "[REDACTED:<label>]"

    @property
    def strictness(self) -> tuple[int, int]:
        return (int(self.code), self.keep_last)


@dataclass(frozen=True, slots=True)
class PathStep:
    """One step of a JSON path: a member name, an array index, or any index (`[*]`)."""

    name: bytes | None = None
    index: int | None = None  # None with name None means `[*]`


@dataclass(frozen=True, slots=True)
class FieldRule:
    key: str  # as written in the profile; counts are reported as "field:<key>"
    operator: Operator
    name: bytes | None = None  # name rule: ASCII-lower-cased member name
    path: tuple[PathStep, ...] | None = None  # path rule: steps after `$`

    @property
    def count_key(self) -> str:
        return "field:" + self.key


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    detector_names: tuple[str, ...]  # priority order; a finding's detector is an index into this
    labels: tuple[bytes, ...]  # redact label per detector
    normalise: tuple[bool, ...]  # strip spaces and dashes before hashing
    patterns: tuple[PatternSpec, ...]  # Hyperscan expression id = index
    operator: Operator
    field_rules: tuple[FieldRule, ...]  # strictest first
    json_secret_members: bool  # generic_secret: JSON members whose key names a secret
    has_som_patterns: bool  # some pattern tracks start of match (custom regexes)


def parse_operator(spec: object, where: str) -> Operator:
    if isinstance(spec, str):
        simple = {"redact": OpCode.REDACT, "hash": OpCode.HASH, "null": OpCode.NULL, "drop": OpCode.DROP}
        if spec in simple:
            return Operator(simple[spec])
        raise MaskingConfigError(
            f'{where}: unknown operator "{spec}" (expected redact, hash, null, drop, {{keep_last: N}} '
            "or {redact: LABEL})"
        )
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, arg),) = spec.items()
        if name == "keep_last":
            if type(arg) is not int or not 0 <= arg <= MAX_KEEP_LAST:
                raise MaskingConfigError(f"{where}.keep_last: expected an integer 0..{MAX_KEEP_LAST}")
            return Operator(OpCode.KEEP_LAST, keep_last=arg)
        if name == "redact":
            if not isinstance(arg, str) or not _LABEL_RE.fullmatch(arg):
                raise MaskingConfigError(f"{where}.redact: label must be 1-64 of [A-Za-z0-9_.:- ]")
            return Operator(OpCode.REDACT, label=arg.encode())
    raise MaskingConfigError(f"{where}: expected an operator name, {{keep_last: N}} or {{redact: LABEL}}")


def parse_path(key: str, where: str) -> tuple[PathStep, ...]:
    """`$.a.b`, `$.items[*].card`, `$['odd key'][0]` -> steps; at least one step must name a member."""
    steps: list[PathStep] = []
    i = 1
    while i < len(key):
        if key[i] == ".":
            m = _PATH_NAME_RE.match(key, i + 1)
            if m is None:
                raise MaskingConfigError(f"{where}: expected a member name after '.' at position {i}")
            steps.append(PathStep(name=m.group().encode()))
            i = m.end()
        elif key.startswith("[*]", i):
            steps.append(PathStep())
            i += 3
        elif key[i] == "[":
            m = re.compile(r"\[(?:(\d{1,9})|'([^']+)'|\"([^\"]+)\")\]").match(key, i)
            if m is None:
                raise MaskingConfigError(f"{where}: malformed bracket step at position {i}")
            if m.group(1) is not None:
                steps.append(PathStep(index=int(m.group(1))))
            else:
                steps.append(PathStep(name=(m.group(2) or m.group(3)).encode()))
            i = m.end()
        else:
            raise MaskingConfigError(f"{where}: unexpected {key[i]!r} at position {i}")
    if not any(step.name is not None for step in steps):
        raise MaskingConfigError(f"{where}: a path must name at least one member (e.g. $.customer.ssn)")
    return tuple(steps)


def _has_anchor(pattern: str) -> bool:
    """Whether a regex uses ^, $, \\A, \\z, \\Z or \\G outside a character class."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if not in_class and pattern[i + 1 : i + 2] in ("A", "z", "Z", "G"):
                return True
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            # A ']' right after '[' or '[^' is a literal member of the class.
            i += 2 if pattern[i + 1 : i + 2] == "^" else 1
            if pattern[i : i + 1] == "]":
                i += 1
            continue
        elif ch in "^$":
            return True
        i += 1
    return False


def _check_regex(name: str, pattern: str) -> None:
    where = f"custom_detectors.{name}.regex"
    if not pattern:
        raise MaskingConfigError(f"{where}: empty pattern")
    if "\x00" in pattern:
        raise MaskingConfigError(f"{where}: write a NUL byte as \\x00, not literally")
    if len(pattern) > MAX_CUSTOM_REGEX_LEN:
        raise MaskingConfigError(f"{where}: longer than {MAX_CUSTOM_REGEX_LEN} characters")
    import re2  # type: ignore[import-not-found]  # pyre2 (no stubs); only profiles with custom regexes need it

    try:
        compiled = re2.compile(pattern)
    except Exception as exc:  # re2.error carries RE2's own message
        raise MaskingConfigError(f"{where}: RE2 rejects the pattern: {exc}") from None
    if type(compiled) is not re2.Pattern:
        # pyre2 silently falls back to Python's re for what RE2 cannot run (backreferences, lookaround).
        raise MaskingConfigError(
            f"{where}: uses a feature RE2 does not support (backreferences or lookaround); "
            "only linear-time patterns are accepted"
        )
    if _has_anchor(pattern):
        raise MaskingConfigError(
            f"{where}: anchors (^ $ \\A \\z) are not allowed: detectors find occurrences inside a value; "
            "use a field rule to mask a whole value"
        )


def _literal_expression(literal: bytes) -> bytes:
    return b"".join(bytes([c]) if chr(c).isalnum() and c < 128 else b"\\x%02x" % c for c in literal)


def compile_profile(
    profile: MaskingProfile, custom_detectors: dict[str, CustomDetector | dict[str, Any]] | None = None
) -> CompiledProfile:
    customs: dict[str, CustomDetector] = {}
    for name, spec in (custom_detectors or {}).items():
        where = f"custom_detectors.{name}"
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise MaskingConfigError(f"{where}: a name is 1-64 of [a-z0-9_], starting with a letter")
        if name in BUILTIN_DETECTORS:
            raise MaskingConfigError(f"{where}: {name} is a built-in detector id")
        try:
            detector = msgspec.convert(spec, CustomDetector) if isinstance(spec, dict) else spec
        except msgspec.ValidationError as exc:
            raise MaskingConfigError(f"{where}: {exc}") from None
        if not isinstance(detector, CustomDetector):
            raise MaskingConfigError(f"{where}: expected a mapping with regex or dictionary")
        if (detector.regex is None) == (detector.dictionary is None):
            raise MaskingConfigError(f"{where}: set exactly one of regex and dictionary")
        if detector.regex is not None:
            if detector.whole_word:
                raise MaskingConfigError(f"{where}.whole_word: only for dictionaries (use \\b in the regex)")
            _check_regex(name, detector.regex)
        else:
            assert detector.dictionary is not None
            if not 1 <= len(detector.dictionary) <= MAX_DICTIONARY_ENTRIES:
                raise MaskingConfigError(f"{where}.dictionary: 1-{MAX_DICTIONARY_ENTRIES} entries")
            for i, word in enumerate(detector.dictionary):
                if not isinstance(word, str) or not 1 <= len(word.encode()) <= MAX_LITERAL_LEN:
                    raise MaskingConfigError(f"{where}.dictionary[{i}]: 1-{MAX_LITERAL_LEN} bytes of text")
        customs[name] = detector

    enabled: set[str] = set()
    for i, name in enumerate(profile.detectors):
        if name not in BUILTIN_DETECTORS and name not in customs:
            raise MaskingConfigError(f"detectors[{i}]: unknown detector {name!r}")
        enabled.add(name)
    names = tuple([d for d in PRIORITY if d in enabled] + sorted(d for d in enabled if d in customs))

    patterns: list[PatternSpec] = []
    for index, name in enumerate(names):
        if name in BUILTIN_DETECTORS:
            for expression, flags, kind, width, param in BUILTIN_PATTERNS[name]:
                detector_index = -1 if kind is Kind.TRIGGER else index
                patterns.append(PatternSpec(expression, flags, kind, width, detector_index, param))
            continue
        custom = customs[name]
        caseless = Flag.CASELESS if custom.ignore_case else 0
        if custom.regex is not None:
            patterns.append(
                PatternSpec(custom.regex.encode(), Flag.SOM_LEFTMOST | caseless, Kind.CUSTOM_REGEX, 0, index)
            )
        else:
            assert custom.dictionary is not None
            for word in dict.fromkeys(custom.dictionary):  # duplicates would only cost scan time
                literal = word.encode()
                patterns.append(
                    PatternSpec(
                        _literal_expression(literal),
                        caseless,
                        Kind.CUSTOM_DICT,
                        len(literal),
                        index,
                        param=int(custom.whole_word),
                    )
                )

    rules: list[FieldRule] = []
    for key, op_spec in profile.fields.items():
        where = f"fields.{key}"
        if not isinstance(key, str) or not key:
            raise MaskingConfigError("fields: empty field rule key")
        operator = parse_operator(op_spec, where)
        if key.startswith("$"):
            path = parse_path(key, where)
            rules.append(FieldRule(key, operator, path=path))
            last_name = [step.name for step in path if step.name is not None][-1]
            patterns.append(PatternSpec(b'"' + _literal_expression(last_name) + b'"', 0, Kind.TRIGGER, 0, -1))
        else:
            if len(key.encode()) > MAX_LITERAL_LEN:
                raise MaskingConfigError(f"{where}: field names are at most {MAX_LITERAL_LEN} bytes")
            name_bytes = key.encode().lower()
            rules.append(FieldRule(key, operator, name=name_bytes))
            patterns.append(
                PatternSpec(b'"' + _literal_expression(name_bytes) + b'"', Flag.CASELESS, Kind.TRIGGER, 0, -1)
            )
    rules.sort(key=lambda rule: (rule.operator.strictness, rule.key))
    patterns.append(PatternSpec(BACKSLASH_TRIGGER, 0, Kind.TRIGGER, 0, -1, param=TRIGGER_BACKSLASH))

    return CompiledProfile(
        detector_names=names,
        labels=tuple(name.upper().encode() for name in names),
        normalise=tuple(name in NORMALISED_FOR_HASH for name in names),
        patterns=tuple(patterns),
        operator=parse_operator(profile.operator, "operator"),
        field_rules=tuple(rules),
        json_secret_members="generic_secret" in enabled,
        has_som_patterns=any(p.flags & Flag.SOM_LEFTMOST for p in patterns),
    )
