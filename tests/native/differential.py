"""Shared pieces of the native-vs-reference tests: the two implementations and an outcome comparator."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

from gateway.native import reference
from gateway.native.records import BATCH_HEADER_FIELDS, BatchFormatError, UnsupportedMagicError
from tests.native.extension_check import assert_native_loaded


def load_native() -> types.ModuleType:
    """The compiled module; without it these tests cannot compare anything, so say why they stop."""
    try:
        from gateway.native import _kafka
    except ImportError as exc:
        assert_native_loaded()  # raises unless the reference was explicitly allowed
        pytest.skip(
            f"native extension not built and the reference was allowed: {exc}", allow_module_level=True
        )
    return _kafka


native = load_native()
IMPLEMENTATIONS = pytest.mark.parametrize("impl", [native, reference], ids=["native", "reference"])


def normalise(value: Any) -> Any:
    """A comparable form of a result: headers become field tuples, scalars keep their exact type."""
    if isinstance(value, native.BatchHeader | reference.BatchHeader):
        return ("BatchHeader", *(getattr(value, name) for name in BATCH_HEADER_FIELDS))
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, tuple):
        return tuple(normalise(item) for item in value)
    return (type(value), value)


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What calling `function` did: its normalised result, or the exception with everything it carries."""
    try:
        result = function(*args, **kwargs)
    except UnsupportedMagicError as exc:
        return ("raised", type(exc), str(exc), exc.offset, exc.magic, normalise(exc.headers))
    except BatchFormatError as exc:
        return ("raised", type(exc), str(exc), exc.offset)
    except ValueError as exc:
        return ("raised", type(exc), str(exc))
    except (TypeError, BufferError, OverflowError) as exc:
        # raised by CPython's and Cython's argument handling, whose wording differs: compare the type
        return ("raised", type(exc))
    return ("returned", normalise(result))


def same_outcome(name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """Call `name` in both implementations, assert identical outcomes, and return it."""
    from_native = outcome(getattr(native, name), *args, **kwargs)
    from_reference = outcome(getattr(reference, name), *args, **kwargs)
    assert from_native == from_reference, f"{name} differs"
    return from_native
