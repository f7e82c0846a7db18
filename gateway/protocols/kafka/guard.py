"""Kafka enforcement: who the client is (SASL at the gateway), what each request may do, what to record.

The guard is the Kafka-specific half of enforcement. It turns Kafka requests into protocol-agnostic questions
(`principal, action, resource`) for the policy engine, and turns the answers back into Kafka: forwarded
requests (possibly narrowed), locally built error responses, filtered or merged responses, audit events.
It is sans-IO like the session that owns it; token validation, which may need the network (JWKS), is handed
to the worker as a `ValidateToken` action and its result comes back through `token_validated`.

Rules this module keeps:
- Default deny: before a successful SASL exchange only ApiVersions, SaslHandshake and SaslAuthenticate are
  served; anything else closes the connection (as a broker does). Every advertised API has an authorization
  decision (authz.py); a request whose decision cannot be made (undecodable) closes the connection.
- SaslHandshake v0 (unframed tokens) is refused with a clear error; mechanisms are OAUTHBEARER and PLAIN.
- `session_lifetime_ms` is the time to token expiry; re-authentication (KIP-368) must keep the same subject.
  After expiry any request other than re-authentication closes the connection.
- When the audit trail cannot take events (a `block` sink is down), requests are refused, not served unrecorded.
- Tokens, passwords and record values never enter audit events or close reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.enforcement.audit import AuditEvent, ClientInfo, Offsets
from gateway.enforcement.audit import Principal as AuditPrincipal
from gateway.enforcement.audit import Resource as AuditResource
from gateway.enforcement.decisions import Decision, Resource
from gateway.enforcement.identity import Principal, TokenError
from gateway.masking.profile import MaskingConfigError
from gateway.native import scan_batches
from gateway.native.records import BatchFormatError
from gateway.protocols.kafka import apis, authz, codec, partial, sasl_server, skim
from gateway.protocols.kafka.generated.sasl_authenticate import SaslAuthenticateResponse
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeResponse
from gateway.protocols.kafka.records import RecordsError, rewrite_records

SASL_AUTHENTICATION_FAILED = 58
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
UNSUPPORTED_VERSION = 35
AUDIT_UNAVAILABLE_REASON = "audit trail unavailable (a sink with on_failure: block is down)"
LIST_OFFSETS = 2
JOIN_GROUP = 11


@dataclass
class GuardContext:
    """Per-worker enforcement state shared by its sessions."""

    policy: Any  # gateway.enforcement.policy.Policy
    audit_available: Callable[[], bool]
    clock: Callable[[], float]
    worker_id: int
    mechanisms: tuple[str, ...] = sasl_server.MECHANISMS
    maskers: Any = None  # gateway.masking.registry.MaskerRegistry (None: no masking configured)
    limits: Any = None  # gateway.enforcement.limits.LimitsEngine (None: no exfiltration rules)
    # gateway.store.approvals_gate.ApprovalGate (None: no rule needs approval). Its grant check is one indexed
    # read of the shared store, injected here like the policy.
    approvals: Any = None
    partition_count: Callable[[str], int | None] = lambda _topic: None


# ---------------------------------------------------------------------------------------------- outcomes
@dataclass(slots=True)
class Respond:
    """Answer locally with this response message (and optionally close after sending it)."""

    message: Any
    close_after: str | None = None


@dataclass(slots=True)
class Forward:
    """Forward the request: `replacement` (a re-encoded body) or, when None, the original bytes.

    `on_response` post-processes the decoded response (returns a replacement message or None to keep the
    original bytes) and yields audit events; None means the response is passed through untouched.
    """

    replacement: Any = None
    on_response: Callable[[Any], tuple[Any | None, list[AuditEvent]]] | None = None
    expects_response: bool = True
    # Fetch only: look at the raw response and its skim (partition record spans) without decoding it; may
    # return a replacement response body (masked record blobs spliced in), else None
    inspect: Callable[[memoryview, Any], bytes | None] | None = None


@dataclass(slots=True)
class Authenticate:
    """Validate this token (in the worker) before answering SaslAuthenticate."""

    credentials: sasl_server.SaslCredentials


class _ScrubFailed(Exception):
    pass


@dataclass(slots=True)
class Hold:
    """Wait (up to `hold_s`) for reviewers to decide these approval requests, then decide the request again."""

    records: list[Any]  # approvals.ApprovalRecord
    hold_s: float


@dataclass(slots=True)
class Refuse:
    """Close the connection; `reason` is logged and audited."""

    reason: str
    kind: str


Outcome = Respond | Forward | Authenticate | Refuse | Hold


@dataclass
class GuardStats:
    denied: int = 0
    records_in: int = 0
    records_out: int = 0


@dataclass
class KafkaGuard:
    ctx: GuardContext
    topic_name: Callable[[uuid.UUID], str | None]
    client_address: str
    connection_id: str
    principal: Principal | None = None
    mechanism: str | None = None
    client_id: str | None = None
    username: str | None = None
    stats: GuardStats = field(default_factory=GuardStats)
    events: list[AuditEvent] = field(default_factory=list)  # drained by the session after every call
    _auth_version: int = 0
    _saw_all_topics_metadata: bool = False  # a regex subscription first lists every topic (bulk-read rules)
    mute_ms: int = 0  # a throttle verdict: the session stops reading this client for that long (as brokers do)

    # ------------------------------------------------------------------------------------------ audit
    def _principal_for_audit(self) -> AuditPrincipal | None:
        p = self.principal
        return AuditPrincipal(sub=p.sub, email=p.email, groups=p.groups) if p else None

    def event(self, kind: str, *, api: str | None = None, api_version: int | None = None,
              decision: str | None = None, rule: str | None = None, reason: str | None = None,
              topic: str | None = None, partition: int | None = None, resource_kind: str | None = None,
              offsets: Offsets | None = None, record_count: int | None = None, size: int | None = None,
              details: dict[str, Any] | None = None, masked_counts: dict[str, int] | None = None) -> None:
        resource = None
        if topic is not None or partition is not None or resource_kind is not None:
            resource = AuditResource(topic=topic, partition=partition, kind=resource_kind)
        self.events.append(AuditEvent(
            kind=kind, principal=self._principal_for_audit(),
            client=ClientInfo(address=self.client_address, client_id=self.client_id),
            connection_id=self.connection_id, worker=self.ctx.worker_id, protocol="kafka", api=api,
            api_version=api_version, resource=resource, offsets=offsets, record_count=record_count, bytes=size,
            decision=decision, rule=rule, reason=reason, details=details, masked_counts=masked_counts))

    # ------------------------------------------------------------------------------------------- SASL
    def sasl_handshake(self, version: int, request: Any) -> Outcome:
        mechanisms = list(self.ctx.mechanisms)
        if version == 0:
            reason = ("SaslHandshake v0 (unframed SASL tokens) is not supported; use a client that sends "
                      "SaslAuthenticate (Kafka 1.0+ clients do)")
            self.event("auth", api="SaslHandshake", api_version=0, decision="denied", reason=reason)
            return Respond(SaslHandshakeResponse(error_code=UNSUPPORTED_VERSION, mechanisms=mechanisms),
                           close_after=reason)
        if request.mechanism not in mechanisms:
            reason = f"SASL mechanism {request.mechanism!r} is not enabled (enabled: {', '.join(mechanisms)})"
            self.event("auth", api="SaslHandshake", api_version=version, decision="denied", reason=reason)
            return Respond(SaslHandshakeResponse(error_code=UNSUPPORTED_SASL_MECHANISM, mechanisms=mechanisms),
                           close_after=reason)
        self.mechanism = request.mechanism
        return Respond(SaslHandshakeResponse(error_code=0, mechanisms=mechanisms))

    def sasl_authenticate(self, version: int, request: Any) -> Outcome:
        self._auth_version = version
        if self.mechanism is None:
            return self._auth_failed("SaslAuthenticate without a preceding SaslHandshake", ILLEGAL_SASL_STATE)
        try:
            credentials = sasl_server.parse_client_message(self.mechanism, bytes(request.auth_bytes))
        except sasl_server.SaslFormatError as exc:
            return self._auth_failed(f"malformed {self.mechanism} message: {exc}")
        self.mechanism = None  # a new exchange needs a new handshake (KIP-368)
        return Authenticate(credentials)

    def token_validated(self, credentials: sasl_server.SaslCredentials, result: Principal | TokenError) -> Respond:
        """The worker's answer to `Authenticate`: build the SaslAuthenticate response."""
        if isinstance(result, TokenError):
            return self._auth_failed(f"token rejected: {result}", token_reason=result.reason)
        now = self.ctx.clock()
        previous = self.principal
        if previous is not None and previous.sub != result.sub:
            return self._auth_failed(
                f"re-authentication as a different subject ({result.sub!r}, was {previous.sub!r}) is not allowed")
        self.principal = result
        self.username = credentials.username
        lifetime_ms = max(int((result.expires_at - now) * 1000), 1)
        self.event("auth", api="SaslAuthenticate", api_version=self._auth_version, decision="allowed",
                   reason="re-authenticated" if previous else "authenticated",
                   details={"mechanism": credentials.mechanism, "session_lifetime_ms": lifetime_ms,
                            **({"username": credentials.username} if credentials.username else {})})
        return Respond(SaslAuthenticateResponse(error_code=0, auth_bytes=b"", session_lifetime_ms=lifetime_ms))

    def _auth_failed(self, reason: str, code: int = SASL_AUTHENTICATION_FAILED,
                     token_reason: str | None = None) -> Respond:
        self.event("auth", api="SaslAuthenticate", api_version=self._auth_version, decision="denied",
                   reason=reason, details={"rejection": token_reason} if token_reason else None)
        message = f"Authentication failed: {reason}"
        return Respond(SaslAuthenticateResponse(error_code=code, error_message=message, auth_bytes=b""),
                       close_after=message)

    def expired(self) -> bool:
        return self.principal is not None and self.ctx.clock() >= self.principal.expires_at

    # --------------------------------------------------------------------------------------- requests
    def authorize(self, api_key: int, version: int, request: Any, *, after_hold: bool = False) -> Outcome:
        """Decide one decoded request of an authenticated client.

        `after_hold`: the request was held for approval and the hold ended; a request still pending is now
        refused (with the pending message) instead of held again.
        """
        name = apis.api_name(api_key)
        if self.principal is None:
            reason = f"{name} request before SASL authentication"
            self.event("decision", api=name, api_version=version, decision="denied", reason=reason)
            return Refuse(reason, "unauthenticated")
        if self.expired():
            reason = "the client's token expired and the connection did not re-authenticate (KIP-368)"
            self.event("session_expired", api=name, api_version=version, decision="denied", reason=reason)
            return Refuse(reason, "expired")
        if not self.ctx.audit_available():
            self.stats.denied += 1
            self.event("decision", api=name, api_version=version, decision="denied",
                       reason=AUDIT_UNAVAILABLE_REASON)
            return Respond(authz.error_response(api_key, version, request, topic_name=self.topic_name,
                                                message=AUDIT_UNAVAILABLE_REASON))
        limits = self.ctx.limits if self.ctx.limits is not None and self.ctx.limits.active else None
        if limits is not None:
            verdict = limits.locked_out(self.principal)
            if verdict is not None:
                self.stats.denied += 1
                self._limit_event(verdict, name, version)
                if verdict.close_connection:
                    return Refuse(verdict.reason, "blocked")
                return Respond(authz.error_response(api_key, version, request, topic_name=self.topic_name,
                                                    message=verdict.reason))
        checks = authz.required_checks(api_key, version, request, self.topic_name)
        decisions = {c: self._decide(c) for c in checks}
        if any(d.needs_approval for d in decisions.values()):
            held = self._approval_gate(decisions, name, version, after_hold)
            if held is not None:
                return held
        if limits is not None and api_key == JOIN_GROUP and all(d.allowed for d in decisions.values()):
            verdict = self._join_group_verdict(limits, request)
            if verdict is not None and not verdict.allows:
                self._limit_event(verdict, name, version)
                if verdict.blocks:
                    self.stats.denied += 1
                    return Respond(authz.error_response(api_key, version, request, topic_name=self.topic_name,
                                                        message=verdict.reason))
        if api_key == apis.PRODUCE:
            return self._produce(version, request, decisions)
        if api_key == apis.FETCH:
            return self._fetch(version, request, decisions)
        if api_key == apis.METADATA:
            return self._metadata(version, request, decisions)
        denied = [(c, d) for c, d in decisions.items() if not d.allowed]
        if denied:
            self.stats.denied += 1
            for c, d in denied:
                self.event("decision", api=name, api_version=version, decision="denied", rule=d.rule,
                           reason=d.reason, topic=c.name if c.kind == "topic" else None, resource_kind=c.kind,
                           details=None if c.kind == "topic" else {"resource": c.name, "action": c.action})
            return Respond(authz.error_response(api_key, version, request, topic_name=self.topic_name))
        rules = sorted({d.rule for d in decisions.values() if d.rule})
        self.event("decision", api=name, api_version=version, decision="allowed",
                   rule=",".join(rules) or None,
                   details={"resources": [f"{c.kind}:{c.name}" for c in checks]} if checks else None)
        if api_key == 16:  # ListGroups: only the groups the principal may describe
            return Forward(on_response=lambda r: (partial.filter_list_groups_response(
                r, lambda g: self._allowed("describe", "group", g)), []))
        if api_key == 9:  # OffsetFetch: all-topics answers list every committed topic; filter them
            return Forward(on_response=lambda r: (partial.filter_offset_fetch_response(
                r, lambda t: self._allowed("describe", "topic", t)), []))
        if api_key == LIST_OFFSETS and limits is not None:
            return Forward(on_response=lambda r: self._remember_earliest(limits, request, r))
        return Forward()

    # --------------------------------------------------------------------------------------- approvals
    def _approval_gate(self, decisions: dict[authz.Check, Decision], api: str, version: int,
                       after_hold: bool) -> Hold | None:
        """Replace approval-gated decisions by the gate's answer: granted stays allowed, denied/pending become
        denials with the reviewer's message; returns a Hold when a request should wait for a reviewer."""
        from gateway.enforcement import approvals as approvals_logic

        gate = self.ctx.approvals
        assert self.principal is not None
        requester = approvals_logic.Requester(sub=self.principal.sub, email=self.principal.email,
                                              groups=self.principal.groups, client_address=self.client_address,
                                              client_id=self.client_id)
        holds: list[Any] = []
        hold_s = 0.0
        for check, d in list(decisions.items()):
            if not d.needs_approval:
                continue
            resource = Resource(check.kind, check.name)  # type: ignore[arg-type]
            if gate is None:
                decisions[check] = Decision(False, d.rule, "approval required but no approval store is configured")
                continue
            try:
                result = gate.check(requester, check.action, resource, d.approval)
            except Exception as exc:  # the store is unusable: refuse rather than serve unapproved
                decisions[check] = Decision(False, d.rule, f"approval store unavailable: {exc}")
                continue
            if result.created:
                self.events.append(approvals_logic.approval_event(
                    approvals_logic.KIND_REQUESTED, result.record, connection_id=self.connection_id,
                    worker=self.ctx.worker_id, protocol="kafka"))
            if result.outcome == "granted":
                self.event("decision", api=api, api_version=version, decision="approved", rule=d.rule,
                           topic=check.name if check.kind == "topic" else None,
                           reason=f"grant {result.record.id} by {result.record.decided_by}")
                continue
            if result.outcome == "hold" and not after_hold:
                holds.append(result.record)
                hold_s = max(hold_s, d.approval.hold_s if d.approval else 0.0)
                continue
            self.event("decision", api=api, api_version=version,
                       decision="held" if result.outcome == "hold" else "denied", rule=d.rule,
                       topic=check.name if check.kind == "topic" else None, reason=result.message)
            # the approval spec stays on the refusal so responses that carry a message can tell the requester
            decisions[check] = Decision(False, d.rule, result.message, approval=d.approval)
        if holds:
            for record in holds:
                self.event("decision", api=api, api_version=version, decision="held",
                           topic=record.resource_name if record.resource_kind == "topic" else None,
                           rule=record.rule, reason=f"waiting up to {hold_s:g}s for approval request {record.id}")
            return Hold(holds, hold_s)
        return None

    # ------------------------------------------------------------------------------------------ limits
    def _limit_event(self, verdict: Any, api: str, version: int, topic: str | None = None) -> None:
        decision = {"block": "blocked", "throttle": "throttled", "alert": "alert"}.get(verdict.action, "allowed")
        for v in (verdict, *verdict.also):
            self.event("limit", api=api, api_version=version, decision=decision if v is verdict else
                       {"block": "blocked", "throttle": "throttled", "alert": "alert"}.get(v.action, "allowed"),
                       rule=v.rule, reason=v.reason, topic=topic,
                       details={"check": v.kind, **({"throttle_ms": v.throttle_ms} if v.throttle_ms else {})})

    def _join_group_verdict(self, limits: Any, request: Any) -> Any:
        """Wildcard or privileged subscriptions, from the consumer protocol metadata of a JoinGroup."""
        from gateway.enforcement.limits import most_severe

        topics: list[str] = []
        for protocol in request.protocols or ():
            try:
                sub, _ = codec.decode_data("ConsumerProtocolSubscription",
                                           int.from_bytes(bytes(protocol.metadata[:2]), "big", signed=True),
                                           protocol.metadata, 2)
                topics.extend(t for t in sub.topics if t not in topics)
            except (codec.CodecError, ValueError, IndexError, TypeError):
                continue  # not a consumer-protocol group (e.g. connect): nothing to judge here
        if not topics:
            return None
        wildcard = self._saw_all_topics_metadata or limits.listed_all_topics(self.principal, self._client_key())
        return most_severe([limits.on_subscription(self.principal, topics, wildcard=wildcard)])

    def _client_key(self) -> str:
        """One client instance across its connections (librdkafka lists topics and joins on different ones)."""
        return f"{self.client_id}@{self.client_address.rsplit(':', 1)[0]}"

    def _remember_earliest(self, limits: Any, request: Any, response: Any) -> tuple[None, list[AuditEvent]]:
        asked = {(t.name, p.partition_index): p.timestamp for t in request.topics for p in t.partitions}
        for t in response.topics:
            offsets: dict[int, dict[int, int]] = {}
            for p in t.partitions:
                ts = asked.get((t.name, p.partition_index))
                if ts in (-2, -4) and p.error_code == 0:
                    offsets.setdefault(ts, {})[p.partition_index] = p.offset
            for ts, by_partition in offsets.items():
                limits.on_list_offsets(self.principal, t.name, by_partition, ts)
        return None, []

    def _scan(self, detectors: frozenset[str], records: bytes | memoryview) -> dict[str, int]:
        """Findings of `detectors` in a record blob (values), for limits that count or block on content."""
        if not detectors or self.ctx.maskers is None or not records:
            return {}
        try:
            scanner = self.ctx.maskers.scanner(detectors)
            counts: dict[str, int] = {}

            def count(values: list[bytes | None]) -> tuple[list[bytes | None], dict[str, int]]:
                for k, v in scanner.scan_counts(values).items():
                    counts[k] = counts.get(k, 0) + v
                return values, {}

            rewrite_records(records, count, allow_legacy=False)
            return counts
        except (RecordsError, MaskingConfigError) as exc:
            raise _ScrubFailed(f"records could not be scanned: {exc}") from None

    def _decide(self, check: authz.Check) -> Decision:
        return self.ctx.policy.decide(self.principal, check.action, Resource(check.kind, check.name))

    def _allowed(self, action: str, kind: str, name: str) -> bool:
        return self.ctx.policy.decide(self.principal, action, Resource(kind, name)).allowed  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------------- produce
    def _produce(self, version: int, request: Any, decisions: dict[authz.Check, Decision]) -> Outcome:
        txn = [d for c, d in decisions.items() if c.kind == "transactional_id" and not d.allowed]
        if txn:
            self.stats.denied += 1
            self.event("decision", api="Produce", api_version=version, decision="denied", rule=txn[0].rule,
                       reason=txn[0].reason, resource_kind="transactional_id")
            if request.acks == 0:
                return Refuse("acks=0 Produce denied (transactional id not authorized)", "denied")
            return Respond(partial.produce_denied_response(request, version))
        topic_decision = {c.name: d for c, d in decisions.items() if c.kind == "topic"}
        limits = self.ctx.limits if self.ctx.limits is not None and self.ctx.limits.active else None
        content_blocks: dict[str, str] = {}  # topic -> why its records were refused (INVALID_RECORD)
        if limits is not None:
            for topic in request.topic_data:
                d = topic_decision[topic.name]
                interest = limits.interest(self.principal, topic.name)
                if not d.allowed or not interest.produce_detectors:
                    continue
                findings: dict[str, int] = {}
                try:
                    for part in topic.partition_data:
                        for k, v in self._scan(interest.produce_detectors, part.records or b"").items():
                            findings[k] = findings.get(k, 0) + v
                except _ScrubFailed as exc:
                    topic_decision[topic.name] = Decision(False, None, str(exc))
                    continue
                verdict = limits.before_produce(self.principal, topic.name, findings)
                if not verdict.allows:
                    self._limit_event(verdict, "Produce", version, topic.name)
                if verdict.blocks:
                    topic_decision[topic.name] = Decision(False, verdict.rule, verdict.reason)
                    content_blocks[topic.name] = verdict.reason
                    if verdict.close_connection:
                        return Refuse(verdict.reason, "blocked")
        forward, denied = partial.split_produce(request, lambda t: topic_decision[t].allowed)
        # approval refusals (pending / denied by a reviewer) tell the requester why; policy denials stay generic
        messages = {t: d.reason for t, d in topic_decision.items() if not d.allowed and d.approval is not None}
        messages.update(content_blocks)
        sizes: dict[tuple[str, int], tuple[int, int, int]] = {}  # (topic, partition) -> (records, bytes, delta)
        for topic in request.topic_data:
            d = topic_decision[topic.name]
            for part in topic.partition_data:
                count, last_delta = _batch_counts(part.records)
                size = len(part.records or b"")
                if not d.allowed:
                    self.stats.denied += 1
                    self.event("decision", api="Produce", api_version=version, decision="denied", rule=d.rule,
                               reason=d.reason, topic=topic.name, partition=part.index, record_count=count,
                               size=size)
                else:
                    sizes[(topic.name, part.index)] = (count, size, last_delta)
        if forward is None:  # everything denied
            if request.acks == 0:
                return Refuse("acks=0 Produce denied by policy", "denied")
            return Respond(partial.produce_denied_response(request, version, content_blocks, messages))
        try:
            scrubbed = self._scrub_produce(forward, topic_decision, version) if self.ctx.maskers else None
        except _ScrubFailed as exc:
            self.stats.denied += 1
            self.event("decision", api="Produce", api_version=version, decision="denied", reason=str(exc))
            if request.acks == 0:
                return Refuse(f"acks=0 Produce refused: {exc}", "denied")
            return Respond(partial.produce_denied_response(request, version))
        replacement = forward if (denied or scrubbed is not None) else None
        if request.acks == 0:  # no response will come: record what was forwarded now
            for (topic_name, index), (count, size, _) in sizes.items():
                self.stats.records_in += count
                self.event("decision", api="Produce", api_version=version, decision="allowed",
                           rule=topic_decision[topic_name].rule, topic=topic_name, partition=index,
                           record_count=count, size=size, details={"acks": 0})
            return Forward(replacement=replacement, expects_response=False)

        def on_response(response: Any) -> tuple[Any | None, list[AuditEvent]]:
            for t in response.responses:
                for p in t.partition_responses:
                    key = (t.name, p.index)
                    if key not in sizes:
                        continue
                    count, size, last_delta = sizes[key]
                    offsets = Offsets(first=p.base_offset, last=p.base_offset + last_delta) \
                        if p.error_code == 0 and p.base_offset >= 0 and count else None
                    if p.error_code == 0:
                        self.stats.records_in += count
                    self.event("decision", api="Produce", api_version=version,
                               decision="allowed" if p.error_code == 0 else "error",
                               rule=topic_decision[t.name].rule, topic=t.name, partition=p.index,
                               offsets=offsets, record_count=count, size=size,
                               reason=None if p.error_code == 0 else f"broker error code {p.error_code}")
            merged = (partial.merge_produce_response(response, denied, version, content_blocks, messages)
                      if denied else None)
            return merged, []

        return Forward(replacement=replacement, on_response=on_response)

    # ------------------------------------------------------------------------------------------ fetch
    def _fetch(self, version: int, request: Any, decisions: dict[authz.Check, Decision]) -> Outcome:
        topic_decision = {c.name: d for c, d in decisions.items() if c.kind == "topic"}
        cluster_denied = [d for c, d in decisions.items() if c.kind == "cluster" and not d.allowed]
        if cluster_denied:
            self.stats.denied += 1
            self.event("decision", api="Fetch", api_version=version, decision="denied",
                       rule=cluster_denied[0].rule, reason="follower fetch requires alter on the cluster")
            return Respond(authz.error_response(1, version, request, topic_name=self.topic_name))

        limits = self.ctx.limits if self.ctx.limits is not None and self.ctx.limits.active else None
        throttle_ms = 0
        if limits is not None:
            throttle_ms = self._before_fetch_limits(limits, version, request, topic_decision)
            if throttle_ms < 0:
                return Refuse("bulk read blocked; connection closed by the rule", "blocked")

        def allowed_topic(name: str) -> bool:
            d = topic_decision.get(name)
            return d is not None and d.allowed

        forward, denied = partial.split_fetch(request, allowed_topic, self.topic_name, version)
        for entry in denied:
            d = topic_decision.get(entry.name) if entry.name else None
            self.stats.denied += 1
            self.event("decision", api="Fetch", api_version=version, decision="denied",
                       rule=d.rule if d else None,
                       reason=d.reason if d else "unknown topic id (not seen in this gateway's metadata)",
                       topic=entry.name)
        if forward is None:
            return Respond(partial.fetch_denied_response(request, denied, version))
        if version >= 7 and forward.session_epoch != -1:
            # No broker fetch session may form through the gateway: incremental fetches omit partitions the
            # session already holds, and policy (revocation, grant expiry) must see every partition each time.
            forward = partial.leave_fetch_session(forward, version)
            session_rewritten = True
        else:
            session_rewritten = False
        fetch_offsets: dict[tuple[str, int], int] = {}
        for t in forward.topics:
            name = t.topic if version < 13 else (self.topic_name(t.topic_id) or "")
            for p in t.partitions:
                fetch_offsets[(name, p.partition)] = p.fetch_offset

        def inspect(frame: memoryview, fetch_skim: Any) -> bytes | None:
            replacements: list[tuple[Any, bytes]] = []
            errors: dict[int, int] = {}  # partition error-code offset -> new code (withheld partitions)
            delivered_parts: list[dict[str, Any]] = []  # one per partition that delivers records
            for span in fetch_skim.partitions:
                name = span.topic if version < 13 else (self.topic_name(span.topic_id) or str(span.topic_id))
                d = topic_decision.get(name)
                if span.error_code != 0:
                    self.event("decision", api="Fetch", api_version=version, decision="error",
                               rule=d.rule if d else None, topic=name, partition=span.partition,
                               reason=f"broker error code {span.error_code}")
                    continue
                if span.records_start < 0 or span.records_end == span.records_start:
                    continue  # nothing delivered: no event for empty long-poll answers
                records = frame[span.records_start : span.records_end]
                part: dict[str, Any] = {"span": span, "topic": name, "rule": d.rule if d else None,
                                        "records": records, "decision": "allowed", "reason": None,
                                        "masked_counts": None}
                if d is not None and d.masks:
                    blob, part["masked_counts"], part["reason"] = self._mask_fetched(d.masks, records)
                    part["decision"] = "masked" if part["reason"] is None else "blocked"
                    if blob is not None:
                        replacements.append((span, blob))
                    if part["reason"] is not None:
                        errors[span.error_at] = authz.TOPIC_AUTHORIZATION_FAILED
                part["delivered"] = _delivered_span(records, fetch_offsets.get((name, span.partition), 0))
                delivered_parts.append(part)
            throttle = throttle_ms
            if limits is not None:
                throttle = max(throttle, self._after_fetch_limits(limits, version, delivered_parts, replacements,
                                                                  errors))
            for part in delivered_parts:  # audit what actually leaves, after masking and limits
                if part["delivered"] is None:
                    continue
                first, last, count = part["delivered"]
                if part["decision"] in ("allowed", "masked"):
                    self.stats.records_out += count
                self.event("decision", api="Fetch", api_version=version, decision=part["decision"],
                           rule=part["rule"], topic=part["topic"], partition=part["span"].partition,
                           offsets=Offsets(first=first, last=last), record_count=count,
                           size=len(part["records"]), masked_counts=part["masked_counts"], reason=part["reason"])
            self.mute_ms = max(self.mute_ms, throttle)
            if not replacements and not errors and not throttle:
                return None
            replacements.sort(key=lambda item: item[0].prefix_start)
            return skim.splice_records(frame, replacements, version >= 12, errors=errors,
                                       throttle=(fetch_skim.body_start, throttle) if throttle else None)

        def on_response(response: Any) -> tuple[Any | None, list[AuditEvent]]:
            return partial.merge_fetch_response(response, denied, version), []

        return Forward(replacement=forward if (denied or session_rewritten) else None,
                       on_response=on_response if denied else None, inspect=inspect)

    def _before_fetch_limits(self, limits: Any, version: int, request: Any,
                             topic_decision: dict[str, Decision]) -> int:
        """Bulk-read rules before any data leaves; blocked topics become denials. Returns the throttle (ms), or
        -1 when a rule closes the connection."""
        from gateway.enforcement.limits import most_severe

        throttle = 0
        request_max = request.max_bytes if version >= 3 else None
        for t in request.topics:
            name = t.topic if version < 13 else self.topic_name(t.topic_id)
            d = topic_decision.get(name or "")
            if name is None or d is None or not d.allowed or not limits.interest(self.principal, name).bulk_read:
                continue
            partitions = [(p.partition, p.fetch_offset, p.fetch_offset <= 0) for p in t.partitions]
            topic_max = sum(max(p.partition_max_bytes, 0) for p in t.partitions)
            max_bytes = min(topic_max, request_max) if request_max is not None else topic_max
            verdict = most_severe([limits.before_fetch(self.principal, name, partitions, max_bytes,
                                                       partition_count=self.ctx.partition_count(name))])
            if verdict.allows:
                continue
            self._limit_event(verdict, "Fetch", version, name)
            if verdict.blocks:
                if verdict.close_connection:
                    return -1
                topic_decision[name] = Decision(False, verdict.rule, verdict.reason)
            elif verdict.action == "throttle":
                throttle = max(throttle, verdict.throttle_ms)
        return throttle

    def _after_fetch_limits(self, limits: Any, version: int, parts: list[dict[str, Any]],
                            replacements: list[tuple[Any, bytes]], errors: dict[int, int]) -> int:
        """Volume windows once the data is known (and masked): a block withholds this topic's records from this
        response (error 29, no records: the client does not advance). Returns the throttle in ms."""
        throttle = 0
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for part in parts:
            if part["decision"] != "blocked" and part["delivered"] is not None:
                by_topic.setdefault(part["topic"], []).append(part)
        for name, topic_parts in by_topic.items():
            interest = limits.interest(self.principal, name)
            if not interest.count_fetch:
                continue
            findings: dict[str, int] = {}
            for part in topic_parts:
                counts = part["masked_counts"]
                if counts is None:
                    counts = self._scan(interest.fetch_detectors, part["records"])
                for k, v in counts.items():
                    findings[k] = findings.get(k, 0) + v
            verdict = limits.after_fetch(self.principal, name, sum(p["delivered"][2] for p in topic_parts),
                                         sum(len(p["records"]) for p in topic_parts), findings)
            if verdict.allows:
                continue
            self._limit_event(verdict, "Fetch", version, name)
            if verdict.blocks:
                self.stats.denied += 1
                withheld = {id(p["span"]) for p in topic_parts}
                replacements[:] = [r for r in replacements if id(r[0]) not in withheld]
                for part in topic_parts:
                    replacements.append((part["span"], b""))
                    errors[part["span"].error_at] = authz.TOPIC_AUTHORIZATION_FAILED
                    part["decision"], part["reason"] = "blocked", verdict.reason
            elif verdict.action == "throttle":
                throttle = max(throttle, verdict.throttle_ms)
        return throttle

    def _mask_fetched(self, masks: tuple[str, ...], records: memoryview
                      ) -> tuple[bytes | None, dict[str, int] | None, str | None]:
        """(replacement blob or None if unchanged, counts per detector, reason when delivery was blocked)."""
        try:
            engine, profile = self.ctx.maskers.engine(masks)
            blob, counts = _mask_blob(engine, profile, records)
        except (RecordsError, MaskingConfigError, AttributeError) as exc:
            # fail closed: never deliver records in clear that policy says must be masked
            return b"", None, f"records could not be masked and were withheld: {exc}"
        return (None if blob is records else bytes(blob)), counts, None

    def _scrub_produce(self, request: Any, topic_decision: dict[str, Decision], version: int) -> Any:
        """scrub_on_produce: mask records under a rule whose profile says so, before they reach the broker."""
        changed = False
        for topic in request.topic_data:
            d = topic_decision.get(topic.name)
            if d is None or not d.allowed or not d.masks or self.ctx.maskers is None:
                continue
            engine, profile = self.ctx.maskers.engine(d.masks)
            if not profile.scrub_on_produce:
                continue
            for part in topic.partition_data:
                if not part.records:
                    continue
                try:
                    blob, counts = _mask_blob(engine, profile, part.records)
                except RecordsError as exc:
                    raise _ScrubFailed(f"records for {topic.name}[{part.index}] could not be scrubbed: {exc}") \
                        from None
                if counts:
                    self.event("decision", api="Produce", api_version=version, decision="masked", rule=d.rule,
                               topic=topic.name, partition=part.index, masked_counts=counts,
                               reason="scrubbed on produce")
                if blob is not part.records:
                    part.records = bytes(blob)
                    changed = True
        return request if changed else None

    # --------------------------------------------------------------------------------------- metadata
    def _metadata(self, version: int, request: Any, decisions: dict[authz.Check, Decision]) -> Outcome:
        create_denied = [c for c, d in decisions.items() if c.action == "create" and not d.allowed]
        replacement = None
        if create_denied and request.allow_auto_topic_creation:
            if version < 4:  # auto-creation cannot be switched off before v4: ask without creating
                requested = partial.requested_metadata_topics(request, version) or frozenset()
                self.event("decision", api="Metadata", api_version=version, decision="denied",
                           reason="auto topic creation not allowed; Metadata < v4 always auto-creates",
                           details={"topics": sorted(requested)})
                return Respond(authz.error_response(3, version, request, topic_name=self.topic_name))
            replacement = partial.disable_auto_create(request)
        requested = partial.requested_metadata_topics(request, version)
        if requested is None:
            self._saw_all_topics_metadata = True
            if self.ctx.limits is not None and self.ctx.limits.active:
                self.ctx.limits.on_topic_listing(self.principal, self._client_key())
        self.event("decision", api="Metadata", api_version=version, decision="allowed",
                   details={"topics": sorted(requested) if requested is not None else "all",
                            **({"auto_create_disabled": True} if replacement is not None else {})})

        def on_response(response: Any) -> tuple[Any | None, list[AuditEvent]]:
            return partial.filter_metadata_response(
                response, lambda t: self._allowed("describe", "topic", t), requested), []

        return Forward(replacement=replacement, on_response=on_response)


def _mask_blob(engine: Any, profile: Any, records: bytes | memoryview) -> tuple[bytes | memoryview, dict[str, int]]:
    """Mask a record blob; a trailing partial batch is dropped (its raw bytes would leak unmasked values)."""
    blob, stats = rewrite_records(records, engine.mask_values, keys=profile.keys, headers=profile.headers,
                                  allow_legacy=False)
    if stats.trailing_partial_bytes:
        blob = bytes(memoryview(blob)[: len(blob) - stats.trailing_partial_bytes])
    return blob, dict(stats.counts)


def _batch_counts(records: bytes | None) -> tuple[int, int]:
    """(record count, last offset delta relative to the first batch) of a produce request's record blob."""
    if not records:
        return 0, -1
    try:
        headers, _partial_at = scan_batches(records)
    except BatchFormatError:
        return 0, -1
    if not headers:
        return 0, -1
    count = sum(h.record_count for h in headers)
    return count, (headers[-1].base_offset + headers[-1].last_offset_delta) - headers[0].base_offset


def _delivered_span(records: bytes | memoryview, fetch_offset: int) -> tuple[int, int, int] | None:
    """(first, last, count) of the records a consumer receives from a fetched blob, from batch headers only.

    Batches may start before the fetch offset (compressed batches are returned whole); the client skips
    those records, so they are not counted as delivered. A trailing partial batch is not delivered either.
    """
    if not records:
        return None
    try:
        headers, _partial_at = scan_batches(records)
    except BatchFormatError:
        return None
    first = last = None
    count = 0
    for h in headers:
        if h.is_control:
            continue
        batch_last = h.base_offset + h.last_offset_delta
        if batch_last < fetch_offset:
            continue
        start = max(h.base_offset, fetch_offset)
        first = start if first is None else first
        last = batch_last
        count += h.record_count if h.base_offset >= fetch_offset else batch_last - start + 1
    if first is None or last is None:
        return None
    return first, last, count
