"""Exfiltration limits: volume windows, bulk-read patterns and produce-side content rules (sans-IO).

What this module is for: a protocol session asks the `LimitsEngine` before and after data moves, and gets a
`Verdict` back: allow, alert (audit only), throttle (delay by `throttle_ms`) or block. The engine never touches a
socket; the time comes from an injected clock, and every count that must agree across worker processes lives
in a `WindowStore` (`gateway/store/limits_sqlite.py` is the shared SQLite one; `MemoryWindowStore` below serves
one process and the tests). docs/limits.md describes the configuration and how a protocol wires the hooks.

Rules this module keeps
-----------------------
* **Who and what.** A rule applies to a principal whose subject is in `subjects` or one of whose groups is in
  `groups` (`"*"` = anyone), unless the principal is in `exempt_groups`/`exempt_subjects`; and to topics matching
  its `topics` globs (policy's `NamePatterns`: `*` any run, `?` one character). Matching is compiled once and
  memoised per (subject, groups, topic), so a principal no rule watches costs one cache lookup.
* **Sliding windows** are 60 buckets of `window / 60` each: traffic older than `window` never counts and traffic
  younger than `window - window/60` always does. Counts are per principal or per principal and topic (`per`).
* **Block is exact.** A `block` rule's counters are checked and added in one atomic store operation, and a batch
  that would take any of them over its limit is refused and *not counted*: what a principal receives stays at or
  below the limit, however many workers serve it, and reaches at least `limit - one batch` before the first
  refusal. The verdict of `after_fetch` applies to the response it was asked about (do not deliver it).
* **Throttle** delivers and counts, then asks for a delay: `throttle_ms` is the time until enough of the window's
  older traffic has left it that the sum is back at or below the limit (exact for the bucketed window), capped
  at `max_throttle` so that a delayed response never outlives a client's request timeout.
* **Alert never blocks**: it delivers, counts, and reports the batch that crossed a limit (once per crossing,
  whichever worker saw it), for rolling a rule out in shadow mode.
* **Bulk-read patterns are checked before data leaves** (`before_fetch`, `on_subscription`); a fetch refused by a
  block rule does not count towards the patterns either.
* **Lockout**: a block rule with `lockout` shuts the principal out of everything for that long, on every worker
  (each worker re-reads lockouts at least every `lockout_poll`; the one that set it knows at once).
* **Store failure** (disk full, database locked beyond the busy timeout) never raises into the session: the
  verdict follows `on_store_error` (`allow` = an alert verdict saying the limits could not be checked, or
  `block`).
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from gateway.enforcement.decisions import PolicySubject
from gateway.enforcement.policy import ANY_PRINCIPAL, NamePatterns, parse_duration

BUCKETS_PER_WINDOW = 60
DEFAULT_CACHE_SIZE = 65536
# ListOffsets timestamps that ask for the earliest offset: EARLIEST (-2) and EARLIEST_LOCAL (-4, KIP-405).
EARLIEST_TIMESTAMPS = frozenset({-2, -4})
# Upper bound on remembered ListOffsets-earliest lookups per worker (one entry per principal, topic, partition).
MAX_REMEMBERED_LOOKUPS = 100_000


class LimitsError(ValueError):
    """The limits configuration is invalid; the message names the rule and key at fault."""


class WindowStoreError(Exception):
    """The shared store could not be read or written (the engine turns this into an `on_store_error` verdict)."""


# --------------------------------------------------------------------------------------------------------
# Configuration shape (decoded from YAML `limits:` by gateway/config.py, or by `parse_limits`)
# --------------------------------------------------------------------------------------------------------

RuleAction = Literal["block", "throttle", "alert"]
Duration = str | int | float


class LimitRule(msgspec.Struct, forbid_unknown_fields=True):
    """Volume over a sliding window: records, bytes and sensitive findings delivered by fetches."""

    name: str
    topics: list[str]
    groups: list[str] = msgspec.field(default_factory=list)
    subjects: list[str] = msgspec.field(default_factory=list)
    exempt_groups: list[str] = msgspec.field(default_factory=list)
    exempt_subjects: list[str] = msgspec.field(default_factory=list)
    window: Duration = "1m"
    max_records: int | None = None
    max_bytes: int | None = None
    max_findings: dict[str, int] | None = None  # detector id -> most findings per window, e.g. {us_ssn: 50}
    per: Literal["principal", "principal_topic"] = "principal"
    action: RuleAction = "block"
    lockout: Duration | None = None  # block only: lock the principal out this long
    close_connection: bool = False  # block only: close the connection after the error response


class BulkReadRule(msgspec.Struct, forbid_unknown_fields=True):
    """Read patterns on privileged topics that are refused (or flagged) before any data leaves."""

    name: str
    topics: list[str]  # the privileged topics
    groups: list[str] = msgspec.field(default_factory=list)
    subjects: list[str] = msgspec.field(default_factory=list)
    exempt_groups: list[str] = msgspec.field(default_factory=list)
    exempt_subjects: list[str] = msgspec.field(default_factory=list)
    # More distinct partitions read from their earliest offset within `window` than this trips the rule.
    max_partitions_from_earliest: int | None = None
    max_fetch_bytes: int | None = None  # a fetch allowed to return more than this
    deny_wildcard_subscription: bool = False  # a wildcard subscription that covers a privileged topic
    # Every partition of the topic read from its earliest offset within `window` trips the rule.
    earliest_full_read: bool = False
    window: Duration = "10m"  # how long a partition read from earliest is remembered
    action: RuleAction = "block"
    throttle: Duration = "1s"  # throttle only: the delay per triggering request
    lockout: Duration | None = None
    close_connection: bool = False


class ContentRule(msgspec.Struct, forbid_unknown_fields=True):
    """Produce side: refuse (or flag) a batch whose payload matches detectors, unless the topic is for secrets."""

    name: str
    detectors: list[str]
    topics: list[str] = msgspec.field(default_factory=lambda: ["*"])
    allow_topics: list[str] = msgspec.field(default_factory=list)  # topics marked for secrets
    groups: list[str] = msgspec.field(default_factory=lambda: [ANY_PRINCIPAL])
    subjects: list[str] = msgspec.field(default_factory=list)
    exempt_groups: list[str] = msgspec.field(default_factory=list)
    exempt_subjects: list[str] = msgspec.field(default_factory=list)
    min_findings: int = 1  # findings (summed over `detectors`) in one produce batch that trigger the rule
    action: Literal["block", "alert"] = "block"
    lockout: Duration | None = None
    close_connection: bool = False


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[LimitRule] = msgspec.field(default_factory=list)
    bulk_read: list[BulkReadRule] = msgspec.field(default_factory=list)
    content: list[ContentRule] = msgspec.field(default_factory=list)
    store_path: str | None = None  # the shared SQLite file; None lets the gateway pick one in its state dir
    max_throttle: Duration = "10s"  # below Kafka clients' request timeouts (Java 30s, librdkafka 60s)
    lockout_poll: Duration = "500ms"  # how often a worker re-reads lockouts set by other workers
    on_store_error: Literal["allow", "block"] = "allow"


def parse_limits(data: Any, path: str = "limits") -> LimitsConfig:
    """Decode the parsed YAML value of `limits:` (a dict); errors name the key path."""
    try:
        return msgspec.convert(data if data is not None else {}, LimitsConfig)
    except msgspec.ValidationError as exc:
        raise LimitsError(str(exc).replace("$", path)) from None


# --------------------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------------------

VerdictAction = Literal["allow", "block", "throttle", "alert"]
_SEVERITY: dict[str, int] = {"allow": 0, "alert": 1, "throttle": 2, "block": 3}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one request or response.

    `rule` names the rule that decided (None for allow and store failures); `kind` says which check tripped:
    `records`, `bytes`, `findings:<detector>`, `fetch_bytes`, `partitions_from_earliest`, `earliest_full_read`,
    `wildcard_subscription`, `content`, `lockout` or `store_error`. `also` carries the other rules that tripped
    on the same request (all non-allow), so the audit trail can record every hit.
    """

    action: VerdictAction
    rule: str | None
    reason: str
    throttle_ms: int = 0
    close_connection: bool = False
    lockout_until: float | None = None
    kind: str = ""
    also: tuple[Verdict, ...] = ()

    @property
    def blocks(self) -> bool:
        return self.action == "block"

    @property
    def allows(self) -> bool:
        return self.action == "allow"


ALLOW = Verdict("allow", None, "within limits")


def most_severe(verdicts: Iterable[Verdict]) -> Verdict:
    """Merge verdicts (e.g. one per topic of a fetch): block > throttle > alert > allow.

    The first most severe verdict leads; a throttle lead takes the longest delay of all throttles; every other
    non-allow verdict (and their own `also`) ends up in `also`.
    """
    hits: list[Verdict] = []
    for verdict in verdicts:
        if verdict.action != "allow":
            hits.append(verdict)
            hits.extend(verdict.also)
    if not hits:
        return ALLOW
    lead = max(hits, key=lambda v: _SEVERITY[v.action])  # max() keeps the first of equals
    others = tuple(dict.fromkeys(_flat(v) for v in hits if v is not lead))
    throttle_ms = max((v.throttle_ms for v in hits if v.action == "throttle"), default=0)
    return Verdict(
        lead.action,
        lead.rule,
        lead.reason,
        throttle_ms if lead.action == "throttle" else lead.throttle_ms,
        any(v.close_connection for v in hits if v.action == "block"),
        lead.lockout_until,
        lead.kind,
        others,
    )


def _flat(verdict: Verdict) -> Verdict:
    if not verdict.also:
        return verdict
    return Verdict(
        verdict.action,
        verdict.rule,
        verdict.reason,
        verdict.throttle_ms,
        verdict.close_connection,
        verdict.lockout_until,
        verdict.kind,
    )


@dataclass(frozen=True, slots=True)
class Interest:
    """Which hooks matter for a (principal, topic), so a session can skip the work nobody asked for.

    `count_fetch`: call `after_fetch`; `fetch_detectors`: the finding counts `after_fetch` needs (scan the records
    for these even when no mask applies); `bulk_read`: call `before_fetch` and `on_list_offsets`;
    `produce_detectors`: scan produced records for these and call `before_produce` (empty: no content rule).
    """

    count_fetch: bool = False
    fetch_detectors: frozenset[str] = frozenset()
    bulk_read: bool = False
    produce_detectors: frozenset[str] = frozenset()


NO_INTEREST = Interest()


# --------------------------------------------------------------------------------------------------------
# The shared-state interface
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """Add `amount` to the window counter `key`. With `limit`, the whole `add` call is refused (nothing is
    written) if this counter's window sum would exceed it."""

    key: str
    amount: int
    window_s: float
    limit: int | None = None

    @property
    def bucket_s(self) -> float:
        return self.window_s / BUCKETS_PER_WINDOW


@dataclass(frozen=True, slots=True)
class WindowAddResult:
    """`sums[i]` is update i's window sum including its amount (what it is, or would have been if refused)."""

    accepted: bool
    sums: tuple[int, ...]
    refused_by: int | None = None  # index of the first update whose limit refused the call


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """Remember `members` in the set `key` for `ttl_s`. With `max_count`, the whole call is refused if the set's
    distinct live members would exceed it."""

    key: str
    members: tuple[str, ...]
    ttl_s: float
    max_count: int | None = None


@dataclass(frozen=True, slots=True)
class MemberAddResult:
    """`counts[i]` is set i's distinct live members including the new ones (added or refused)."""

    accepted: bool
    counts: tuple[int, ...]
    refused_by: int | None = None


@dataclass(frozen=True, slots=True)
class Lockout:
    subject: str
    until: float
    rule: str
    reason: str
    close_connection: bool = False


class WindowStore(Protocol):
    """State shared by every worker. Each method is atomic with respect to all other callers of the same store.

    Bucket arithmetic (identical in every implementation): bucket index `floor(now / bucket_s)`; a window holds
    the `BUCKETS_PER_WINDOW` newest indices; bucket b leaves the window at `(b + BUCKETS_PER_WINDOW) * bucket_s`.
    """

    def add(self, updates: Sequence[WindowUpdate], now: float) -> WindowAddResult: ...

    def buckets(self, key: str, window_s: float, now: float) -> list[tuple[float, int]]:
        """(time the bucket leaves the window, amount) for every live bucket of `key`, oldest first."""
        ...

    def add_members(self, updates: Sequence[MemberUpdate], now: float) -> MemberAddResult: ...

    def set_lockout(self, lockout: Lockout) -> None:
        """Record a lockout; an existing one for the same subject is replaced only by a later `until`."""
        ...

    def active_lockouts(self, now: float) -> dict[str, Lockout]: ...

    def close(self) -> None: ...


def bucket_index(now: float, bucket_s: float) -> int:
    return math.floor(now / bucket_s)


class MemoryWindowStore:
    """A `WindowStore` for one process (single-worker gateways, unit tests). Same arithmetic as the SQLite one."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[int, int]] = {}
        self._members: dict[str, dict[str, float]] = {}
        self._lockouts: dict[str, Lockout] = {}

    def _sum(self, key: str, window_s: float, now: float) -> int:
        bucket_s = window_s / BUCKETS_PER_WINDOW
        oldest = bucket_index(now, bucket_s) - BUCKETS_PER_WINDOW + 1
        buckets = self._buckets.get(key)
        if not buckets:
            return 0
        for stale in [b for b in buckets if b < oldest]:
            del buckets[stale]
        return sum(buckets.values())

    def add(self, updates: Sequence[WindowUpdate], now: float) -> WindowAddResult:
        sums = tuple(self._sum(u.key, u.window_s, now) + u.amount for u in updates)
        for i, (update, total) in enumerate(zip(updates, sums, strict=True)):
            if update.limit is not None and total > update.limit:
                return WindowAddResult(False, sums, i)
        for update in updates:
            buckets = self._buckets.setdefault(update.key, {})
            index = bucket_index(now, update.bucket_s)
            buckets[index] = buckets.get(index, 0) + update.amount
        return WindowAddResult(True, sums)

    def buckets(self, key: str, window_s: float, now: float) -> list[tuple[float, int]]:
        self._sum(key, window_s, now)
        bucket_s = window_s / BUCKETS_PER_WINDOW
        return [
            ((b + BUCKETS_PER_WINDOW) * bucket_s, amount)
            for b, amount in sorted(self._buckets.get(key, {}).items())
        ]

    def add_members(self, updates: Sequence[MemberUpdate], now: float) -> MemberAddResult:
        counts = []
        for update in updates:
            live = {m for m, expires in self._members.get(update.key, {}).items() if expires > now}
            counts.append(len(live | set(update.members)))
        for i, (update, count) in enumerate(zip(updates, counts, strict=True)):
            if update.max_count is not None and count > update.max_count:
                return MemberAddResult(False, tuple(counts), i)
        for update in updates:
            members = self._members.setdefault(update.key, {})
            for stale in [m for m, expires in members.items() if expires <= now]:
                del members[stale]
            for member in update.members:
                members[member] = now + update.ttl_s
        return MemberAddResult(True, tuple(counts))

    def set_lockout(self, lockout: Lockout) -> None:
        current = self._lockouts.get(lockout.subject)
        if current is None or lockout.until > current.until:
            self._lockouts[lockout.subject] = lockout

    def active_lockouts(self, now: float) -> dict[str, Lockout]:
        return {s: lock for s, lock in self._lockouts.items() if lock.until > now}

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------------
# Compiled rules
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Who:
    groups: frozenset[str]
    subjects: frozenset[str]
    anyone: bool
    exempt_groups: frozenset[str]
    exempt_subjects: frozenset[str]

    def matches(self, sub: str, groups: Sequence[str]) -> bool:
        if sub in self.exempt_subjects or any(g in self.exempt_groups for g in groups):
            return False
        return self.anyone or sub in self.subjects or any(g in self.groups for g in groups)


@dataclass(frozen=True)
class _Common:
    name: str
    who: _Who
    topics: NamePatterns
    action: str
    lockout_s: float | None
    close_connection: bool


@dataclass(frozen=True)
class _Limit(_Common):
    window_s: float
    window_text: str
    caps: tuple[tuple[str, int], ...]  # (measure, limit): measure is records, bytes or findings:<detector>
    per_topic: bool


@dataclass(frozen=True)
class _BulkRead(_Common):
    window_s: float
    window_text: str
    max_partitions_from_earliest: int | None
    max_fetch_bytes: int | None
    deny_wildcard_subscription: bool
    earliest_full_read: bool
    throttle_ms: int

    @property
    def watches_earliest(self) -> bool:
        return self.max_partitions_from_earliest is not None or self.earliest_full_read


@dataclass(frozen=True)
class _Content(_Common):
    allow_topics: NamePatterns
    detectors: tuple[str, ...]
    min_findings: int


@dataclass(frozen=True)
class _TopicRules:
    limits: tuple[_Limit, ...] = ()
    bulk: tuple[_BulkRead, ...] = ()
    content: tuple[_Content, ...] = ()
    interest: Interest = NO_INTEREST


_NO_RULES = _TopicRules()


def _duration(where: str, value: Duration) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise LimitsError(f"{where}: {exc}") from None


def _compile_common(
    where: str, rule: LimitRule | BulkReadRule | ContentRule, topics: list[str]
) -> dict[str, Any]:
    if not rule.name.strip():
        raise LimitsError(f"{where}: `name` must be a non-empty string")
    if not rule.groups and not rule.subjects:
        raise LimitsError(
            f"{where}: a rule needs `groups` and/or `subjects` (use groups: ['*'] for everyone)"
        )
    for key in ("groups", "subjects", "exempt_groups", "exempt_subjects"):
        for value in getattr(rule, key):
            if not value:
                raise LimitsError(f"{where}.{key}: empty name")
            if ("*" in value or "?" in value) and not (
                value == ANY_PRINCIPAL and key in ("groups", "subjects")
            ):
                raise LimitsError(
                    f"{where}.{key}: {value!r}: only exact names (or the single entry '*') are allowed"
                )
    if not topics:
        raise LimitsError(f"{where}.topics: at least one topic or glob is required")
    if any(not t for t in topics):
        raise LimitsError(f"{where}.topics: empty pattern")
    if rule.action != "block" and (rule.lockout is not None or rule.close_connection):
        raise LimitsError(f"{where}: `lockout` and `close_connection` only apply to action: block")
    return {
        "name": rule.name,
        "who": _Who(
            groups=frozenset(g for g in rule.groups if g != ANY_PRINCIPAL),
            subjects=frozenset(s for s in rule.subjects if s != ANY_PRINCIPAL),
            anyone=ANY_PRINCIPAL in rule.groups or ANY_PRINCIPAL in rule.subjects,
            exempt_groups=frozenset(rule.exempt_groups),
            exempt_subjects=frozenset(rule.exempt_subjects),
        ),
        "topics": NamePatterns(topics),
        "action": rule.action,
        "lockout_s": None if rule.lockout is None else _duration(f"{where}.lockout", rule.lockout),
        "close_connection": rule.close_connection,
    }


def _check_detectors(where: str, names: Iterable[str], known: Collection[str] | None) -> None:
    for name in names:
        if not name:
            raise LimitsError(f"{where}: empty detector id")
        if known is not None and name not in known:
            raise LimitsError(f"{where}: unknown detector {name!r}; known: {', '.join(sorted(known))}")


def _compile_limit(index: int, rule: LimitRule, known: Collection[str] | None) -> _Limit:
    where = f"limits.rules[{index}] ({rule.name!r})"
    common = _compile_common(where, rule, rule.topics)
    caps: list[tuple[str, int]] = []
    for key, measure in (("max_records", "records"), ("max_bytes", "bytes")):
        value = getattr(rule, key)
        if value is not None:
            if value < 0:
                raise LimitsError(f"{where}.{key}: must be >= 0")
            caps.append((measure, value))
    if rule.max_findings is not None:
        if not rule.max_findings:
            raise LimitsError(f"{where}.max_findings: name at least one detector")
        _check_detectors(f"{where}.max_findings", rule.max_findings, known)
        for detector, value in rule.max_findings.items():
            if value < 0:
                raise LimitsError(f"{where}.max_findings.{detector}: must be >= 0")
            caps.append((f"findings:{detector}", value))
    if not caps:
        raise LimitsError(f"{where}: set at least one of max_records, max_bytes, max_findings")
    return _Limit(
        **common,
        window_s=_duration(f"{where}.window", rule.window),
        window_text=str(rule.window) if isinstance(rule.window, str) else f"{rule.window:g}s",
        caps=tuple(caps),
        per_topic=rule.per == "principal_topic",
    )


def _compile_bulk(index: int, rule: BulkReadRule) -> _BulkRead:
    where = f"limits.bulk_read[{index}] ({rule.name!r})"
    common = _compile_common(where, rule, rule.topics)
    if rule.max_partitions_from_earliest is not None and rule.max_partitions_from_earliest < 0:
        raise LimitsError(f"{where}.max_partitions_from_earliest: must be >= 0")
    if rule.max_fetch_bytes is not None and rule.max_fetch_bytes < 1:
        raise LimitsError(f"{where}.max_fetch_bytes: must be >= 1")
    if (
        rule.max_partitions_from_earliest is None
        and rule.max_fetch_bytes is None
        and not rule.deny_wildcard_subscription
        and not rule.earliest_full_read
    ):
        raise LimitsError(
            f"{where}: enable at least one pattern (max_partitions_from_earliest, max_fetch_bytes, "
            "deny_wildcard_subscription, earliest_full_read)"
        )
    return _BulkRead(
        **common,
        window_s=_duration(f"{where}.window", rule.window),
        window_text=str(rule.window) if isinstance(rule.window, str) else f"{rule.window:g}s",
        max_partitions_from_earliest=rule.max_partitions_from_earliest,
        max_fetch_bytes=rule.max_fetch_bytes,
        deny_wildcard_subscription=rule.deny_wildcard_subscription,
        earliest_full_read=rule.earliest_full_read,
        throttle_ms=math.ceil(_duration(f"{where}.throttle", rule.throttle) * 1000),
    )


def _compile_content(index: int, rule: ContentRule, known: Collection[str] | None) -> _Content:
    where = f"limits.content[{index}] ({rule.name!r})"
    common = _compile_common(where, rule, rule.topics)
    if not rule.detectors:
        raise LimitsError(f"{where}.detectors: name at least one detector")
    _check_detectors(f"{where}.detectors", rule.detectors, known)
    if rule.min_findings < 1:
        raise LimitsError(f"{where}.min_findings: must be >= 1")
    if any(not t for t in rule.allow_topics):
        raise LimitsError(f"{where}.allow_topics: empty pattern")
    return _Content(
        **common,
        allow_topics=NamePatterns(rule.allow_topics),
        detectors=tuple(dict.fromkeys(rule.detectors)),
        min_findings=rule.min_findings,
    )


@dataclass(frozen=True)
class CompiledLimits:
    limits: tuple[_Limit, ...]
    bulk: tuple[_BulkRead, ...]
    content: tuple[_Content, ...]
    max_throttle_ms: int
    lockout_poll_s: float
    on_store_error: str
    store_path: str | None = None
    names: frozenset[str] = field(default_factory=frozenset)


def compile_limits(config: LimitsConfig, *, known_detectors: Collection[str] | None = None) -> CompiledLimits:
    """Validate and compile; `known_detectors` (built-in plus custom ids) catches misspelt detector names."""
    limits = tuple(_compile_limit(i, r, known_detectors) for i, r in enumerate(config.rules))
    bulk = tuple(_compile_bulk(i, r) for i, r in enumerate(config.bulk_read))
    content = tuple(_compile_content(i, r, known_detectors) for i, r in enumerate(config.content))
    seen: set[str] = set()
    for rule in (*limits, *bulk, *content):
        if rule.name in seen:
            raise LimitsError(
                f"limits: duplicate rule name {rule.name!r} (names must be unique across "
                "rules, bulk_read and content: audit events name them)"
            )
        seen.add(rule.name)
    return CompiledLimits(
        limits=limits,
        bulk=bulk,
        content=content,
        max_throttle_ms=math.ceil(_duration("limits.max_throttle", config.max_throttle) * 1000),
        lockout_poll_s=_duration("limits.lockout_poll", config.lockout_poll),
        on_store_error=config.on_store_error,
        store_path=config.store_path,
        names=frozenset(seen),
    )


def _key(*parts: str) -> str:
    # JSON keeps keys unambiguous whatever characters a subject or topic contains.
    return msgspec.json.encode(parts).decode()


# --------------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------------


class LimitsEngine:
    """One per worker process, shared by all its sessions. Not thread-safe (call it from the event loop).

    Hooks, in the order a Kafka session meets them (docs/limits.md has the exact wiring):
    `locked_out` on every request of an authenticated principal; `on_subscription` on a group subscription;
    `on_list_offsets` on a ListOffsets response; `before_fetch` per topic of a Fetch request; `after_fetch` per
    topic of a Fetch response; `before_produce` per topic of a Produce request.
    """

    def __init__(
        self,
        config: LimitsConfig | CompiledLimits,
        store: WindowStore,
        *,
        clock: Callable[[], float] = time.time,
        known_detectors: Collection[str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.config = (
            config
            if isinstance(config, CompiledLimits)
            else compile_limits(config, known_detectors=known_detectors)
        )
        self.store = store
        self._clock = clock
        self._uses_lockout = any(
            r.lockout_s is not None for r in (*self.config.limits, *self.config.bulk, *self.config.content)
        )
        self._lockouts: dict[str, Lockout] = {}
        self._lockouts_read_at = -math.inf
        # (sub, topic, partition) -> (earliest offset from a ListOffsets response, remembered until)
        self._earliest_lookups: dict[tuple[str, str, int], tuple[int, float]] = {}
        self._lookup_memory_s = max((r.window_s for r in self.config.bulk if r.watches_earliest), default=0.0)
        self._rules_for = functools.lru_cache(maxsize=cache_size)(self._rules_for_uncached)
        self._subscription_rules_for = functools.lru_cache(maxsize=cache_size)(
            self._subscription_rules_uncached
        )

    @property
    def active(self) -> bool:
        """False when the configuration has no rules at all (sessions may skip every hook)."""
        return bool(self.config.limits or self.config.bulk or self.config.content)

    # ---- matching --------------------------------------------------------------------------------------

    def _rules_for_uncached(self, sub: str, groups: tuple[str, ...], topic: str) -> _TopicRules:
        limits = tuple(
            r for r in self.config.limits if r.who.matches(sub, groups) and r.topics.matches(topic)
        )
        bulk = tuple(r for r in self.config.bulk if r.who.matches(sub, groups) and r.topics.matches(topic))
        content = tuple(
            r
            for r in self.config.content
            if r.who.matches(sub, groups) and r.topics.matches(topic) and not r.allow_topics.matches(topic)
        )
        if not (limits or bulk or content):
            return _NO_RULES
        fetch_detectors = frozenset(
            m.removeprefix("findings:") for r in limits for m, _ in r.caps if m.startswith("findings:")
        )
        interest = Interest(
            count_fetch=bool(limits),
            fetch_detectors=fetch_detectors,
            bulk_read=any(r.watches_earliest or r.max_fetch_bytes is not None for r in bulk),
            produce_detectors=frozenset(d for r in content for d in r.detectors),
        )
        return _TopicRules(limits, bulk, content, interest)

    def _subscription_rules_uncached(self, sub: str, groups: tuple[str, ...]) -> tuple[_BulkRead, ...]:
        return tuple(
            r for r in self.config.bulk if r.deny_wildcard_subscription and r.who.matches(sub, groups)
        )

    def _rules(self, principal: PolicySubject, topic: str) -> _TopicRules:
        return self._rules_for(principal.sub, tuple(principal.groups), topic)

    def interest(self, principal: PolicySubject, topic: str) -> Interest:
        return self._rules(principal, topic).interest

    # ---- lockouts --------------------------------------------------------------------------------------

    def locked_out(self, principal: PolicySubject) -> Verdict | None:
        """A block verdict while the principal is locked out (by any worker), else None. Call on every request."""
        if not self._uses_lockout:
            return None
        now = self._clock()
        if now - self._lockouts_read_at >= self.config.lockout_poll_s:
            try:
                self._lockouts = self.store.active_lockouts(now)
                self._lockouts_read_at = now
            except WindowStoreError:
                pass  # keep what we knew; the next call tries again
        lock = self._lockouts.get(principal.sub)
        if lock is None or lock.until <= now:
            return None
        return Verdict(
            "block",
            lock.rule,
            f"locked out for another {math.ceil(lock.until - now)}s by rule {lock.rule!r}: {lock.reason}",
            close_connection=lock.close_connection,
            lockout_until=lock.until,
            kind="lockout",
        )

    def _block(self, principal: PolicySubject, rule: _Common, kind: str, reason: str, now: float) -> Verdict:
        until = None
        if rule.lockout_s is not None:
            until = now + rule.lockout_s
            lock = Lockout(principal.sub, until, rule.name, reason, rule.close_connection)
            current = self._lockouts.get(principal.sub)
            if current is None or current.until < until:
                self._lockouts[principal.sub] = lock
            try:
                self.store.set_lockout(lock)
            except WindowStoreError:
                pass  # this worker still enforces it; others will not know
        return Verdict(
            "block", rule.name, reason, close_connection=rule.close_connection, lockout_until=until, kind=kind
        )

    def _hit(
        self,
        principal: PolicySubject,
        rule: _Common,
        kind: str,
        reason: str,
        now: float,
        throttle_ms: int = 0,
    ) -> Verdict:
        if rule.action == "block":
            return self._block(principal, rule, kind, reason, now)
        if rule.action == "throttle":
            return Verdict("throttle", rule.name, reason, throttle_ms=throttle_ms, kind=kind)
        return Verdict("alert", rule.name, reason, kind=kind)

    def _store_failed(self, exc: Exception) -> Verdict:
        reason = f"limits could not be checked: store unavailable ({type(exc).__name__})"
        if self.config.on_store_error == "block":
            return Verdict("block", None, reason, kind="store_error")
        return Verdict("alert", None, reason, kind="store_error")

    # ---- fetch: volume windows -------------------------------------------------------------------------

    def after_fetch(
        self,
        principal: PolicySubject,
        topic: str,
        records: int,
        nbytes: int,
        findings: Mapping[str, int] | None = None,
    ) -> Verdict:
        """Count a fetch response's records, bytes and findings for one topic, before it is delivered.

        block: do not deliver this response (nothing was counted); throttle: deliver it with `throttle_time_ms`
        and delay it by `throttle_ms`; alert: deliver it and audit.
        """
        rules = self._rules(principal, topic).limits
        if not rules:
            return ALLOW
        findings = findings or {}
        updates: list[WindowUpdate] = []
        meta: list[tuple[_Limit, str, int]] = []
        for rule in rules:
            key_parts = (rule.name, repr(rule.window_s), principal.sub) + ((topic,) if rule.per_topic else ())
            for measure, cap in rule.caps:
                if measure == "records":
                    amount = records
                elif measure == "bytes":
                    amount = nbytes
                else:
                    amount = findings.get(measure[9:], 0)
                if amount <= 0:
                    continue
                updates.append(
                    WindowUpdate(
                        _key(*key_parts, measure),
                        amount,
                        rule.window_s,
                        cap if rule.action == "block" else None,
                    )
                )
                meta.append((rule, measure, cap))
        if not updates:
            return ALLOW
        now = self._clock()
        try:
            result = self.store.add(updates, now)
        except WindowStoreError as exc:
            return self._store_failed(exc)
        if not result.accepted:
            assert result.refused_by is not None
            rule, measure, cap = meta[result.refused_by]
            would = result.sums[result.refused_by]
            return self._block(
                principal, rule, measure, self._volume_reason(rule, measure, cap, would, topic), now
            )
        hits: list[Verdict] = []
        for (rule, measure, cap), update, total in zip(meta, updates, result.sums, strict=True):
            if total <= cap:
                continue
            reason = self._volume_reason(rule, measure, cap, total, topic)
            if rule.action == "alert":
                if total - update.amount <= cap:  # report the crossing, not every batch after it
                    hits.append(Verdict("alert", rule.name, reason, kind=measure))
            else:
                delay = self._throttle_ms(update, cap, now)
                hits.append(Verdict("throttle", rule.name, reason, throttle_ms=delay, kind=measure))
        return most_severe(hits)

    @staticmethod
    def _volume_reason(rule: _Limit, measure: str, cap: int, total: int, topic: str) -> str:
        what = measure.replace("findings:", "") + (" findings" if measure.startswith("findings:") else "")
        scope = f"topic {topic!r}" if rule.per_topic else f"topics {', '.join(rule.topics.patterns)}"
        return (
            f"rule {rule.name!r}: {total} {what} in {rule.window_text} from {scope} "
            f"exceeds the limit of {cap}"
        )

    def _throttle_ms(self, update: WindowUpdate, cap: int, now: float) -> int:
        """Milliseconds until the window's sum is back at or below `cap`, if no more traffic arrives."""
        try:
            buckets = self.store.buckets(update.key, update.window_s, now)
        except WindowStoreError:
            return self.config.max_throttle_ms
        total = sum(amount for _, amount in buckets)
        delay_s = update.window_s
        for leaves_at, amount in buckets:
            total -= amount
            if total <= cap:
                delay_s = leaves_at - now
                break
        return max(0, min(self.config.max_throttle_ms, math.ceil(delay_s * 1000)))

    # ---- fetch: bulk-read patterns ---------------------------------------------------------------------

    def on_list_offsets(
        self, principal: PolicySubject, topic: str, offsets: Mapping[int, int], timestamp: int
    ) -> None:
        """Remember a ListOffsets answer for the earliest offset: `offsets` maps partition -> the offset the broker
        returned. A later fetch of that partition at or below it counts as reading from earliest."""
        if timestamp not in EARLIEST_TIMESTAMPS or not self._lookup_memory_s:
            return
        if not any(r.watches_earliest for r in self._rules(principal, topic).bulk):
            return
        until = self._clock() + self._lookup_memory_s
        lookups = self._earliest_lookups
        for partition, offset in offsets.items():
            key = (principal.sub, topic, partition)
            lookups.pop(key, None)  # re-insert so dict order stays oldest-first for eviction
            lookups[key] = (offset, until)
        if len(lookups) > MAX_REMEMBERED_LOOKUPS:
            now = self._clock()
            for key in [k for k, (_, expires) in lookups.items() if expires <= now]:
                del lookups[key]
            while len(lookups) > MAX_REMEMBERED_LOOKUPS:
                del lookups[next(iter(lookups))]

    def _from_earliest(
        self, sub: str, topic: str, partition: int, offset: int, known: bool, now: float
    ) -> bool:
        if known:
            return True
        lookup = self._earliest_lookups.get((sub, topic, partition))
        return lookup is not None and lookup[1] > now and offset <= lookup[0]

    def before_fetch(
        self,
        principal: PolicySubject,
        topic: str,
        partitions: Sequence[tuple[int, int, bool]],
        max_bytes: int | None,
        *,
        partition_count: int | None = None,
    ) -> Verdict:
        """Check one topic of a Fetch request before it is forwarded.

        `partitions`: (partition, fetch offset, earliest_known) where earliest_known is True when the session
        knows the offset is at or below the partition's log start offset; ListOffsets-earliest answers seen by
        `on_list_offsets` are applied here too. `max_bytes`: the most this fetch may return for the topic.
        `partition_count`: the topic's partitions (from Metadata), needed by `earliest_full_read`.
        block: answer the request (this topic) with an error and forward nothing for it.
        """
        rules = self._rules(principal, topic).bulk
        if not rules:
            return ALLOW
        now = self._clock()
        hits: list[Verdict] = []
        for rule in rules:
            if (
                rule.max_fetch_bytes is not None
                and max_bytes is not None
                and max_bytes > rule.max_fetch_bytes
            ):
                reason = (
                    f"rule {rule.name!r}: a fetch of up to {max_bytes} bytes from {topic!r} exceeds "
                    f"max_fetch_bytes {rule.max_fetch_bytes}"
                )
                hits.append(self._hit(principal, rule, "fetch_bytes", reason, now, rule.throttle_ms))
        if any(h.blocks for h in hits):
            return most_severe(hits)

        watching = [r for r in rules if r.watches_earliest]
        earliest = (
            sorted(
                {
                    p
                    for p, offset, known in partitions
                    if self._from_earliest(principal.sub, topic, p, offset, known, now)
                }
            )
            if watching
            else []
        )
        if earliest:
            members = tuple(str(p) for p in earliest)
            updates = []
            for rule in watching:
                bounds = []
                if rule.action == "block":
                    if rule.max_partitions_from_earliest is not None:
                        bounds.append(rule.max_partitions_from_earliest)
                    if rule.earliest_full_read and partition_count:
                        bounds.append(partition_count - 1)
                updates.append(
                    MemberUpdate(
                        _key(rule.name, principal.sub, topic),
                        members,
                        rule.window_s,
                        min(bounds) if bounds else None,
                    )
                )
            try:
                result = self.store.add_members(updates, now)
            except WindowStoreError as exc:
                return most_severe([*hits, self._store_failed(exc)])
            for index, (rule, count) in enumerate(zip(watching, result.counts, strict=True)):
                if not result.accepted and index != result.refused_by:
                    continue  # nothing was recorded; only the refusing rule speaks
                limit = rule.max_partitions_from_earliest
                if limit is not None and count > limit:
                    reason = (
                        f"rule {rule.name!r}: {count} partitions of {topic!r} read from the earliest offset "
                        f"within {rule.window_text} (at most {limit})"
                    )
                    hits.append(
                        self._hit(principal, rule, "partitions_from_earliest", reason, now, rule.throttle_ms)
                    )
                elif rule.earliest_full_read and partition_count and count >= partition_count:
                    reason = (
                        f"rule {rule.name!r}: all {partition_count} partitions of {topic!r} read from the "
                        f"earliest offset within {rule.window_text}"
                    )
                    hits.append(
                        self._hit(principal, rule, "earliest_full_read", reason, now, rule.throttle_ms)
                    )
        return most_severe(hits)

    LISTING_MEMORY_S = 600.0

    def on_topic_listing(self, principal: PolicySubject, client_key: str) -> None:
        """Remember (in the shared store: the JoinGroup may come on another connection, on another worker)
        that this client listed every topic, which is how regex subscriptions begin on the wire."""
        if not self._subscription_rules_for(principal.sub, tuple(principal.groups)):
            return
        try:
            self.store.add_members([MemberUpdate(_key("listing", principal.sub, client_key), ("all",),
                                                 self.LISTING_MEMORY_S)], self._clock())
        except WindowStoreError:
            pass  # the JoinGroup connection's own flag still applies

    def listed_all_topics(self, principal: PolicySubject, client_key: str) -> bool:
        if not self._subscription_rules_for(principal.sub, tuple(principal.groups)):
            return False
        try:
            result = self.store.add_members([MemberUpdate(_key("listing", principal.sub, client_key), (),
                                                          self.LISTING_MEMORY_S)], self._clock())
        except WindowStoreError:
            return False
        return result.counts[0] > 0

    def on_subscription(
        self,
        principal: PolicySubject,
        topics: Sequence[str],
        *,
        pattern: str | None = None,
        wildcard: bool | None = None,
    ) -> Verdict:
        """Check a consumer group subscription (JoinGroup metadata, ConsumerGroupHeartbeat).

        `topics`: the concrete topics subscribed (as listed by the client or resolved by the gateway);
        `pattern`: the subscription regex when the client sent one (KIP-848 `SubscribedTopicRegex`);
        `wildcard`: whether the subscription is by pattern (default: `pattern is not None`; a session sets it for
        a classic JoinGroup that followed an all-topics Metadata request, which is how Java and librdkafka
        regex subscriptions look on the wire). A wildcard subscription covering a privileged topic trips the rule.
        """
        if not (pattern is not None if wildcard is None else wildcard):
            return ALLOW
        rules = self._subscription_rules_for(principal.sub, tuple(principal.groups))
        if not rules:
            return ALLOW
        regex = None
        if pattern is not None:
            try:
                regex = re.compile(pattern)
            except re.error:
                regex = None  # an unparsable pattern still trips through the concrete topics
        now = self._clock()
        hits = []
        for rule in rules:
            covered = next((t for t in topics if rule.topics.matches(t)), None)
            if covered is None and regex is not None:
                exact = (p for p in rule.topics.patterns if "*" not in p and "?" not in p)
                covered = next((p for p in exact if regex.fullmatch(p)), None)
            if covered is None:
                continue
            shown = f"pattern {pattern!r}" if pattern is not None else "a wildcard subscription"
            reason = f"rule {rule.name!r}: {shown} covers privileged topic {covered!r}"
            hits.append(self._hit(principal, rule, "wildcard_subscription", reason, now, rule.throttle_ms))
        return most_severe(hits)

    # ---- produce: content rules ------------------------------------------------------------------------

    def before_produce(self, principal: PolicySubject, topic: str, findings: Mapping[str, int]) -> Verdict:
        """Check one topic of a Produce request; `findings` counts detector hits in its records (see `interest`).

        block: refuse this topic's batch (nothing is forwarded); alert: forward and audit.
        """
        rules = self._rules(principal, topic).content
        if not rules:
            return ALLOW
        now = self._clock()
        hits = []
        for rule in rules:
            found = {d: findings.get(d, 0) for d in rule.detectors if findings.get(d, 0) > 0}
            total = sum(found.values())
            if total >= rule.min_findings:
                detail = ", ".join(f"{n} {d}" for d, n in found.items())
                reason = f"rule {rule.name!r}: a publish to {topic!r} carries {detail}"
                hits.append(self._hit(principal, rule, "content", reason, now))
        return most_severe(hits)
