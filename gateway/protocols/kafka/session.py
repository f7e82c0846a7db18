"""The sans-IO Kafka session: one client connection and its one upstream broker connection.

The worker feeds bytes in (`client_data`, `upstream_data`) and executes the actions that come back
(`SendToClient`, `SendToUpstream`, `CloseSession`, `NodeDiscovered`). Nothing here touches a socket, so every
protocol rule is testable as a transcript.

Rules this module keeps:
- Responses reach the client in request order, even when the gateway answers some requests itself: every
  request that expects a response takes a slot in `_slots`; slots are released strictly from the head.
- `acks=0` Produce requests take no slot (the broker sends no response).
- Requests the gateway originates (its own ApiVersions) use negative correlation ids and are never shown to
  the client. Upstream responses arrive in the order requests were sent; a response whose correlation id does
  not match the oldest outstanding request is a protocol violation and closes the session.
- Frames whose bodies the gateway does not need are forwarded as bytes, streamed through without buffering
  whole frames when they are large; responses that name brokers are decoded and rewritten (see apis.py).
- Malformed input (impossible length, truncated frame, unknown API key, TLS or HTTP on a plaintext port) closes
  the session with a message that names the problem. The worker keeps serving everyone else.
- With a guard (identity mode) every request is decoded and decided before anything is forwarded. A request
  that must wait (held for approval, or a Fetch naming topic ids this worker has not seen, which first asks
  the broker) keeps its place: the requests behind it wait unprocessed, so the broker still sees the client's
  order (idempotent producers depend on it).
- Client requests wait until the gateway's own login to the broker (if configured) has succeeded.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.protocols.kafka import apis, codec, framing, skim
from gateway.protocols.kafka import guard as guards
from gateway.protocols.kafka.addresses import AddressBook, AddressError, rewrite_response
from gateway.protocols.kafka.generated.api_versions import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ApiVersionsResponseApiVersion,
)
from gateway.protocols.kafka.generated.metadata import MetadataRequest

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")

UNSUPPORTED_VERSION = 35
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34

Buffer = bytes | bytearray | memoryview


# ------------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class SendToClient:
    data: Buffer


@dataclass(frozen=True, slots=True)
class SendToUpstream:
    data: Buffer


@dataclass(frozen=True, slots=True)
class CloseSession:
    reason: str
    kind: str  # "malformed", "unknown_api", "unsupported_version", "upstream_protocol", "foreign_protocol"


@dataclass(frozen=True, slots=True)
class NodeDiscovered:
    """A broker node the gateway must now serve at `advertised` (the worker binds the port if needed)."""

    node_id: int
    upstream: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ValidateToken:
    """Validate the bearer token of a SaslAuthenticate request; answer with `KafkaSession.token_validated`."""

    request_id: int
    credentials: Any  # sasl_server.SaslCredentials (repr hides the token)


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    """Wait up to `hold_s` for these approval requests; then call `KafkaSession.approval_resolved`."""

    request_id: int
    records: list[Any]  # enforcement.approvals.ApprovalRecord
    hold_s: float


@dataclass(frozen=True, slots=True)
class MuteClient:
    """Stop reading the client for `ms` (a throttle verdict; clients that ignore throttle_time_ms slow too)."""

    ms: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    event: Any  # gateway.enforcement.audit.AuditEvent


Action = (SendToClient | SendToUpstream | CloseSession | NodeDiscovered | ValidateToken | AuditRecord
          | AwaitApproval | MuteClient)


# --------------------------------------------------------------------------------------------------- slots
# slot kinds
FORWARD = 0  # response passes through as bytes
REWRITE = 1  # response is decoded, broker addresses rewritten, re-encoded
LOCAL = 2  # the gateway answers; `response` is set when the slot is created (or when it becomes known)
INTERNAL = 3  # a request the gateway originated; its response is consumed, never sent to the client
AWAIT_VERSIONS = 4  # a client ApiVersions waiting for the broker's ranges
AWAIT_TOKEN = 5  # a SaslAuthenticate waiting for the worker to validate the token
AWAIT_APPROVAL = 6  # a request held until reviewers decide its approval request(s)
AWAIT_METADATA = 7  # a Fetch naming topic ids this worker has not seen: held until a side Metadata answers


class _Pending:
    """Bytes that do not yet make a whole unit, kept as chunks and joined once enough has arrived.

    Re-concatenating a growing buffer on every read would copy a large frame once per socket read; this keeps
    buffering linear in the frame size.
    """

    __slots__ = ("chunks", "size", "need")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.need = 0

    def add(self, data: Buffer) -> Buffer | None:
        """Append `data`; return everything pending once at least `need` bytes are there, else None."""
        if not self.chunks:
            if len(data) >= self.need:
                return data
            self.chunks.append(bytes(data))
            self.size = len(data)
            return None
        self.chunks.append(bytes(data))
        self.size += len(data)
        if self.size < self.need:
            return None
        joined = b"".join(self.chunks)
        self.chunks = []
        self.size = 0
        return joined

    def keep(self, buf: Buffer, pos: int, need: int) -> None:
        """Keep buf[pos:] and wait until `need` bytes (counted from pos) are pending."""
        self.chunks = [bytes(memoryview(buf)[pos:])] if pos < len(buf) else []
        self.size = len(buf) - pos
        self.need = need

    def head(self) -> bytes:
        return b"".join(self.chunks)


class _Slot:
    __slots__ = ("correlation_id", "api_key", "api_version", "kind", "response", "on_response", "close_after",
                 "credentials", "inspect", "held")

    def __init__(self, correlation_id: int, api_key: int, api_version: int, kind: int) -> None:
        self.correlation_id = correlation_id
        self.api_key = api_key
        self.api_version = api_version
        self.kind = kind
        self.response: Buffer | None = None
        self.on_response: Any = None  # guard post-processing of the decoded response
        self.close_after: str | None = None  # close the session once this response is sent
        self.credentials: Any = None
        self.inspect: Any = None  # guard inspection of the raw response (audit), without decoding it
        self.held: Any = None  # (decoded request, frame bytes, body offset) of a request held for approval


@dataclass
class SessionStats:
    requests: int = 0
    responses: int = 0
    bytes_from_client: int = 0
    bytes_from_upstream: int = 0
    locally_answered: int = 0


class ProtocolViolation(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


class KafkaSession:
    """One client connection's protocol state. Feed bytes in; execute the returned actions in order."""

    def __init__(self, addresses: AddressBook, *, max_frame_bytes: int = 104_857_600,
                 client_label: str = "client", guard: guards.KafkaGuard | None = None,
                 upstream_auth: Any = None, version_caps: dict[int, int] | None = None) -> None:
        self.version_caps = version_caps
        self.addresses = addresses
        self.guard = guard
        self.upstream_auth = upstream_auth  # UpstreamSaslClient: the gateway's own broker credentials
        self._upstream_ready = upstream_auth is None
        self._held_for_upstream: list[tuple[_Slot | None, Buffer]] = []
        self._paused = False  # a request is held for approval: later client bytes wait unprocessed
        self.max_frame_bytes = max_frame_bytes
        self.client_label = client_label
        self.stats = SessionStats()
        self.closed: CloseSession | None = None
        self.advertised_versions: dict[int, tuple[int, int]] | None = None
        self.broker_versions: dict[int, tuple[int, int]] | None = None
        self.client_id: str | None = None
        self._broker_features: Any = None
        self._slots: deque[_Slot] = deque()  # client-visible order
        self._awaiting: deque[_Slot] = deque()  # forwarded upstream, response not yet seen (send order)
        self._client_pending = _Pending()
        self._client_stream_left = 0  # bytes of the current request frame still to pass through unparsed
        self._up_pending = _Pending()
        self._up_stream_left = 0  # bytes of the current response frame still to pass through unparsed
        self._seen_first_byte = False
        self._next_internal_id = -1

    # ------------------------------------------------------------------------------------------- public
    def start(self) -> list[Action]:
        """Called once the upstream connection is open: the gateway learns the broker's API ranges."""
        return [SendToUpstream(self._internal_request(apis.API_VERSIONS, 3, ApiVersionsRequest(
            client_software_name="streamgate", client_software_version="0.1.0")))]

    @property
    def in_flight(self) -> int:
        """Client requests whose responses have not been fully delivered (used for graceful drain)."""
        return len(self._slots) + (1 if self._client_stream_left else 0)

    def client_data(self, data: Buffer) -> list[Action]:
        if self.closed:
            return []
        out: list[Action] = []
        self.stats.bytes_from_client += len(data)
        try:
            self._client_data(data, out)
        except ProtocolViolation as exc:
            return self._close(out, str(exc), exc.kind)
        return out

    def upstream_data(self, data: Buffer) -> list[Action]:
        if self.closed:
            return []
        out: list[Action] = []
        self.stats.bytes_from_upstream += len(data)
        try:
            self._upstream_data(data, out)
        except ProtocolViolation as exc:
            return self._close(out, str(exc), exc.kind)
        return out

    def client_eof(self) -> CloseSession | None:
        """The client closed its side. Returns a CloseSession naming a truncated frame, if one was cut off."""
        if self.closed:
            return None
        pending = self._client_pending.size
        if self._client_stream_left or pending:
            if pending >= 4:
                size = _I32.unpack_from(self._client_pending.head(), 0)[0]
                detail = f"{pending - 4} of {size} bytes"
            elif pending:
                detail = f"{pending} bytes of a 4-byte length prefix"
            else:
                detail = f"{self._client_stream_left} bytes missing"
            self.closed = CloseSession(f"truncated request frame: the client closed the connection mid-frame "
                                       f"({detail})", "malformed")
            return self.closed
        return None

    # ------------------------------------------------------------------------------------ client -> up
    def _client_data(self, data: Buffer, out: list[Action]) -> None:
        if self._client_stream_left:
            n = min(self._client_stream_left, len(data))
            out.append(SendToUpstream(data if n == len(data) else memoryview(data)[:n]))
            self._client_stream_left -= n
            if n == len(data):
                return
            data = memoryview(data)[n:]
        if self._paused:
            if len(data):
                self._client_pending.chunks.append(bytes(data))
                self._client_pending.size += len(data)
            return
        if not self._seen_first_byte and len(data):
            self._seen_first_byte = True
            foreign = framing.sniff_foreign_protocol(bytes(memoryview(data)[:16]))
            if foreign:
                raise ProtocolViolation(
                    f"{foreign} arrived on a plaintext Kafka port; configure the client for this listener's "
                    "protocol (the gateway's TLS listener needs security.protocol=SSL/SASL_SSL)", "foreign_protocol")
        joined = self._client_pending.add(data)
        if joined is None:
            return
        buf = joined
        end = len(buf)
        need = 4
        pos = 0
        first_forward = -1  # start of a run of consecutive whole frames forwarded unchanged
        while end - pos >= 4:
            size = _I32.unpack_from(buf, pos)[0]
            if size < framing.MIN_REQUEST_SIZE or size > self.max_frame_bytes:
                raise ProtocolViolation(
                    f"malformed request frame: length {size} is outside 8..{self.max_frame_bytes} bytes",
                    "malformed")
            frame_end = pos + 4 + size
            complete = frame_end <= end
            if not complete and end - pos < 4 + min(size, 64):
                need = 4 + min(size, 64)
                break  # not even the header prefix yet
            api_key, api_version, corr = framing.read_request_prefix(buf, pos + 4)
            routed = self._route_request(buf, pos + 4, min(frame_end, end), api_key, api_version, corr,
                                         complete, out)
            if routed is None:  # need the whole frame
                if not complete:
                    need = 4 + size
                    break
                raise AssertionError("route_request needs a complete frame but had one")
            self.stats.requests += 1
            decision, slot = routed
            if decision is True and not self._upstream_ready:
                if not complete:
                    self.stats.requests -= 1
                    if slot is not None:
                        self._slots.pop()
                    need = 4 + size
                    break  # held frames are kept whole until the broker connection is authenticated
                decision = bytes(memoryview(buf)[pos:frame_end])
            if decision is True:  # forward the original bytes, batched with neighbours into one write
                if slot is not None:
                    self._awaiting.append(slot)
                if not complete:
                    if first_forward >= 0:
                        out.append(SendToUpstream(memoryview(buf)[first_forward:pos]))
                    out.append(SendToUpstream(memoryview(buf)[pos:end]))
                    self._client_stream_left = frame_end - end
                    self._client_pending = _Pending()
                    return
                if first_forward < 0:
                    first_forward = pos
            else:
                if first_forward >= 0:
                    out.append(SendToUpstream(memoryview(buf)[first_forward:pos]))
                    first_forward = -1
                if decision is not False:  # a replacement frame
                    self._send_upstream(slot, decision, out)
            pos = frame_end
            if self._paused:
                break
        if first_forward >= 0:
            whole = first_forward == 0 and pos == end
            out.append(SendToUpstream(buf if whole else memoryview(buf)[first_forward:pos]))
        self._client_pending.keep(buf, pos, need)
        self._flush(out)

    def _send_upstream(self, slot: _Slot | None, data: Buffer, out: list[Action]) -> None:
        """Send a whole request frame upstream now, or hold it until the broker connection is authenticated."""
        if not self._upstream_ready:
            self._held_for_upstream.append((slot, data))
            return
        if slot is not None:
            self._awaiting.append(slot)
        out.append(SendToUpstream(data))

    def _route_request(self, buf: Buffer, start: int, end: int, api_key: int, api_version: int, corr: int,
                       complete: bool, out: list[Action]) -> tuple[bool | bytes, _Slot | None] | None:
        """Decide one request: None if the whole frame is needed first; else (what to send, response slot).

        What to send: True = the original bytes; False = nothing (answered locally); bytes = a replacement
        frame. The slot (None when no response is expected) is already queued in client order.
        """
        spec = apis.HANDLED.get(api_key)
        if spec is None:
            raise ProtocolViolation(
                f"unknown API key {api_key} (version {api_version}, correlation id {corr}) from "
                f"{self.client_label}: the gateway forwards only APIs it can enforce policy on", "unknown_api")
        name = spec.name
        if api_key == apis.API_VERSIONS:
            if not complete:
                return None
            self._client_api_versions(buf, start, end, api_version, corr)
            return False, None
        ranges = self.advertised_versions
        lo_hi = ranges.get(api_key) if ranges is not None else (spec.min_version, spec.max_version)
        if lo_hi is None or not lo_hi[0] <= api_version <= lo_hi[1]:
            raise ProtocolViolation(
                f"{name} v{api_version} is not supported by the gateway (advertised "
                f"{'none' if lo_hi is None else f'{lo_hi[0]}..{lo_hi[1]}'})", "unsupported_version")
        if self.guard is not None:
            if not complete:
                return None
            return self._guarded_request(buf, start, end, api_key, api_version, corr, out)
        if api_key in (apis.SASL_HANDSHAKE, apis.SASL_AUTHENTICATE):
            if not complete:
                return None
            self._local_sasl_refusal(api_key, api_version, corr)
            return False, None
        hv = codec.request_header_version(api_key, api_version)
        if api_key == apis.PRODUCE:
            try:
                header = framing.read_request_header(buf, start, end, hv)
                acks = framing.read_produce_acks(buf, start + header.body_offset, end, api_version)
            except framing.NeedMoreData:
                if complete:
                    raise ProtocolViolation(f"truncated Produce v{api_version} request header", "malformed") from None
                return None
            except framing.MalformedFrame as exc:
                raise ProtocolViolation(f"malformed Produce request: {exc}", "malformed") from None
            if self.client_id is None:
                self.client_id = header.client_id
            if acks == 0:
                return True, None  # the broker will not answer; no slot
        elif self.client_id is None and complete:
            try:
                self.client_id = framing.read_request_header(buf, start, end, hv).client_id
            except (framing.NeedMoreData, framing.MalformedFrame):
                raise ProtocolViolation(f"truncated {name} v{api_version} request header", "malformed") from None
        kind = REWRITE if spec.rewrite_from is not None and api_version >= spec.rewrite_from else FORWARD
        slot = _Slot(corr, api_key, api_version, kind)
        self._slots.append(slot)
        return True, slot

    def _guarded_request(self, buf: Buffer, start: int, end: int, api_key: int, api_version: int, corr: int,
                         out: list[Action]) -> tuple[bool | bytes, _Slot | None]:
        """Identity + policy: decode the request, let the guard decide, turn its outcome into slots/actions."""
        guard = self.guard
        assert guard is not None
        name = apis.api_name(api_key)
        hv = codec.request_header_version(api_key, api_version)
        try:
            header = framing.read_request_header(buf, start, end, hv)
            request, _ = codec.decode_request(api_key, api_version, buf, start + header.body_offset)
        except (framing.NeedMoreData, framing.MalformedFrame, codec.CodecError) as exc:
            guard.event("protocol_error", api=name, api_version=api_version, decision="denied",
                        reason=f"undecodable {name} v{api_version} request: {exc}")
            self._drain_events(out)
            raise ProtocolViolation(f"malformed {name} v{api_version} request: {exc}", "malformed") from None
        if self.client_id is None:
            self.client_id = guard.client_id = header.client_id
        if (api_key == apis.FETCH and api_version >= 13 and guard.principal is not None
                and any(t.topic_id not in self.addresses.topic_names for t in request.topics)):
            # Fetch names topics by id; this worker has not seen their names (the client's Metadata may have
            # gone through another worker). Ask the broker before deciding, rather than deny a valid fetch.
            slot = _Slot(corr, api_key, api_version, AWAIT_METADATA)
            slot.held = (request, bytes(memoryview(buf)[start - 4 : end]), header.body_offset)
            self._slots.append(slot)
            self._paused = True
            version = min(12, (self.broker_versions or {}).get(apis.METADATA, (0, 12))[1])
            out.append(SendToUpstream(self._internal_request(apis.METADATA, version, MetadataRequest(
                topics=None, allow_auto_topic_creation=False))))
            return False, None
        if api_key == apis.SASL_HANDSHAKE:
            outcome = guard.sasl_handshake(api_version, request)
        elif api_key == apis.SASL_AUTHENTICATE:
            outcome = guard.sasl_authenticate(api_version, request)
        else:
            outcome = guard.authorize(api_key, api_version, request)
        self._drain_events(out)
        if isinstance(outcome, guards.Hold):
            slot = _Slot(corr, api_key, api_version, AWAIT_APPROVAL)
            slot.held = (request, bytes(memoryview(buf)[start - 4 : end]), header.body_offset)
            self._slots.append(slot)
            self._paused = True  # later requests wait too: the broker must see them in the client's order
            out.append(AwaitApproval(id(slot), outcome.records, outcome.hold_s))
            return False, None
        return self._apply_outcome(outcome, corr, api_key, api_version, buf, start, header.body_offset, out)

    def _apply_outcome(self, outcome: Any, corr: int, api_key: int, api_version: int, buf: Buffer, start: int,
                       body_offset: int, out: list[Action], slot: _Slot | None = None
                       ) -> tuple[bool | bytes, _Slot | None]:
        """Turn a guard outcome into slots and actions. `slot`: reuse this queued slot (a request that was held)."""
        if isinstance(outcome, guards.Refuse):
            raise ProtocolViolation(outcome.reason, outcome.kind)
        if isinstance(outcome, guards.Respond):
            if slot is None:
                self._respond_locally(corr, api_key, api_version, outcome)
            else:
                slot.kind = LOCAL
                slot.response = self._encode_response(corr, api_key, api_version, outcome.message)
                slot.close_after = outcome.close_after
            return False, None
        if isinstance(outcome, guards.Authenticate):
            slot = _Slot(corr, api_key, api_version, AWAIT_TOKEN)
            slot.credentials = outcome.credentials
            self._slots.append(slot)
            out.append(ValidateToken(id(slot), outcome.credentials))
            return False, None
        spec = apis.HANDLED[api_key]
        if outcome.expects_response:
            rewrite = spec.rewrite_from is not None and api_version >= spec.rewrite_from
            post = rewrite or outcome.on_response or outcome.inspect
            if slot is None:
                slot = _Slot(corr, api_key, api_version, REWRITE if post else FORWARD)
                self._slots.append(slot)
            else:
                slot.kind = REWRITE if post else FORWARD
            slot.on_response = outcome.on_response
            slot.inspect = outcome.inspect
        elif slot is not None:  # a held acks=0 produce: its slot expects nothing
            self._slots.remove(slot)
            slot = None
        if outcome.replacement is None:
            return True, slot
        frame = framing.encode_frame([bytes(memoryview(buf)[start : start + body_offset]),
                                      codec.encode_request(api_key, api_version, outcome.replacement)])
        return frame, slot

    def approval_resolved(self, request_id: int) -> list[Action]:
        """The hold of a request ended (approved, denied or timed out): decide it again and go on."""
        out: list[Action] = []
        if self.closed or self.guard is None:
            return out
        try:
            self._resume_held(lambda slot: id(slot) == request_id and slot.kind == AWAIT_APPROVAL, out,
                              after_hold=True)
        except ProtocolViolation as exc:
            return self._close(out, str(exc), exc.kind)
        self._flush(out)
        return out

    def _resume_held(self, which: Any, out: list[Action], *, after_hold: bool) -> None:
        """Decide the first held request matching `which` again (now that its hold ended), then go on with
        the client bytes that waited behind it."""
        assert self.guard is not None
        for slot in self._slots:
            if which(slot):
                request, frame, body_offset = slot.held
                slot.held = None
                outcome = self.guard.authorize(slot.api_key, slot.api_version, request, after_hold=after_hold)
                if isinstance(outcome, guards.Hold):  # a fetch that waited for metadata may need approval
                    slot.kind = AWAIT_APPROVAL
                    slot.held = (request, frame, body_offset)
                    self._drain_events(out)
                    out.append(AwaitApproval(id(slot), outcome.records, outcome.hold_s))
                    return
                self._drain_events(out)
                decision, queued = self._apply_outcome(outcome, slot.correlation_id, slot.api_key,
                                                       slot.api_version, frame, 4, body_offset, out, slot)
                if decision is True:
                    decision = frame
                if decision is not False:
                    self._send_upstream(queued, decision, out)
                break
        self._paused = any(s.kind in (AWAIT_APPROVAL, AWAIT_METADATA) for s in self._slots)
        if not self._paused and self._client_pending.size:
            pending = self._client_pending.head()
            self._client_pending = _Pending()
            self._client_data(pending, out)

    def _respond_locally(self, corr: int, api_key: int, api_version: int, outcome: guards.Respond) -> _Slot:
        self.stats.locally_answered += 1
        slot = _Slot(corr, api_key, api_version, LOCAL)
        slot.response = self._encode_response(corr, api_key, api_version, outcome.message)
        slot.close_after = outcome.close_after
        self._slots.append(slot)
        return slot

    def _encode_response(self, corr: int, api_key: int, api_version: int, message: Any) -> bytes:
        body = codec.encode_response(api_key, api_version, message)
        hv = codec.response_header_version(api_key, api_version)
        return framing.encode_frame([framing.response_header(corr, hv), body])

    def _drain_events(self, out: list[Action]) -> None:
        guard = self.guard
        if guard is not None and guard.events:
            out.extend(AuditRecord(e) for e in guard.events)
            guard.events.clear()

    def token_validated(self, request_id: int, result: Any) -> list[Action]:
        """The worker validated the token of a pending SaslAuthenticate (`result`: Principal or TokenError)."""
        out: list[Action] = []
        if self.closed or self.guard is None:
            return out
        for slot in self._slots:
            if id(slot) == request_id and slot.kind == AWAIT_TOKEN:
                outcome = self.guard.token_validated(slot.credentials, result)
                slot.credentials = None
                slot.kind = LOCAL
                slot.response = self._encode_response(slot.correlation_id, slot.api_key, slot.api_version,
                                                      outcome.message)
                slot.close_after = outcome.close_after
                break
        self._drain_events(out)
        self._flush(out)
        return out

    def check_expiry(self) -> list[Action]:
        """Called periodically by the worker: close a session whose token expired without re-authentication."""
        guard = self.guard
        if self.closed or guard is None or not guard.expired():
            return []
        if self.in_flight:
            # KIP-368: requests sent while the session was valid are answered (clients re-authenticate only
            # when nothing is in flight); any new request after expiry is refused by the guard.
            return []
        guard.event("session_expired", decision="denied",
                    reason="token expired without re-authentication (KIP-368)")
        out: list[Action] = []
        self._drain_events(out)
        return self._close(out, "the client's token expired and it did not re-authenticate in time", "expired")

    # ---------------------------------------------------------------------------------- local answers
    def _client_api_versions(self, buf: Buffer, start: int, end: int, api_version: int, corr: int) -> None:
        self.stats.locally_answered += 1
        spec = apis.HANDLED[apis.API_VERSIONS]
        if api_version > spec.max_version:
            # Kafka's rule: answer a too-new ApiVersions with UNSUPPORTED_VERSION and our ranges, encoded as v0
            slot = _Slot(corr, apis.API_VERSIONS, 0, LOCAL)
            slot.response = self._encode_api_versions(corr, 0, UNSUPPORTED_VERSION,
                                                      {apis.API_VERSIONS: (spec.min_version, spec.max_version)})
            self._slots.append(slot)
            return
        slot = _Slot(corr, apis.API_VERSIONS, api_version, AWAIT_VERSIONS)
        if self.advertised_versions is not None:
            slot.kind = LOCAL
            slot.response = self._encode_api_versions(corr, api_version, 0, self.advertised_versions)
        self._slots.append(slot)

    def _encode_api_versions(self, corr: int, version: int, error: int,
                             ranges: dict[int, tuple[int, int]]) -> bytes:
        kwargs: dict[str, Any] = {
            "error_code": error,
            "api_keys": [ApiVersionsResponseApiVersion(api_key=k, min_version=lo, max_version=hi)
                         for k, (lo, hi) in sorted(ranges.items())],
            "throttle_time_ms": 0,
        }
        if version >= 3 and self._broker_features is not None and error == 0:
            kwargs.update(self._broker_features)
        body = codec.encode_response(apis.API_VERSIONS, version, ApiVersionsResponse(**kwargs))
        return framing.encode_frame([framing.response_header(corr, 0), body])  # ApiVersions: header v0 always

    def _local_sasl_refusal(self, api_key: int, api_version: int, corr: int) -> None:
        """Passthrough mode has no identity: SASL is refused with a clear broker error."""
        resp_cls = codec.response_class(api_key)
        if api_key == apis.SASL_HANDSHAKE:
            msg = resp_cls(error_code=UNSUPPORTED_SASL_MECHANISM, mechanisms=[])
        else:
            msg = resp_cls(error_code=ILLEGAL_SASL_STATE,
                           error_message="SASL is not enabled on this gateway listener (passthrough mode)")
        self._respond_locally(corr, api_key, api_version, guards.Respond(msg))

    def _internal_request(self, api_key: int, api_version: int, msg: Any) -> bytes:
        corr = self._next_internal_id
        self._next_internal_id -= 1
        slot = _Slot(corr, api_key, api_version, INTERNAL)
        self._awaiting.append(slot)
        hv = codec.request_header_version(api_key, api_version)
        header = framing.request_header(api_key, api_version, corr, "streamgate", hv)
        return framing.encode_frame([header, codec.encode_request(api_key, api_version, msg)])

    # ------------------------------------------------------------------------------------ up -> client
    def _upstream_data(self, data: Buffer, out: list[Action]) -> None:
        if self._up_stream_left:
            n = min(self._up_stream_left, len(data))
            out.append(SendToClient(data if n == len(data) else memoryview(data)[:n]))
            self._up_stream_left -= n
            if self._up_stream_left == 0:
                self._slots.popleft()
                self.stats.responses += 1
            if n == len(data):
                if self._up_stream_left == 0:
                    self._flush(out)
                return
            data = memoryview(data)[n:]
        joined = self._up_pending.add(data)
        if joined is None:
            return
        buf = joined
        end = len(buf)
        pos = 0
        need = 8
        run_start = -1  # a run of whole FORWARD frames at the head, sent as one slice
        while end - pos >= 8:
            size = _I32.unpack_from(buf, pos)[0]
            if size < 4 or size > self.max_frame_bytes:
                raise ProtocolViolation(f"upstream sent a response frame of impossible length {size}",
                                        "upstream_protocol")
            corr = _I32.unpack_from(buf, pos + 4)[0]
            if not self._awaiting:
                raise ProtocolViolation(f"upstream sent an unsolicited response (correlation id {corr})",
                                        "upstream_protocol")
            slot = self._awaiting[0]
            if slot.correlation_id != corr:
                raise ProtocolViolation(
                    f"upstream response correlation id {corr} does not match the oldest outstanding request "
                    f"({slot.correlation_id})", "upstream_protocol")
            frame_end = pos + 4 + size
            at_head = bool(self._slots) and self._slots[0] is slot
            if slot.kind == FORWARD and at_head:
                self._awaiting.popleft()
                if frame_end > end:  # stream the rest as it arrives
                    if run_start < 0:
                        run_start = pos
                    out.append(SendToClient(memoryview(buf)[run_start:end]))
                    self._up_stream_left = frame_end - end
                    self._up_pending = _Pending()
                    return
                if run_start < 0:
                    run_start = pos
                self._slots.popleft()
                self.stats.responses += 1
                pos = frame_end
                continue
            if run_start >= 0:
                whole = run_start == 0 and pos == end
                out.append(SendToClient(buf if whole else memoryview(buf)[run_start:pos]))
                run_start = -1
            if frame_end > end:
                need = 4 + size
                break
            self._awaiting.popleft()
            self._complete_upstream_response(slot, memoryview(buf)[pos:frame_end], out)
            pos = frame_end
            self._flush(out)
        if run_start >= 0:
            whole = run_start == 0 and pos == end
            out.append(SendToClient(buf if whole else memoryview(buf)[run_start:pos]))
        self._up_pending.keep(buf, pos, need)
        self._flush(out)

    def _complete_upstream_response(self, slot: _Slot, whole: memoryview, out: list[Action]) -> None:
        """A whole response frame (`whole` includes the size prefix) for a slot that is not streamed.

        A response passed on unchanged is sent as a view of the received bytes: no copy in Python.
        """
        frame = whole[4:]
        if slot.kind == FORWARD:  # not at the head: hold its bytes until earlier slots are answered
            slot.response = whole
            slot.kind = LOCAL
            return
        hv = codec.response_header_version(slot.api_key, slot.api_version)
        try:
            body_start = framing.skip_tagged_fields(frame, 4, len(frame)) if hv >= 1 else 4
        except (framing.NeedMoreData, framing.MalformedFrame) as exc:
            raise ProtocolViolation(f"malformed upstream response header: {exc}", "upstream_protocol") from None
        spec = apis.HANDLED[slot.api_key]
        rewrite = spec.rewrite_from is not None and slot.api_version >= spec.rewrite_from and slot.kind != INTERNAL
        if slot.api_key == apis.FETCH and slot.kind != INTERNAL:
            # the hot path: walk the response without decoding records; decode only to change it
            try:
                fetch_skim = skim.skim_fetch_response(frame, body_start, len(frame), slot.api_version)
            except skim.SkimError as exc:
                raise ProtocolViolation(f"cannot read upstream Fetch response: {exc}", "upstream_protocol") from None
            if slot.inspect is not None:
                replaced = slot.inspect(frame, fetch_skim)
                self._drain_events(out)
                if self.guard is not None and self.guard.mute_ms:
                    out.append(MuteClient(self.guard.mute_ms))
                    self.guard.mute_ms = 0
                if replaced is not None:  # masked record blobs spliced in; same header and layout
                    frame = memoryview(replaced)
                    whole = memoryview(_I32.pack(len(replaced)) + replaced)
            rewrite = rewrite and fetch_skim.has_top_level_tags
            if not rewrite and slot.on_response is None:
                slot.response = whole
                slot.kind = LOCAL
                return
        try:
            msg, _end = codec.decode_response(slot.api_key, slot.api_version, frame, body_start)
        except codec.CodecError as exc:
            raise ProtocolViolation(
                f"cannot decode upstream {apis.api_name(slot.api_key)} v{slot.api_version} response: {exc}",
                "upstream_protocol") from None
        if slot.kind == INTERNAL:
            self._internal_response(slot, msg, out)
            return
        changed = False
        if rewrite:
            try:
                discovered = rewrite_response(slot.api_key, slot.api_version, msg, self.addresses)
            except AddressError as exc:
                raise ProtocolViolation(str(exc), "upstream_protocol") from None
            for node_id, upstream in discovered:
                out.append(NodeDiscovered(node_id, upstream))
            changed = True
        if slot.on_response is not None:
            replacement, _ = slot.on_response(msg)
            self._drain_events(out)
            if replacement is not None:
                msg, changed = replacement, True
        if changed:
            body = codec.encode_response(slot.api_key, slot.api_version, msg)
            slot.response = framing.encode_frame([framing.response_header(slot.correlation_id, hv), body])
        else:  # only inspected (audit): the client gets the broker's (or the masked) bytes as they are
            slot.response = whole
        slot.kind = LOCAL

    def _internal_response(self, slot: _Slot, msg: Any, out: list[Action]) -> None:
        if slot.api_key == apis.METADATA:  # the side request of a Fetch naming unseen topic ids
            for topic in msg.topics:
                if topic.topic_id.int and topic.name:
                    self.addresses.topic_names[topic.topic_id] = topic.name
            self._resume_held(lambda s: s.kind == AWAIT_METADATA, out, after_hold=False)
            return
        if slot.api_key in (apis.SASL_HANDSHAKE, apis.SASL_AUTHENTICATE):
            self._upstream_auth_step(slot.api_key, msg, out)
            return
        if slot.api_key != apis.API_VERSIONS:
            return
        if msg.error_code == UNSUPPORTED_VERSION and slot.api_version > 0:
            out.append(SendToUpstream(self._internal_request(apis.API_VERSIONS, 0, ApiVersionsRequest())))
            return
        if msg.error_code != 0:
            raise ProtocolViolation(f"upstream ApiVersions failed with error code {msg.error_code}",
                                    "upstream_protocol")
        self.broker_versions = {e.api_key: (e.min_version, e.max_version) for e in msg.api_keys}
        self.advertised_versions = apis.intersect_with_broker(self.broker_versions, self.version_caps)
        if slot.api_version >= 3:
            self._broker_features = {
                "supported_features": msg.supported_features,
                "finalized_features_epoch": msg.finalized_features_epoch,
                "finalized_features": msg.finalized_features,
            }
        for waiting in self._slots:
            if waiting.kind == AWAIT_VERSIONS:
                waiting.kind = LOCAL
                waiting.response = self._encode_api_versions(waiting.correlation_id, waiting.api_version, 0,
                                                             self.advertised_versions)
        if self.upstream_auth is not None and not self._upstream_ready:
            api_key, version, request = self.upstream_auth.first_request()
            out.append(SendToUpstream(self._internal_request(api_key, version, request)))

    def _upstream_auth_step(self, api_key: int, msg: Any, out: list[Action]) -> None:
        """The gateway's own SASL exchange with the broker; client requests wait until it succeeds."""
        from gateway.protocols.kafka.upstream_auth import UpstreamAuthError

        try:
            step = self.upstream_auth.on_response(api_key, msg)
        except UpstreamAuthError as exc:
            raise ProtocolViolation(f"the gateway could not authenticate to the broker: {exc}",
                                    "upstream_auth") from None
        if step is not None:
            out.append(SendToUpstream(self._internal_request(*step)))
            return
        self._upstream_ready = True
        held, self._held_for_upstream = self._held_for_upstream, []
        for slot, data in held:
            self._send_upstream(slot, data, out)

    # ------------------------------------------------------------------------------------------ helpers
    def _flush(self, out: list[Action]) -> None:
        """Release answered slots from the head, in order."""
        slots = self._slots
        while slots and slots[0].kind == LOCAL and self._up_stream_left == 0:
            slot = slots.popleft()
            assert slot.response is not None
            out.append(SendToClient(slot.response))
            self.stats.responses += 1
            if slot.close_after:
                self._close(out, slot.close_after, "refused")
                return

    def _close(self, out: list[Action], reason: str, kind: str) -> list[Action]:
        self.closed = CloseSession(reason, kind)
        out.append(self.closed)
        return out
