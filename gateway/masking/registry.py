"""The `masking` config section, and one masking engine per combination of profiles, built once per worker.

A consumer may match several allow rules with different `mask` profiles. Holding more roles must never show
more data, so the profiles combine into the stricter union: every detector of every profile, every field rule
(where two profiles name the same field, the stricter operator wins: drop > null > redact > hash > keep_last,
a smaller keep_last being stricter), the strictest default operator, and keys/headers masked if any profile
masks them. A principal reads in clear only when no matching allow rule carries a mask.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.masking.engine import MaskingEngine
from gateway.masking.profile import (
    CustomDetector,
    MaskingConfigError,
    MaskingProfile,
    compile_profile,
    parse_operator,
)


class ProfileConfig(MaskingProfile, forbid_unknown_fields=True):
    """`masking.profiles.<name>`: a MaskingProfile plus where it applies."""

    keys: bool = False  # also mask record keys
    headers: bool = False  # also mask record header values
    scrub_on_produce: bool = False  # mask records written under a rule with this profile before they reach the broker


class MaskingConfig(msgspec.Struct, forbid_unknown_fields=True):
    profiles: dict[str, ProfileConfig] = msgspec.field(default_factory=dict)
    custom_detectors: dict[str, CustomDetector] = msgspec.field(default_factory=dict)
    hmac_key: str | None = None  # for the `hash` operator; use ${env:...} or ${file:...}

    def __post_init__(self) -> None:
        for name, profile in self.profiles.items():
            try:
                compiled = compile_profile(profile, dict(self.custom_detectors))
            except MaskingConfigError as exc:
                raise ValueError(f"profiles.{name}: {exc}") from None
            if _uses_hash(profile) and not self.hmac_key:
                raise ValueError(f"hmac_key: required because profile {name!r} uses the hash operator")
            del compiled

    def __repr__(self) -> str:  # the HMAC key stays out of logs and tracebacks
        return f"MaskingConfig(profiles={sorted(self.profiles)}, hmac_key=<redacted>)"


def _uses_hash(profile: MaskingProfile) -> bool:
    specs = [profile.operator, *profile.fields.values()]
    return any(s == "hash" or (isinstance(s, dict) and "hash" in s) for s in specs)


def _stricter(a: Any, b: Any, where: str) -> Any:
    return a if parse_operator(a, where).strictness <= parse_operator(b, where).strictness else b


def combine_profiles(profiles: list[ProfileConfig]) -> ProfileConfig:
    """The stricter union of several profiles (see the module docstring)."""
    if len(profiles) == 1:
        return profiles[0]
    detectors: list[str] = []
    fields: dict[str, Any] = {}
    operator: Any = profiles[0].operator
    for p in profiles:
        detectors += [d for d in p.detectors if d not in detectors]
        for key, spec in p.fields.items():
            fields[key] = _stricter(fields[key], spec, f"fields.{key}") if key in fields else spec
        operator = _stricter(operator, p.operator, "operator")
    return ProfileConfig(detectors=detectors, fields=fields, operator=operator,
                         keys=any(p.keys for p in profiles), headers=any(p.headers for p in profiles),
                         scrub_on_produce=any(p.scrub_on_produce for p in profiles))


class MaskerRegistry:
    """Engines by profile combination, compiled lazily in the worker process (after fork)."""

    def __init__(self, config: MaskingConfig) -> None:
        self.config = config
        self._engines: dict[tuple[str, ...], tuple[MaskingEngine, ProfileConfig]] = {}

    def profile(self, names: tuple[str, ...]) -> ProfileConfig:
        missing = [n for n in names if n not in self.config.profiles]
        if missing:
            raise MaskingConfigError(f"policy refers to unknown masking profile(s): {', '.join(missing)}")
        return combine_profiles([self.config.profiles[n] for n in names])

    def scanner(self, detectors: frozenset[str]) -> MaskingEngine:
        """An engine that only counts `detectors` (for exfiltration limits and produce content rules)."""
        key = ("#scan", *sorted(detectors))
        found = self._engines.get(key)
        if found is None:
            profile = ProfileConfig(detectors=sorted(detectors))
            engine = MaskingEngine(profile, hmac_key=None, custom_detectors=dict(self.config.custom_detectors))
            found = self._engines[key] = (engine, profile)
        return found[0]

    def engine(self, names: tuple[str, ...]) -> tuple[MaskingEngine, ProfileConfig]:
        key = tuple(sorted(set(names)))
        found = self._engines.get(key)
        if found is None:
            profile = self.profile(key)
            key_bytes = self.config.hmac_key.encode() if self.config.hmac_key else None
            engine = MaskingEngine(profile, hmac_key=key_bytes, custom_detectors=dict(self.config.custom_detectors))
            found = self._engines[key] = (engine, profile)
        return found
