"""Kafka codec primitives (CRC32C, varints, record-batch v2 headers): native, or the pure-Python twin.

The rule this module keeps: callers import from here and never choose an implementation themselves.
The Cython extension `gateway.native._kafka` is used unless STREAMGATE_NO_EXTENSIONS is set to a true
value ("1", "true", "yes", "on"), in which case `gateway.native.reference` is used. If the extension
fails to import without that switch, the reference is used too, but the failure is recorded in
NATIVE_LOAD_ERROR so that the test session (tests/native/extension_check.py) and operators can see that
the gateway is running slower than it should, instead of silently doing so.

Both implementations raise the exceptions defined in `gateway.native.records`; see
`gateway.native.reference` for the exact contract (buffers, varint limits, how a scan reports legacy
message sets and trailing partial batches).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from gateway.native.records import BatchFormatError, UnsupportedMagicError

__all__ = [
    "IMPLEMENTATION",
    "NATIVE_LOAD_ERROR",
    "BatchFormatError",
    "BatchHeader",
    "UnsupportedMagicError",
    "batch_crc_ok",
    "crc32c",
    "decode_unsigned_varint",
    "decode_varint",
    "decode_varlong",
    "encode_unsigned_varint",
    "encode_varint",
    "encode_varlong",
    "extensions_disabled",
    "read_batch_header",
    "scan_batches",
]

_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def extensions_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether STREAMGATE_NO_EXTENSIONS asks for the pure-Python implementations."""
    return environ.get("STREAMGATE_NO_EXTENSIONS", "").strip().lower() in _TRUE_VALUES


def _select() -> tuple[ModuleType, str, str | None]:
    from gateway.native import reference

    if extensions_disabled():
        return reference, "reference", None
    try:
        native = importlib.import_module("gateway.native._kafka")
    except ImportError as exc:  # not built, or built for another interpreter
        return reference, "reference", f"{type(exc).__name__}: {exc}"
    return native, "native", None


_implementation, IMPLEMENTATION, NATIVE_LOAD_ERROR = _select()

if TYPE_CHECKING:
    # Type checkers see the reference signatures, which are the specification of both implementations.
    from gateway.native.reference import (
        BatchHeader,
        batch_crc_ok,
        crc32c,
        decode_unsigned_varint,
        decode_varint,
        decode_varlong,
        encode_unsigned_varint,
        encode_varint,
        encode_varlong,
        read_batch_header,
        scan_batches,
    )
else:
    BatchHeader = _implementation.BatchHeader
    batch_crc_ok = _implementation.batch_crc_ok
    crc32c = _implementation.crc32c
    decode_unsigned_varint = _implementation.decode_unsigned_varint
    decode_varint = _implementation.decode_varint
    decode_varlong = _implementation.decode_varlong
    encode_unsigned_varint = _implementation.encode_unsigned_varint
    encode_varint = _implementation.encode_varint
    encode_varlong = _implementation.encode_varlong
    read_batch_header = _implementation.read_batch_header
    scan_batches = _implementation.scan_batches
