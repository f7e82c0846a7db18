"""Skim the two hot messages without decoding them: where each partition's records are, nothing copied.

A full decode of a Fetch response or a Produce request copies every record blob into new bytes objects and
a re-encode copies them again. The gateway rarely needs that: to audit it needs each partition's topic,
index, error code and the span of its record bytes (record counts and offsets then come from the fixed-size
batch headers), and to rewrite broker addresses in Fetch v16+ it only needs to know whether the top-level
tagged fields (where NodeEndpoints live) are empty. These functions walk the wire format once, skipping
record bytes by their length prefix, and return offsets into the caller's buffer.

Layouts follow Apache Kafka's FetchResponse.json (v0-17) and ProduceRequest.json (v0-11).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from gateway.protocols.kafka.framing import MalformedFrame, NeedMoreData

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class SkimError(ValueError):
    """The message is truncated or malformed where the skim walked."""


@dataclass(slots=True)
class PartitionSpan:
    topic: str | None  # by name (Fetch < 13, Produce)
    topic_id: uuid.UUID | None  # by id (Fetch 13+)
    partition: int
    error_code: int  # 0 for produce requests
    records_start: int  # offsets into the buffer; start == end for an empty blob, -1 for null
    records_end: int
    prefix_start: int  # where the records' length prefix begins (to splice in a rewritten blob)
    error_at: int = -1  # Fetch: offset of the partition's int16 error code (patched in place to refuse it)


@dataclass(slots=True)
class FetchSkim:
    partitions: list[PartitionSpan]
    body_start: int  # where the body begins (throttle_time_ms, v1+, is the first field)
    top_level_tags_at: int  # offset of the top-level tagged-field section (flexible versions), else -1
    has_top_level_tags: bool  # Fetch v16+: NodeEndpoints (or unknown tags) present -> decode and rewrite


@dataclass(slots=True)
class ProduceSkim:
    transactional_id: str | None
    acks: int
    partitions: list[PartitionSpan]


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes | memoryview, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise SkimError(f"truncated at byte {p} (needs {n} more)")
        self.pos = p + n
        return p

    def i16(self) -> int:
        return _I16.unpack_from(self.buf, self.need(2))[0]

    def i32(self) -> int:
        return _I32.unpack_from(self.buf, self.need(4))[0]

    def skip(self, n: int) -> None:
        self.need(n)

    def uvarint(self) -> int:
        value = 0
        shift = 0
        buf = self.buf
        while True:
            if self.pos >= self.end:
                raise SkimError("truncated varint")
            b = buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise SkimError("varint longer than 5 bytes")

    def string(self, compact: bool) -> str | None:
        n = self.uvarint() - 1 if compact else self.i16()
        if n < 0:
            return None
        p = self.need(n)
        return bytes(self.buf[p : p + n]).decode("utf-8", "replace")

    def array_len(self, compact: bool) -> int:
        n = self.uvarint() - 1 if compact else self.i32()
        if n < -1:
            raise SkimError(f"negative array length {n}")
        return n

    def bytes_span(self, compact: bool) -> tuple[int, int]:
        n = self.uvarint() - 1 if compact else self.i32()
        if n < 0:
            return -1, -1
        p = self.need(n)
        return p, p + n

    def tags(self) -> int:
        """Skip a tagged-field section; return how many fields it had."""
        count = self.uvarint()
        for _ in range(count):
            self.uvarint()
            self.need(self.uvarint())
        return count


def skim_fetch_response(buf: bytes | memoryview, pos: int, end: int, version: int) -> FetchSkim:
    """Walk a Fetch response body (after the response header) from `pos` to `end`."""
    r = _Reader(buf, pos, end)
    flexible = version >= 12
    try:
        if version >= 1:
            r.skip(4)  # throttle_time_ms
        if version >= 7:
            r.skip(6)  # error_code, session_id
        partitions: list[PartitionSpan] = []
        for _ in range(max(r.array_len(flexible), 0)):
            topic: str | None = None
            topic_id: uuid.UUID | None = None
            if version >= 13:
                p = r.need(16)
                topic_id = uuid.UUID(bytes=bytes(buf[p : p + 16]))
            else:
                topic = r.string(flexible)
            for _ in range(max(r.array_len(flexible), 0)):
                p = r.need(6)
                index = _I32.unpack_from(buf, p)[0]
                error = _I16.unpack_from(buf, p + 4)[0]
                r.skip(8)  # high_watermark
                if version >= 4:
                    r.skip(8)  # last_stable_offset
                if version >= 5:
                    r.skip(8)  # log_start_offset
                if version >= 4:
                    for _ in range(max(r.array_len(flexible), 0)):  # aborted_transactions
                        r.skip(16)
                        if flexible:
                            r.tags()
                if version >= 11:
                    r.skip(4)  # preferred_read_replica
                prefix = r.pos
                start, stop = r.bytes_span(flexible)
                if flexible:
                    r.tags()  # diverging_epoch, current_leader, snapshot_id live here
                partitions.append(PartitionSpan(topic, topic_id, index, error, start, stop, prefix, p + 4))
            if flexible:
                r.tags()
        tags_at = -1
        has_tags = False
        if flexible:
            tags_at = r.pos
            has_tags = r.tags() > 0
    except (NeedMoreData, MalformedFrame, struct.error, IndexError) as exc:
        raise SkimError(f"malformed Fetch v{version} response: {exc}") from None
    return FetchSkim(partitions, pos, tags_at, has_tags)


def skim_produce_request(buf: bytes | memoryview, pos: int, end: int, version: int) -> ProduceSkim:
    """Walk a Produce request body (after the request header) from `pos` to `end`."""
    r = _Reader(buf, pos, end)
    flexible = version >= 9
    try:
        transactional_id = r.string(flexible) if version >= 3 else None
        acks = r.i16()
        r.skip(4)  # timeout_ms
        partitions: list[PartitionSpan] = []
        for _ in range(max(r.array_len(flexible), 0)):
            topic = r.string(flexible)
            for _ in range(max(r.array_len(flexible), 0)):
                index = r.i32()
                prefix = r.pos
                start, stop = r.bytes_span(flexible)
                if flexible:
                    r.tags()
                partitions.append(PartitionSpan(topic, None, index, 0, start, stop, prefix))
            if flexible:
                r.tags()
        if flexible:
            r.tags()
    except (struct.error, IndexError) as exc:
        raise SkimError(f"malformed Produce v{version} request: {exc}") from None
    return ProduceSkim(transactional_id, acks, partitions)


def splice_records(buf: bytes | memoryview, replacements: list[tuple[PartitionSpan, bytes]], flexible: bool,
                   start: int = 0, end: int | None = None, *, errors: dict[int, int] | None = None,
                   throttle: tuple[int, int] | None = None) -> bytes:
    """buf[start:end] with the record blobs of some partitions replaced (length prefixes re-encoded).

    `replacements` must be in buffer order and name non-null blobs. `errors` maps a partition's `error_at`
    offset to a new int16 error code; `throttle` = (offset, ms) sets an int32 throttle_time_ms in place.
    """
    from gateway.native import encode_unsigned_varint

    end = len(buf) if end is None else end
    if errors or throttle:
        patched = bytearray(memoryview(buf)[:end])
        for at, code in (errors or {}).items():
            _I16.pack_into(patched, at, code)
        if throttle is not None:
            _I32.pack_into(patched, throttle[0], throttle[1])
        buf = patched
    view = memoryview(buf)
    pieces: list[bytes | memoryview] = []
    last = start
    for span, blob in replacements:
        pieces.append(view[last : span.prefix_start])
        pieces.append(encode_unsigned_varint(len(blob) + 1) if flexible else _I32.pack(len(blob)))
        pieces.append(blob)
        last = span.records_end
    pieces.append(view[last:end])
    return b"".join(pieces)
