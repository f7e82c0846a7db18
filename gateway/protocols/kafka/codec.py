"""Public face of the generated Kafka message codecs: look up an API by key and version, decode, encode.

The message classes and their straight-line codecs live in ``generated/`` (one module per API, written by
``tools/gen_kafka_codecs.py``); this module only imports the small ``index`` and ``headers`` modules and
loads an API's module the first time that API is used, so importing it stays cheap.

Rules it keeps:
- Bodies only: ``decode_request``/``decode_response`` start at the first byte after the header and return
  ``(message, offset just past it)``; header parsing has its own helpers.
- Header versions follow the spec's flexibleVersions (request header v2 / response header v1 for flexible
  versions, v1 / v0 otherwise), with Kafka's two fixed exceptions: ApiVersions responses always use
  response header v0, and ControlledShutdown v0 requests use request header v0. Versions above an API's
  valid range still get a header version, so the header of an unsupported request can be read and
  answered with UNSUPPORTED_VERSION.
- Every failure is a ``CodecError`` naming the message, the version and the field path.
"""

from __future__ import annotations

import importlib
import linecache
import struct
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any

import msgspec

from gateway.protocols.kafka.generated import headers as _headers
from gateway.protocols.kafka.generated.index import (
    API_MODULES,
    API_NAMES,
    REQUEST_FLEXIBLE_VERSIONS,
    REQUEST_VALID_VERSIONS,
    RESPONSE_FLEXIBLE_VERSIONS,
    RESPONSE_VALID_VERSIONS,
)
from gateway.protocols.kafka.primitives import Buffer, CodecError, FieldInfo

__all__ = [
    "API_NAMES",
    "RESPONSE_VALID_VERSIONS",
    "VALID_VERSIONS",
    "CodecError",
    "FieldInfo",
    "RequestHeader",
    "ResponseHeader",
    "decode_data",
    "decode_request",
    "decode_request_header",
    "decode_response",
    "decode_response_header",
    "encode_data",
    "encode_request",
    "encode_request_header",
    "encode_response",
    "encode_response_header",
    "request_class",
    "request_header_version",
    "response_class",
    "response_header_version",
]

VALID_VERSIONS: dict[int, tuple[int, int]] = REQUEST_VALID_VERSIONS

RequestHeader = _headers.RequestHeader
ResponseHeader = _headers.ResponseHeader

# Bodies are returned as ``Any``: callers know from the api key which generated class they hold (see
# ``request_class``/``response_class``) and read its attributes directly.

API_VERSIONS_KEY = 18
CONTROLLED_SHUTDOWN_KEY = 7

Decoder = Callable[[Buffer, int], tuple[Any, int]]
Encoder = Callable[[Any, list[bytes]], None]

_GENERATED_PACKAGE = f"{__package__}.generated."
_HEADER_PREFIX = struct.Struct(">hh")
_CORRELATION_ID = struct.Struct(">i")

_DECODE_FAILURES = (struct.error, IndexError, ValueError, OverflowError)
_ENCODE_FAILURES = (struct.error, TypeError, AttributeError, ValueError, OverflowError)

# api_key -> {version -> function}; filled the first time an API is used.
_REQUEST_DECODERS: dict[int, dict[int, Decoder]] = {}
_REQUEST_ENCODERS: dict[int, dict[int, Encoder]] = {}
_RESPONSE_DECODERS: dict[int, dict[int, Decoder]] = {}
_RESPONSE_ENCODERS: dict[int, dict[int, Encoder]] = {}
_REQUEST_CLASSES: dict[int, type[msgspec.Struct]] = {}
_RESPONSE_CLASSES: dict[int, type[msgspec.Struct]] = {}


# ------------------------------------------------------------------------------------------ headers


def request_header_version(api_key: int, api_version: int) -> int:
    if api_key not in API_NAMES:
        raise CodecError(f"unknown api key {api_key}")
    if api_key == CONTROLLED_SHUTDOWN_KEY and api_version == 0:
        return 0
    flexible = REQUEST_FLEXIBLE_VERSIONS[api_key]
    return 2 if flexible is not None and flexible[0] <= api_version <= flexible[1] else 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key not in API_NAMES:
        raise CodecError(f"unknown api key {api_key}")
    if api_key == API_VERSIONS_KEY:
        # Clients read the ApiVersions response before they know which versions the broker speaks.
        return 0
    flexible = RESPONSE_FLEXIBLE_VERSIONS[api_key]
    return 1 if flexible is not None and flexible[0] <= api_version <= flexible[1] else 0


def decode_request_header(buf: Buffer, offset: int = 0) -> tuple[RequestHeader, int]:
    """Parse a request header; returns ``(RequestHeader, offset of the body)``.

    Raises ``CodecError`` for unknown API keys: the body layout (and whether the header has tagged
    fields) is then unknowable. The correlation id always sits at bytes 4..8 of the header for callers that
    still want to answer.
    """
    try:
        api_key, api_version = _HEADER_PREFIX.unpack_from(buf, offset)
    except struct.error as exc:
        raise CodecError(f"truncated request header: {exc}") from exc
    header_version = request_header_version(api_key, api_version)
    return _decode(
        _headers.REQUEST_HEADER_DECODERS[header_version], buf, offset, "RequestHeader", header_version
    )


def encode_request_header(header: RequestHeader, header_version: int) -> bytes:
    encoder = _headers.REQUEST_HEADER_ENCODERS.get(header_version)
    if encoder is None:
        raise CodecError(f"unknown request header version {header_version}")
    return _encode(encoder, header, "RequestHeader", header_version)


def decode_response_header(buf: Buffer, offset: int, header_version: int) -> tuple[ResponseHeader, int]:
    decoder = _headers.RESPONSE_HEADER_DECODERS.get(header_version)
    if decoder is None:
        raise CodecError(f"unknown response header version {header_version}")
    return _decode(decoder, buf, offset, "ResponseHeader", header_version)


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    if header_version == 0:
        return _CORRELATION_ID.pack(correlation_id)
    if header_version == 1:
        return _CORRELATION_ID.pack(correlation_id) + b"\x00"  # empty tagged-field section
    raise CodecError(f"unknown response header version {header_version}")


# ------------------------------------------------------------------------------------------ bodies


def decode_request(api_key: int, api_version: int, buf: Buffer, offset: int = 0) -> tuple[Any, int]:
    try:
        decoder = _REQUEST_DECODERS[api_key][api_version]
    except KeyError:
        decoder = _lookup(_REQUEST_DECODERS, "REQUEST_DECODERS", api_key, api_version, "Request")
    return _decode(decoder, buf, offset, _message_name(api_key, "Request"), api_version)


def decode_response(api_key: int, api_version: int, buf: Buffer, offset: int = 0) -> tuple[Any, int]:
    try:
        decoder = _RESPONSE_DECODERS[api_key][api_version]
    except KeyError:
        decoder = _lookup(_RESPONSE_DECODERS, "RESPONSE_DECODERS", api_key, api_version, "Response")
    return _decode(decoder, buf, offset, _message_name(api_key, "Response"), api_version)


def encode_request(api_key: int, api_version: int, msg: msgspec.Struct) -> bytes:
    try:
        encoder = _REQUEST_ENCODERS[api_key][api_version]
    except KeyError:
        encoder = _lookup(_REQUEST_ENCODERS, "REQUEST_ENCODERS", api_key, api_version, "Request")
    expected = request_class(api_key)
    if type(msg) is not expected:
        raise CodecError(f"expected a {expected.__name__}, got {type(msg).__name__}")
    return _encode(encoder, msg, expected.__name__, api_version)


def encode_response(api_key: int, api_version: int, msg: msgspec.Struct) -> bytes:
    try:
        encoder = _RESPONSE_ENCODERS[api_key][api_version]
    except KeyError:
        encoder = _lookup(_RESPONSE_ENCODERS, "RESPONSE_ENCODERS", api_key, api_version, "Response")
    expected = response_class(api_key)
    if type(msg) is not expected:
        raise CodecError(f"expected a {expected.__name__}, got {type(msg).__name__}")
    return _encode(encoder, msg, expected.__name__, api_version)


def request_class(api_key: int) -> type[msgspec.Struct]:
    cls = _REQUEST_CLASSES.get(api_key)
    if cls is None:
        cls = _REQUEST_CLASSES[api_key] = _api_module(api_key).REQUEST_CLASS
    return cls


def response_class(api_key: int) -> type[msgspec.Struct]:
    cls = _RESPONSE_CLASSES.get(api_key)
    if cls is None:
        cls = _RESPONSE_CLASSES[api_key] = _api_module(api_key).RESPONSE_CLASS
    return cls


# ---------------------------------------------------------------------------- non-API data messages


def decode_data(name: str, version: int, buf: Buffer, offset: int = 0) -> tuple[Any, int]:
    """Decode a "data" message such as ``ConsumerProtocolAssignment`` (these carry no header)."""
    data = _data_module()
    decoder = data.DATA_DECODERS.get(name, {}).get(version)
    if decoder is None:
        raise CodecError(f"no codec for data message {name} v{version}")
    return _decode(decoder, buf, offset, name, version)


def encode_data(name: str, version: int, msg: msgspec.Struct) -> bytes:
    data = _data_module()
    encoder = data.DATA_ENCODERS.get(name, {}).get(version)
    if encoder is None:
        raise CodecError(f"no codec for data message {name} v{version}")
    if type(msg) is not data.DATA_CLASSES[name]:
        raise CodecError(f"expected a {name}, got {type(msg).__name__}")
    return _encode(encoder, msg, name, version)


def _data_module() -> ModuleType:
    return importlib.import_module(f"{__package__}.generated.data")


# ------------------------------------------------------------------------------------------ plumbing


def _api_module(api_key: int) -> ModuleType:
    module_name = API_MODULES.get(api_key)
    if module_name is None:
        raise CodecError(f"unknown api key {api_key}")
    return importlib.import_module(f"{__package__}.generated.{module_name}")


def _message_name(api_key: int, suffix: str) -> str:
    return f"{API_NAMES.get(api_key, f'api key {api_key} ')}{suffix}"


def _lookup(cache: dict[int, dict[int, Any]], table: str, api_key: int, version: int, suffix: str) -> Any:
    functions = cache.get(api_key)
    if functions is None:
        functions = cache[api_key] = dict(getattr(_api_module(api_key), table))
    function = functions.get(version)
    if function is None:
        valid = (REQUEST_VALID_VERSIONS if suffix == "Request" else RESPONSE_VALID_VERSIONS)[api_key]
        name = _message_name(api_key, suffix)
        raise CodecError(f"{name} v{version} is not supported (valid versions {valid[0]}-{valid[1]})")
    return function


def _decode(decoder: Decoder, buf: Buffer, offset: int, name: str, version: int) -> tuple[Any, int]:
    try:
        return decoder(buf, offset)
    except _DECODE_FAILURES as exc:
        raise _codec_error("decode", name, version, exc) from exc


def _encode(encoder: Encoder, msg: Any, name: str, version: int) -> bytes:
    out: list[bytes] = []
    try:
        encoder(msg, out)
    except _ENCODE_FAILURES as exc:
        raise _codec_error("encode", name, version, exc) from exc
    return b"".join(out)


def _codec_error(action: str, name: str, version: int, exc: BaseException) -> CodecError:
    if isinstance(exc, IndexError) or (isinstance(exc, struct.error) and "buffer" in str(exc)):
        reason = f"truncated input ({exc})"
    else:
        reason = str(exc) or type(exc).__name__
    path = _field_path(exc.__traceback__)
    where = f" at field {path}" if path else ""
    return CodecError(f"cannot {action} {name} v{version}{where}: {reason}")


def _field_path(tb: TracebackType | None) -> str:
    """Field path of a failure, read from the ``# field:`` comments on the generated lines it went through."""
    parts: list[str] = []
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith(_GENERATED_PACKAGE):
            line = linecache.getline(frame.f_code.co_filename, tb.tb_lineno)
            marker = line.rpartition("# field: ")[2].strip()
            if marker:
                parts.append(f"{{{marker}}}" if "," in marker else marker)
        tb = tb.tb_next
    return ".".join(parts)
