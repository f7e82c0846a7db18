"""Audit events and the hash chain that makes an audit file tamper-evident (sans-IO).

What this module is for:
- `AuditEvent` is the one record every protocol emits: who (principal), from where (client), what (API,
  resource, offsets, records, bytes), outcome (decision, rule, reason, masking counts) and, for a session's
  close, its totals. Fields that do not apply stay unset and are omitted from the JSON.
- `encode_event` is the only way an event becomes bytes, and it keeps one rule: an audit event never carries
  a secret. It refuses values under secret-looking names (password, secret, token, credential, api key,
  private key, authorization, cookie) and anything shaped like a JWT, raising `AuditSecretError` (which names
  the field, never the value). Record values never enter events: the model has no field for them.
- `ChainWriter` turns encoded events into JSONL lines that each carry `seq` and `prev` (the hex SHA-256 of
  the previous line's bytes without its newline; `GENESIS` for the first line of a chain). `ChainVerifier` /
  `verify_lines` replay a chain and name every line that was edited, dropped, inserted or reordered.

A chain may span rotated files: the writer links the first line of a new file to the last line of the
previous one, and starts every new file with an `audit_file_rotated` record whose `details.retained_from_seq`
says from which sequence number older lines are still expected to exist (older files are deleted by rotation
on purpose). The verifier uses the latest such record to tell "rotated away by design" from "file missing".

What a bare hash chain cannot prove (documented, not hidden): whoever can rewrite a file can recompute every
hash after the line they changed, and removing lines from the *end* of the newest file leaves a valid chain.
`VerifyResult.heads` reports each chain's last `(seq, hash)` so it can be compared with a copy kept elsewhere
(another sink receives the same events), and `ChainVerifier(anchors=...)` checks recorded heads.

Nothing here touches files, sockets, clocks or asyncio; `gateway/audit/` does the I/O.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import msgspec

# --------------------------------------------------------------------------------------------------------
# the event model

Decision = Literal["allowed", "denied", "masked", "held", "approved", "throttled", "blocked", "error"]

# Event kinds used by the gateway itself; `kind` is a free string so protocols can add their own.
KIND_DECISION: Final = "decision"
KIND_SESSION_OPEN: Final = "session_open"
KIND_SESSION_CLOSE: Final = "session_close"
KIND_AUTH: Final = "auth"
KIND_PROTOCOL_ERROR: Final = "protocol_error"
KIND_SPOOL_OVERFLOW: Final = "audit_spool_overflow"
KIND_EVENTS_DROPPED: Final = "audit_events_dropped"
KIND_SINK_STATE: Final = "audit_sink_state"
KIND_FILE_ROTATED: Final = "audit_file_rotated"


class Principal(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The authenticated identity: token subject, email when the token has one, IdP groups."""

    sub: str
    email: str | None = None
    groups: tuple[str, ...] = ()


class ClientInfo(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Where the request came from: peer address ("host:port") and the protocol's client id."""

    address: str | None = None
    client_id: str | None = None


class Resource(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """What was acted on. `topic` holds the topic / group / transactional id name; `kind` says which when it
    is not a topic (the enforcement `Resource.kind`)."""

    topic: str | None = None
    partition: int | None = None
    kind: str | None = None


class Offsets(msgspec.Struct, kw_only=True, gc=False):
    """First and last offset of the records produced or delivered (inclusive)."""

    first: int
    last: int


class SessionTotals(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Counters of one connection, reported in its `session_close` event."""

    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    records_in: int = 0
    records_out: int = 0
    duration_ms: int = 0
    denied: int = 0


DetailValue = str | int | float | bool | None


class AuditEvent(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One audit record. `ts` is RFC 3339 UTC with milliseconds (the dispatcher stamps it when empty) and
    `worker` is stamped by the dispatcher when None. `details` carries kind-specific extras (scalars only)."""

    ts: str = ""
    kind: str
    principal: Principal | None = None
    client: ClientInfo | None = None
    connection_id: str | None = None
    worker: int | str | None = None
    protocol: str | None = None
    api: str | None = None
    api_version: int | None = None
    resource: Resource | None = None
    offsets: Offsets | None = None
    record_count: int | None = None
    bytes: int | None = None
    decision: Decision | None = None
    rule: str | None = None
    reason: str | None = None
    approved_by: str | None = None
    masked_counts: dict[str, int] | None = None
    totals: SessionTotals | None = None
    details: dict[str, DetailValue] | None = None


_second_prefix: tuple[int, str] = (-1, "")  # most events share their second; a tuple swaps atomically


def rfc3339_ms(epoch_seconds: float) -> str:
    """Format a UNIX time as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`."""
    global _second_prefix
    whole = int(epoch_seconds)
    millis = int((epoch_seconds - whole) * 1000)
    second, prefix = _second_prefix
    if second != whole:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_prefix = (whole, prefix)
    return f"{prefix}.{millis:03d}Z"


# --------------------------------------------------------------------------------------------------------
# encoding and the secret guard


class AuditSecretError(ValueError):
    """An event was about to carry something that looks like a secret; the message names the field only."""


_SECRET_NAME = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|credential|api[_-]?key|private[_-]?key|authori[sz]ation|cookie",
    re.IGNORECASE,
)
# Compact JWS (an OIDC access/ID token): base64url JSON header and payload, both starting with `{"`.
_JWT_SHAPE = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AuditEvent)
_checked_types: set[type] = set()


def is_secret_name(name: str) -> bool:
    """True when a field or key name looks like it holds a credential."""
    return _SECRET_NAME.search(name) is not None


def _check_struct_type(cls: type, path: str) -> None:
    """Refuse Struct types (e.g. an AuditEvent subclass) that declare secret-looking fields; cached per type."""
    if cls in _checked_types:
        return
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        if is_secret_name(name):
            raise AuditSecretError(
                f"audit event field {path}{name!s} looks like a secret; refusing to encode it"
            )
    _checked_types.add(cls)


def _check_mapping(values: Mapping[str, Any], path: str) -> None:
    for key, value in values.items():
        if is_secret_name(str(key)) and value is not None:
            raise AuditSecretError(
                f"audit event field {path}{key} looks like a secret; refusing to encode it"
            )
        if isinstance(value, Mapping):
            _check_mapping(value, f"{path}{key}.")


def check_no_secrets(event: AuditEvent) -> None:
    """The structural half of the guard: field and `details` key names (masked_counts keys are detector
    names with counts, not fields, so they are exempt)."""
    _check_struct_type(type(event), "")
    if type(event) is not AuditEvent:
        for name in event.__struct_fields__:
            value = getattr(event, name)
            if isinstance(value, msgspec.Struct):
                _check_struct_type(type(value), f"{name}.")
    if event.details:
        _check_mapping(event.details, "details.")


def encode_event(event: AuditEvent) -> bytes:
    """Encode an event to compact JSON, enforcing the no-secrets rule (raises AuditSecretError)."""
    check_no_secrets(event)
    data = _encoder.encode(event)
    if b"eyJ" in data and _JWT_SHAPE.search(data):
        raise AuditSecretError(
            f"audit event {event.kind!r} contains a value shaped like a JWT; refusing to encode it"
        )
    return data


def decode_event(data: bytes) -> AuditEvent:
    """Decode an event (or a chain line: `seq`/`prev` are ignored)."""
    return _decoder.decode(data)


# Assert once at import that the model itself is clean (a future field named `token` fails every import).
_check_struct_type(AuditEvent, "")
for _nested in (Principal, ClientInfo, Resource, Offsets, SessionTotals):
    _check_struct_type(_nested, "")


# --------------------------------------------------------------------------------------------------------
# the hash chain

GENESIS: Final = "0" * 64


def line_hash(line: bytes) -> str:
    """The hash a following line stores in `prev`: SHA-256 of the line's bytes without the trailing newline."""
    if line.endswith(b"\n"):
        line = line[:-1]
    return hashlib.sha256(line).hexdigest()


class ChainWriter:
    """Produces chained JSONL lines: `{"seq":N,"prev":"<hex>",<event fields>}\\n`.

    The writer only computes lines; the caller writes them in the order they were produced. `head` is the
    `(seq, hash)` of the last line produced (seq 0 and GENESIS before the first).
    """

    __slots__ = ("_prev", "_seq")

    def __init__(self, seq: int = 0, prev_hash: str = GENESIS) -> None:
        self._seq = seq
        self._prev = prev_hash

    @classmethod
    def resume(cls, last_line: bytes | None, last_seq: int | None = None) -> ChainWriter:
        """Continue an existing chain after its last line (None: start a new chain).

        `last_seq` overrides the seq read from `last_line`; it is needed when the last line is a partial
        write that cannot be parsed (the chain then links to the broken line's bytes and reuses the seq of the
        last good line, so the verifier reports exactly that one line).
        """
        if last_line is None:
            return cls()
        if last_seq is None:
            last_seq = msgspec.json.decode(last_line, type=_ChainFields).seq
        return cls(last_seq, line_hash(last_line))

    @property
    def head(self) -> tuple[int, str]:
        return self._seq, self._prev

    def next_line(self, event: AuditEvent) -> bytes:
        return self.next_line_from_json(encode_event(event))

    def next_length(self, event_json: bytes) -> int:
        """The exact length (newline included) of the line `next_line_from_json(event_json)` would return;
        rotation by size asks this before committing a line to a file."""
        return len(event_json) + 82 + len(str(self._seq + 1))

    def next_line_from_json(self, event_json: bytes) -> bytes:
        """Chain an already encoded event (the output of `encode_event`, a JSON object)."""
        self._seq += 1
        body = b'{"seq":%d,"prev":"%s",%s' % (self._seq, self._prev.encode(), event_json[1:])
        self._prev = hashlib.sha256(body).hexdigest()
        return body + b"\n"


# --------------------------------------------------------------------------------------------------------
# verification


class _ChainFields(msgspec.Struct):
    seq: int
    prev: str
    kind: str = ""
    details: dict[str, Any] | None = None


class ChainHead(msgspec.Struct, frozen=True):
    """The last line of a verified chain: compare with a copy recorded elsewhere to detect a cut tail."""

    seq: int
    hash: str
    where: str


class VerifyResult(msgspec.Struct):
    ok: bool
    problems: list[str]
    lines: int = 0
    heads: dict[str, ChainHead] = msgspec.field(default_factory=dict)

    def merge(self, other: VerifyResult) -> VerifyResult:
        return VerifyResult(
            ok=self.ok and other.ok,
            problems=self.problems + other.problems,
            lines=self.lines + other.lines,
            heads={**self.heads, **other.heads},
        )


_HEX64 = re.compile(r"[0-9a-f]{64}")


class ChainVerifier:
    """Replays one chain line by line (possibly across files) and collects the problems it finds.

    Feed every line in order with where it came from (`"audit.w1.jsonl:17"`), then call `finish()`.
    Diagnoses name the line that was changed when that can be known:
    - edited line k: line k+1 no longer links to it ("line k was modified");
    - dropped lines: a gap in `seq` at the line after them;
    - inserted line: the line after it links to the line before it;
    - reordered lines: `seq` goes backwards or jumps;
    - truncated file: an incomplete last line, or (with `anchors`) a head short of a recorded one.
    """

    def __init__(self, name: str = "chain", anchors: Mapping[int, str] | None = None) -> None:
        self.name = name
        self.problems: list[str] = []
        self.lines = 0
        self._anchors = dict(anchors or {})
        self._prev_hash: str | None = None
        self._prev2_hash: str | None = None
        self._prev_where = ""
        self._prev2_where = ""
        self._expected_seq: int | None = None
        self._last_seq: int | None = None
        self._first_seq: int | None = None
        self._first_where = ""
        self._retained_from: int | None = None
        self._retained_where = ""
        # A link failure with a correct seq: whether line n-1 or n-2 changed is known one line later.
        self._pending_edit: tuple[str, str] | None = None  # (where of line n-1, where of line n)

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def _resolve_pending(self, current_links_ok: bool) -> None:
        if self._pending_edit is None:
            return
        before, at = self._pending_edit
        self._pending_edit = None
        if current_links_ok:
            self._problem(f"{before}: line was modified (the next line's prev hash no longer matches it)")
        else:
            self._problem(
                f"{at}: line was modified (it no longer links to the previous line and the next line "
                f"no longer links to it)"
            )

    def feed(self, raw: bytes, where: str, complete: bool = True) -> None:
        """One line without its newline; `complete` is False for a final line that had no newline."""
        self.lines += 1
        digest = hashlib.sha256(raw).hexdigest()
        fields: _ChainFields | None = None
        if not complete:
            self._problem(f"{where}: incomplete last line (the file was truncated or a write was cut short)")
        else:
            try:
                fields = msgspec.json.decode(raw, type=_ChainFields)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._problem(f"{where}: not a chained audit line (not JSON with integer seq and hex prev)")
            else:
                if not _HEX64.fullmatch(fields.prev):
                    self._problem(f"{where}: prev is not a hex SHA-256")
                    fields = None
        if fields is None:
            # A broken line consumes no seq; the following line is expected to link to its bytes.
            if self._pending_edit is not None:
                self._resolve_pending(current_links_ok=True)
            self._shift(digest, where)
            return
        self._check(fields, digest, where)

    def _shift(self, digest: str, where: str) -> None:
        self._prev2_hash, self._prev2_where = self._prev_hash, self._prev_where
        self._prev_hash, self._prev_where = digest, where

    def _check(self, fields: _ChainFields, digest: str, where: str) -> None:
        seq, prev = fields.seq, fields.prev
        if self._prev_hash is None:
            self._first_seq, self._first_where = seq, where
            if seq == 1 and prev != GENESIS:
                self._problem(f"{where}: first line of the chain (seq 1) does not carry the genesis prev")
            elif seq != 1 and prev == GENESIS:
                self._problem(f"{where}: genesis prev on a line with seq {seq} (expected seq 1)")
        else:
            links = prev == self._prev_hash
            expected = self._expected_seq
            seq_ok = expected is None or seq == expected
            if self._pending_edit is not None:
                self._resolve_pending(current_links_ok=links)
                if not links:
                    links = True  # already explained as a modification of the previous line
            if not links and prev == self._prev2_hash and self._prev2_hash is not None:
                self._problem(
                    f"{self._prev_where}: line was inserted (the next line links to the line before it)"
                )
            elif not seq_ok and expected is not None:
                if seq > expected:
                    missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
                    self._problem(
                        f"{where}: seq {seq} follows seq {expected - 1}: lines missing or reordered "
                        f"before this line ({missing} absent here)"
                    )
                else:
                    self._problem(
                        f"{where}: seq {seq} after seq {expected - 1}: line reordered, duplicated or inserted"
                    )
            elif not links:
                self._pending_edit = (self._prev_where, where)
        if fields.kind == KIND_FILE_ROTATED and fields.details:
            retained = fields.details.get("retained_from_seq")
            if isinstance(retained, int):
                self._retained_from, self._retained_where = retained, where
        anchored = self._anchors.get(seq)
        if anchored is not None and anchored != digest:
            self._problem(f"{where}: line seq {seq} does not match the recorded anchor hash")
        self._expected_seq = seq + 1
        self._last_seq = max(seq, self._last_seq or seq)
        self._shift(digest, where)

    def finish(self) -> VerifyResult:
        if self._pending_edit is not None:
            before, at = self._pending_edit
            self._pending_edit = None
            self._problem(f"{before}: line was modified (or the prev hash of {at} was altered)")
        if self.lines == 0:
            self._problem(f"{self.name}: no lines")
        first = self._first_seq
        if first is not None and first != 1:
            if self._retained_from is None:
                self._problem(
                    f"{self._first_where}: chain starts at seq {first} and no rotation record explains "
                    f"it: lines seq 1..{first - 1} are missing"
                )
            elif first > self._retained_from:
                self._problem(
                    f"{self._first_where}: lines seq {self._retained_from}..{first - 1} are missing "
                    f"(the rotation record at {self._retained_where} says they were retained: a rotated "
                    f"file or the start of the oldest file is missing)"
                )
        if self._anchors and self._last_seq is not None:
            beyond = [s for s in self._anchors if s > self._last_seq]
            if beyond:
                self._problem(
                    f"{self.name}: chain ends at seq {self._last_seq} but an anchor records seq "
                    f"{max(beyond)}: lines were removed from the end"
                )
        heads: dict[str, ChainHead] = {}
        if self._prev_hash is not None and self._last_seq is not None:
            heads[self.name] = ChainHead(self._last_seq, self._prev_hash, self._prev_where)
        return VerifyResult(ok=not self.problems, problems=list(self.problems), lines=self.lines, heads=heads)


def verify_lines(
    lines: Iterable[bytes], name: str = "line", anchors: Mapping[int, str] | None = None
) -> VerifyResult:
    """Verify one chain given as lines in order, numbered from 1 in the problems (`"line 7: ..."`).

    Lines are expected as a binary file iterates them (each ending with a newline). A final line without a
    newline after newline-terminated ones is how a file cut mid-line looks, and is reported as incomplete;
    a stream where no line has a newline (already stripped lines) is taken as complete lines.
    """
    verifier = ChainVerifier(name, anchors)
    held: bytes | None = None
    held_complete = True
    number = 0
    saw_newline = False
    for line in lines:
        if held is not None:
            verifier.feed(held, f"{name} {number}")
        number += 1
        if line.endswith(b"\n"):
            saw_newline = True
            held, held_complete = line[:-2] if line.endswith(b"\r\n") else line[:-1], True
        else:
            held, held_complete = line, not saw_newline
    if held is not None:
        verifier.feed(held, f"{name} {number}", complete=held_complete)
    return verifier.finish()
