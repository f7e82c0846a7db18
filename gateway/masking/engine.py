"""MaskingEngine: masks batches of record values with one profile; native scanner or pure-Python twin.

The rule this module keeps: callers build `MaskingEngine` and never pick an implementation. The Cython
extension `gateway.masking._scanner` (Hyperscan database compiled lazily in each worker process, C match
callbacks, C validators) is used unless STREAMGATE_NO_EXTENSIONS is true; then, or when the extension
cannot be imported, `gateway.masking.reference` runs instead, and an import failure is kept in
NATIVE_LOAD_ERROR so the test session and operators can see it. Both produce identical bytes and counts
(the semantics are specified in gateway/masking/reference.py).

An engine is not thread-safe (it reuses scan buffers); use one per worker thread. Counts never contain
values, only detector ids and `field:<rule>` keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.masking.profile import (
    CompiledProfile,
    CustomDetector,
    MaskingConfigError,
    MaskingProfile,
    OpCode,
    compile_profile,
)
from gateway.native import extensions_disabled

__all__ = ["IMPLEMENTATION", "NATIVE_LOAD_ERROR", "MaskingEngine", "build_engine_impl"]


class _EngineImpl(Protocol):
    implementation: str

    def mask_values(self, values: Sequence[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]: ...

    def scan_counts(self, values: Sequence[bytes | None]) -> dict[str, int]: ...


def _select() -> tuple[Any, str, str | None]:
    from gateway.masking.reference import ReferenceMaskingEngine

    if extensions_disabled():
        return ReferenceMaskingEngine, "reference", None
    try:
        from gateway.masking._scanner import NativeMaskingEngine
    except ImportError as exc:  # not built, or built for another interpreter
        return ReferenceMaskingEngine, "reference", f"{type(exc).__name__}: {exc}"
    return NativeMaskingEngine, "native", None


_ENGINE_CLASS, IMPLEMENTATION, NATIVE_LOAD_ERROR = _select()


def _needs_key(compiled: CompiledProfile) -> bool:
    return compiled.operator.code == OpCode.HASH or any(
        rule.operator.code == OpCode.HASH for rule in compiled.field_rules
    )


def build_engine_impl(
    compiled: CompiledProfile, hmac_key: bytes | None, implementation: str | None = None
) -> _EngineImpl:
    """An engine of the given implementation ("native"/"reference"; default: the selected one)."""
    if _needs_key(compiled) and not hmac_key:
        raise MaskingConfigError(
            "operator hash needs an HMAC key (masking hmac_key, e.g. ${env:MASKING_KEY})"
        )
    if implementation is None:
        return _ENGINE_CLASS(compiled, hmac_key)  # type: ignore[no-any-return]
    if implementation == "native":
        from gateway.masking._scanner import NativeMaskingEngine

        return NativeMaskingEngine(compiled, hmac_key)
    if implementation == "reference":
        from gateway.masking.reference import ReferenceMaskingEngine

        return ReferenceMaskingEngine(compiled, hmac_key)
    raise ValueError(f"unknown implementation {implementation!r}")


class MaskingEngine:
    """Masks record values with one profile.

    `mask_values` returns a list of the same length (None stays None, unchanged values are returned as
    the same objects) and the number of findings per detector id over the whole batch.
    `scan_counts` returns the same counts without rewriting anything.
    """

    def __init__(
        self,
        profile: MaskingProfile,
        *,
        hmac_key: bytes | None,
        custom_detectors: dict[str, CustomDetector | dict[str, Any]] | None = None,
        implementation: str | None = None,
    ) -> None:
        self.compiled = compile_profile(profile, custom_detectors)
        self._impl = build_engine_impl(self.compiled, hmac_key, implementation)
        self.implementation: str = self._impl.implementation

    def mask_values(self, values: Sequence[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
        return self._impl.mask_values(values)

    def scan_counts(self, values: Sequence[bytes | None]) -> dict[str, int]:
        return self._impl.scan_counts(values)
