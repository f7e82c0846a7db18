"""Kafka wire primitives shared by the generated message codecs.

The modules in ``generated/`` are straight-line code emitted by ``tools/gen_kafka_codecs.py``; they inline
fixed-width fields as precompiled ``struct.Struct`` unpacks and call the helpers here for everything of
variable length (strings, bytes, arrays, varints, tagged-field sections).

Rules this module keeps:
- Readers take ``(buf, pos)`` and return ``(value, new_pos)``; they never read past ``len(buf)`` and raise
  ``CodecError`` (or let ``struct.error`` / ``IndexError`` escape, which ``codec.py`` converts) on truncated
  or impossible input. Lengths are checked against the bytes actually left before anything is allocated.
- Writers append ``bytes`` parts to a list (joined once by the caller) and return nothing.
- Nothing here knows about a particular API; record batches are treated as opaque bytes.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple
from uuid import UUID

Buffer = bytes | bytearray | memoryview


class CodecError(ValueError):
    """Truncated, malformed or unencodable Kafka message; the message names API, version and field."""


class FieldInfo(NamedTuple):
    """Compact description of one generated struct field, emitted per class as ``Class.FIELDS``.

    ``versions`` / ``nullable_versions`` / ``tagged_versions`` are inclusive ``(low, high)`` version ranges
    (``high`` is ``VERSION_MAX`` for open ranges) or ``None`` when empty. ``kind`` is the Kafka spec type of
    the value or of the array element (``"int32"``, ``"string"``, ...), ``"struct"`` for nested structs,
    whose class is ``struct_class``. Defaults are those of a fresh instance (``Class().name``).
    """

    name: str
    kind: str
    is_array: bool
    struct_class: type | None
    versions: tuple[int, int] | None
    nullable_versions: tuple[int, int] | None
    tag: int | None
    tagged_versions: tuple[int, int] | None
    ignorable: bool


VERSION_MAX = 0x7FFF

ZERO_UUID = UUID(int=0)

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT16_MAX = 0xFFFF

# Topic ids repeat in nearly every Metadata/Fetch exchange, and building a UUID object costs several times
# more than a dict hit; the cache is bounded and simply emptied when full so hostile input cannot grow it.
_UUID_CACHE: dict[bytes, UUID] = {}
_UUID_CACHE_LIMIT = 8192


def _truncated(need: int, pos: int, size: int) -> CodecError:
    return CodecError(f"truncated input: need {need} bytes at offset {pos}, only {max(size - pos, 0)} left")


def null_error() -> CodecError:
    return CodecError("null value for a non-nullable field")


def absent_error() -> CodecError:
    return CodecError("field does not exist in this version, is not ignorable and is not at its default")


# ---------------------------------------------------------------------------------------------- readers


def read_uvarint(buf: Buffer, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 varint as Kafka uses for compact lengths and tags (at most 5 bytes, 32 bits)."""
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise CodecError("unsigned varint longer than 5 bytes")


def read_uuid(buf: Buffer, pos: int) -> tuple[UUID, int]:
    end = pos + 16
    raw = bytes(buf[pos:end])
    if len(raw) != 16:
        raise _truncated(16, pos, len(buf))
    return uuid_from_bytes(raw), end


def uuid_from_bytes(raw: bytes) -> UUID:
    cached = _UUID_CACHE.get(raw)
    if cached is None:
        if len(_UUID_CACHE) >= _UUID_CACHE_LIMIT:
            _UUID_CACHE.clear()
        cached = _UUID_CACHE[raw] = UUID(bytes=raw)
    return cached


def _raw(buf: Buffer, pos: int, end: int) -> bytes:
    if end > len(buf):
        raise _truncated(end - pos, pos, len(buf))
    return bytes(buf[pos:end])


# The string readers repeat their few lines instead of sharing a helper: one Python call less per string
# matters on Metadata responses. str(..., "utf-8") accepts bytes and memoryview slices alike.


def read_string(buf: Buffer, pos: int) -> tuple[str, int]:
    (length,) = _INT16.unpack_from(buf, pos)
    if length < 0:
        raise null_error()
    pos += 2
    end = pos + length
    if end > len(buf):
        raise _truncated(length, pos, len(buf))
    return str(buf[pos:end], "utf-8"), end


def read_nullable_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    (length,) = _INT16.unpack_from(buf, pos)
    pos += 2
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise _truncated(length, pos, len(buf))
    return str(buf[pos:end], "utf-8"), end


def read_compact_string(buf: Buffer, pos: int) -> tuple[str, int]:
    length = buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = read_uvarint(buf, pos)
    if length == 0:
        raise null_error()
    end = pos + length - 1
    if end > len(buf):
        raise _truncated(length - 1, pos, len(buf))
    return str(buf[pos:end], "utf-8"), end


def read_compact_nullable_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    length = buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = read_uvarint(buf, pos)
    if length == 0:
        return None, pos
    end = pos + length - 1
    if end > len(buf):
        raise _truncated(length - 1, pos, len(buf))
    return str(buf[pos:end], "utf-8"), end


def read_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    (length,) = _INT32.unpack_from(buf, pos)
    if length < 0:
        raise null_error()
    end = pos + 4 + length
    return _raw(buf, pos + 4, end), end


def read_nullable_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    (length,) = _INT32.unpack_from(buf, pos)
    if length < 0:
        return None, pos + 4
    end = pos + 4 + length
    return _raw(buf, pos + 4, end), end


def read_compact_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    length, pos = read_uvarint(buf, pos)
    if length == 0:
        raise null_error()
    end = pos + length - 1
    return _raw(buf, pos, end), end


def read_compact_nullable_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    length, pos = read_uvarint(buf, pos)
    if length == 0:
        return None, pos
    end = pos + length - 1
    return _raw(buf, pos, end), end


def read_array_length(buf: Buffer, pos: int, min_item_size: int) -> tuple[int, int]:
    """int32 element count (-1 = null), refused when the remaining bytes cannot hold that many items."""
    (count,) = _INT32.unpack_from(buf, pos)
    pos += 4
    if count * min_item_size > len(buf) - pos:
        raise CodecError(f"array of {count} items cannot fit in the {len(buf) - pos} bytes left")
    return count, pos


def read_compact_array_length(buf: Buffer, pos: int, min_item_size: int) -> tuple[int, int]:
    """uvarint element count + 1 (0 = null, returned as -1), with the same plausibility check."""
    count = buf[pos]
    if count < 0x80:
        pos += 1
    else:
        count, pos = read_uvarint(buf, pos)
    count -= 1
    if count * min_item_size > len(buf) - pos:
        raise CodecError(f"array of {count} items cannot fit in the {len(buf) - pos} bytes left")
    return count, pos


# Precompiled formats for the array sizes that actually occur (replica lists, partition lists); larger
# arrays compile their format on the fly after the length has been checked against the buffer.
_ARRAY_STRUCTS_CACHED = 64
_ARRAY_STRUCTS: dict[str, list[struct.Struct]] = {
    code: [struct.Struct(f">{count}{code}") for count in range(_ARRAY_STRUCTS_CACHED)] for code in "?bhHiIqd"
}


def _array_struct(code: str, count: int) -> struct.Struct:
    if count < _ARRAY_STRUCTS_CACHED:
        return _ARRAY_STRUCTS[code][count]
    return struct.Struct(f">{count}{code}")


def read_fixed_array(buf: Buffer, pos: int, code: str, size: int) -> tuple[list[Any] | None, int]:
    """int32-counted array of fixed-width values (``code`` is a struct format letter); None when null."""
    (count,) = _INT32.unpack_from(buf, pos)
    pos += 4
    if count < 0:
        return None, pos
    if count * size > len(buf) - pos:
        raise _truncated(count * size, pos, len(buf))
    return list(_array_struct(code, count).unpack_from(buf, pos)), pos + count * size


def read_compact_fixed_array(buf: Buffer, pos: int, code: str, size: int) -> tuple[list[Any] | None, int]:
    """uvarint-counted (count + 1, 0 = null) array of fixed-width values; None when null."""
    count = buf[pos]
    if count < 0x80:
        pos += 1
    else:
        count, pos = read_uvarint(buf, pos)
    if count == 0:
        return None, pos
    count -= 1
    if count * size > len(buf) - pos:
        raise _truncated(count * size, pos, len(buf))
    return list(_array_struct(code, count).unpack_from(buf, pos)), pos + count * size


def read_unknown_tagged_fields(buf: Buffer, pos: int) -> tuple[dict[int, bytes], int]:
    """A tagged-field section of a struct with no known tags in this version: keep every field raw."""
    count, pos = read_uvarint(buf, pos)
    unknown: dict[int, bytes] = {}
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        end = pos + size
        unknown[tag] = _raw(buf, pos, end)
        pos = end
    return unknown, pos


def read_tag_header(buf: Buffer, pos: int) -> tuple[int, int, int]:
    """One tagged field's ``(tag, end_of_value, value_pos)``; the caller decodes or skips the value."""
    tag, pos = read_uvarint(buf, pos)
    size, pos = read_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise _truncated(size, pos, len(buf))
    return tag, end, pos


def raw_slice(buf: Buffer, pos: int, end: int) -> bytes:
    return _raw(buf, pos, end)


def check_tagged_size(pos: int, end: int, tag: int) -> None:
    if pos != end:
        raise CodecError(f"tagged field {tag} declared {end} but its value ended at {pos}")


# ---------------------------------------------------------------------------------------------- writers
# Writers append bytes parts to a list that the caller joins once: large record blobs are then copied a
# single time, into the final message.

_SMALL_UVARINTS = tuple(bytes((i,)) for i in range(0x80))
_NULL_INT16 = b"\xff\xff"
_NULL_INT32 = b"\xff\xff\xff\xff"
_ZERO = b"\x00"


def uvarint_bytes(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_UVARINTS[value]
    if value < 0 or value > 0xFFFFFFFF:
        raise CodecError(f"{value} does not fit in an unsigned varint")
    parts = bytearray()
    while value >= 0x80:
        parts.append((value & 0x7F) | 0x80)
        value >>= 7
    parts.append(value)
    return bytes(parts)


def write_uvarint(out: list[bytes], value: int) -> None:
    out.append(_SMALL_UVARINTS[value] if 0 <= value < 0x80 else uvarint_bytes(value))


def write_string(out: list[bytes], value: str | None) -> None:
    # None is accepted and refused here: fields nullable in other versions are typed ``| None``.
    if value is None:
        raise null_error()
    data = value.encode()
    if len(data) > 0x7FFF:
        raise CodecError(f"string of {len(data)} bytes is longer than an int16 length allows")
    out.append(_INT16.pack(len(data)))
    out.append(data)


def write_nullable_string(out: list[bytes], value: str | None) -> None:
    if value is None:
        out.append(_NULL_INT16)
    else:
        write_string(out, value)


def write_compact_string(out: list[bytes], value: str | None) -> None:
    if value is None:
        raise null_error()
    data = value.encode()
    length = len(data) + 1
    out.append(_SMALL_UVARINTS[length] if length < 0x80 else uvarint_bytes(length))
    out.append(data)


def write_compact_nullable_string(out: list[bytes], value: str | None) -> None:
    if value is None:
        out.append(_ZERO)
    else:
        write_compact_string(out, value)


def write_bytes(out: list[bytes], value: bytes | None) -> None:
    if value is None:
        raise null_error()
    out.append(_INT32.pack(len(value)))
    out.append(value)


def write_nullable_bytes(out: list[bytes], value: bytes | None) -> None:
    if value is None:
        out.append(_NULL_INT32)
    else:
        write_bytes(out, value)


def write_compact_bytes(out: list[bytes], value: bytes | None) -> None:
    if value is None:
        raise null_error()
    length = len(value) + 1
    out.append(_SMALL_UVARINTS[length] if length < 0x80 else uvarint_bytes(length))
    out.append(value)


def write_compact_nullable_bytes(out: list[bytes], value: bytes | None) -> None:
    if value is None:
        out.append(_ZERO)
    else:
        write_compact_bytes(out, value)


def write_array_length(out: list[bytes], items: list[Any] | None) -> None:
    out.append(_NULL_INT32 if items is None else _INT32.pack(len(items)))


def write_compact_array_length(out: list[bytes], items: list[Any] | None) -> None:
    if items is None:
        out.append(_ZERO)
        return
    length = len(items) + 1
    out.append(_SMALL_UVARINTS[length] if length < 0x80 else uvarint_bytes(length))


def write_fixed_array(out: list[bytes], items: list[Any] | None, code: str) -> None:
    if items is None:
        out.append(_NULL_INT32)
        return
    out.append(_INT32.pack(len(items)))
    out.append(_array_struct(code, len(items)).pack(*items))


def write_compact_fixed_array(out: list[bytes], items: list[Any] | None, code: str) -> None:
    if items is None:
        out.append(_ZERO)
        return
    length = len(items) + 1
    out.append(_SMALL_UVARINTS[length] if length < 0x80 else uvarint_bytes(length))
    out.append(_array_struct(code, len(items)).pack(*items))


def write_uuid(out: list[bytes], value: UUID) -> None:
    out.append(value.bytes)


def write_tagged_fields(
    out: list[bytes], known: list[tuple[int, list[bytes]]], unknown: dict[int, bytes]
) -> None:
    """Tagged-field section: known fields (already encoded) and preserved unknown ones, ascending by tag."""
    fields = [(tag, b"".join(parts)) for tag, parts in known]
    if unknown:
        known_tags = {tag for tag, _ in known}
        for tag, data in unknown.items():
            if not isinstance(tag, int) or tag < 0:
                raise CodecError(f"invalid tag {tag!r} in unknown_tagged_fields")
            if tag in known_tags:
                raise CodecError(f"unknown tagged field {tag} collides with a known tagged field")
            fields.append((tag, bytes(data)))
        fields.sort(key=_tag_of)
    write_uvarint(out, len(fields))
    for tag, data in fields:
        write_uvarint(out, tag)
        write_uvarint(out, len(data))
        out.append(data)


def _tag_of(item: tuple[int, bytes]) -> int:
    return item[0]
