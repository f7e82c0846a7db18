"""Session-wide guard: the test run must exercise the native extension unless told otherwise.

A missing or broken build makes gateway.native fall back to the pure-Python twin, which passes every
functional test while hiding that the product would ship slow (and that the native code went untested).
tests/conftest.py calls assert_native_loaded() at session start.
"""

from __future__ import annotations

import os

_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_VALUES


def assert_native_loaded() -> None:
    """Raise RuntimeError with the load error unless the native module is in use.

    Passes without the extension when STREAMGATE_NO_EXTENSIONS=1 (the reference was asked for) or
    STREAMGATE_ALLOW_REFERENCE=1 (e.g. a platform without a C compiler).
    """
    if _env_true("STREAMGATE_NO_EXTENSIONS") or _env_true("STREAMGATE_ALLOW_REFERENCE"):
        return
    from gateway import native

    if native.IMPLEMENTATION != "native":
        raise RuntimeError(
            "gateway.native fell back to the pure-Python reference: "
            f"{native.NATIVE_LOAD_ERROR or 'no load error recorded'}. Build the extension with "
            "`python setup.py build_ext --inplace`, or set STREAMGATE_ALLOW_REFERENCE=1 to test without it."
        )
    from gateway.masking import engine as masking_engine

    if masking_engine.IMPLEMENTATION != "native":
        raise RuntimeError(
            "the masking engine fell back to the pure-Python reference: "
            f"{masking_engine.NATIVE_LOAD_ERROR or 'no load error recorded'}. Build the extensions with "
            "`python setup.py build_ext --inplace`, or set STREAMGATE_ALLOW_REFERENCE=1 to test without them."
        )
