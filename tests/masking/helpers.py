"""Shared pieces of the masking tests: both engine implementations, built the same way."""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway.masking import MaskingEngine, MaskingProfile

ALL_DETECTORS = [
    "credit_card",
    "us_ssn",
    "iban",
    "email",
    "phone",
    "ip_address",
    "aws_access_key",
    "private_key",
    "jwt",
    "generic_secret",
]
KEY = b"test-hmac-key"
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def native_available() -> bool:
    try:
        from gateway.masking import _scanner  # noqa: F401
    except ImportError:
        from tests.native.extension_check import assert_native_loaded

        assert_native_loaded()  # raises unless the reference was explicitly allowed
        return False
    return True


IMPLS = ["native", "reference"] if native_available() else ["reference"]
BOTH = pytest.mark.parametrize("impl", IMPLS)


def engine(
    impl: str,
    detectors: list[str] | None = None,
    *,
    fields: dict[str, Any] | None = None,
    operator: Any = "redact",
    custom: dict[str, Any] | None = None,
    key: bytes | None = KEY,
) -> MaskingEngine:
    profile = MaskingProfile(detectors=list(detectors or []), fields=dict(fields or {}), operator=operator)
    return MaskingEngine(profile, hmac_key=key, custom_detectors=custom, implementation=impl)


def mask_one(impl: str, value: bytes, detectors: list[str], **kw: Any) -> tuple[bytes | None, dict[str, int]]:
    out, counts = engine(impl, detectors, **kw).mask_values([value])
    return out[0], counts
