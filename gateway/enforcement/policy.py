"""The policy engine: decides `(principal, action, resource)` against the YAML `policy.rules` list.

Sans-IO and protocol-agnostic: Kafka and MQTT sessions both ask `Policy.decide`, which is on the hot path and
therefore compiles every pattern once and memoises decisions in a bounded LRU cache.

Semantics (the rules this module keeps)
---------------------------------------
* **Default deny.** Nothing is allowed unless an allow rule matches.
* **A rule matches a principal** when the principal's subject is in `subjects` or any of its IdP groups is in
  `groups` (exact names; the single entry `"*"` means any authenticated principal).
* **A rule matches a resource** by the pattern list for its kind: `topics` for topics, `consumer_groups` for
  consumer groups, `transactional_ids` for transactional ids; every rule reaches the cluster resource. A pattern
  is an exact name or a glob where `*` matches any run of characters and `?` one character (nothing else is
  special, so group ids containing `[` are matched literally).
* **Actions.** `allow`/`deny` list actions from `decisions.ACTIONS`. The rule's actions apply to every resource
  kind it lists patterns for. Following Kafka's own authorizer, allowing `produce`, `consume`, `delete` or
  `alter` on a topic also allows `describe` of it, and `alter_configs` implies `describe_configs`. Allowing
  `consume` with `consumer_groups` allows using (and describing) those groups; allowing `produce` with
  `transactional_ids` allows using those ids, and allowing `produce` on anything allows idempotent producing
  (`idempotent_write` on the cluster), as in Kafka 3.x. Deny rules are literal: `deny: [describe]` does not
  deny `consume`, but `deny: [consume]` with `consumer_groups` also denies using those groups.
* **Questions** are `(resource kind, action)` pairs listed in `REQUESTABLE`. Besides the rule vocabulary above
  they accept Kafka's ACL vocabulary on every kind (READ on a group = `consume`, WRITE on a transactional id =
  `produce`, DESCRIBE/ALTER on the cluster = `describe`/`alter`, `describe_configs`/`alter_configs` on groups
  and the cluster). Cluster-wide rights come only from the explicit `cluster_describe`/`cluster_alter` rule
  actions: every rule reaches the cluster, so a topic rule's `describe` never grants DescribeCluster.
* **Explicit deny wins** over any number of matching allow rules, whatever their order.
* **Masks combine:** the decision lists the mask profile of *every* matching allow rule (file order,
  duplicates removed). Holding several roles never unmasks data; the masking layer applies the strictest.
* **Approvals:** an `approval` block applies to its rule's data actions (`approval.actions`, default
  `[produce, consume]`) on topics. Access needs approval only if every matching allow rule requires it; an
  allow rule without approval grants directly (being in a group with plain access is enough). When approval
  is needed, the first matching approval rule in file order supplies the reviewers, TTL and hold time.
* The decision names the rule that decided: the first deny rule; else the first allow rule that grants
  without approval; else the approval rule. Default deny has `rule=None`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.enforcement.decisions import (
    ACTIONS,
    ApprovalSpec,
    Decision,
    PolicySubject,
    Resource,
)

DEFAULT_CACHE_SIZE = 65536
ANY_PRINCIPAL = "*"


class PolicyError(ValueError):
    """The policy configuration is invalid; the message names the rule and key at fault."""


# --------------------------------------------------------------------------------------------------------
# Configuration shape (decoded from YAML by gateway/config.py, or by `parse_rules` below)
# --------------------------------------------------------------------------------------------------------


class ApprovalConfig(msgspec.Struct, forbid_unknown_fields=True):
    reviewers: list[str]
    grant_ttl: str | int | float = "1h"
    hold: str | int | float = "20s"
    actions: list[str] | None = None  # default: the rule's data actions (produce, consume) it allows


class PolicyRule(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    groups: list[str] = msgspec.field(default_factory=list)
    subjects: list[str] = msgspec.field(default_factory=list)
    topics: list[str] = msgspec.field(default_factory=list)
    consumer_groups: list[str] = msgspec.field(default_factory=list)
    transactional_ids: list[str] = msgspec.field(default_factory=list)
    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)
    mask: str | None = None
    approval: ApprovalConfig | None = None


def parse_rules(data: Any, path: str = "policy.rules") -> list[PolicyRule]:
    """Decode a list of plain dicts (parsed YAML) into rules; errors name the key path."""
    try:
        return msgspec.convert(data, list[PolicyRule])
    except msgspec.ValidationError as exc:
        # msgspec reports paths as `$[2].allow`; show them in the config's own terms.
        raise PolicyError(str(exc).replace("$", path)) from None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float) -> float:
    """Seconds from `"20s"`, `"1h"`, `"1h30m"`, `"500ms"`, `"2d"` or a bare number of seconds."""
    if isinstance(value, bool):
        # ValueError, not TypeError: callers report every bad config value the same way.
        raise ValueError(f"not a duration: {value!r}")  # noqa: TRY004
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        pos, seconds = 0, 0.0
        while pos < len(text):
            match = _DURATION_PART.match(text, pos)
            if match is None:
                raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 20s, 5m, 1h, 1d or 1h30m)")
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if not text:
            raise ValueError("empty duration")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


# --------------------------------------------------------------------------------------------------------
# Which rule actions cover a requested (resource kind, action)
# --------------------------------------------------------------------------------------------------------

_F = frozenset
# Allow side: includes Kafka-style implications (write/read imply describe...).
_COVERED_BY_ALLOW: dict[tuple[str, str], frozenset[str]] = {
    ("topic", "produce"): _F({"produce"}),
    ("topic", "consume"): _F({"consume"}),
    ("topic", "describe"): _F({"describe", "produce", "consume", "delete", "alter"}),
    ("topic", "create"): _F({"create"}),
    ("topic", "delete"): _F({"delete"}),
    ("topic", "alter"): _F({"alter"}),
    ("topic", "describe_configs"): _F({"describe_configs", "alter_configs"}),
    ("topic", "alter_configs"): _F({"alter_configs"}),
    ("group", "consumer_group"): _F({"consumer_group", "consume"}),
    ("group", "describe"): _F({"describe", "consumer_group", "consume"}),
    ("group", "delete"): _F({"delete"}),
    ("group", "describe_configs"): _F({"describe_configs", "alter_configs"}),
    ("group", "alter_configs"): _F({"alter_configs"}),
    ("transactional_id", "transactional_id"): _F({"transactional_id", "produce"}),
    ("transactional_id", "describe"): _F({"describe", "transactional_id", "produce"}),
    ("cluster", "idempotent_write"): _F({"idempotent_write", "produce"}),
    ("cluster", "cluster_describe"): _F({"cluster_describe", "cluster_alter"}),
    ("cluster", "cluster_alter"): _F({"cluster_alter"}),
    # Cluster-wide reads and changes are granted only by the explicit cluster_* actions: every rule reaches the
    # cluster resource, so a topic rule's `describe` or `describe_configs` must not leak broker-wide rights.
    ("cluster", "describe_configs"): _F({"cluster_describe", "cluster_alter"}),
    ("cluster", "alter_configs"): _F({"cluster_alter"}),
}
# Deny side: literal, except that denying consume/produce also denies the group/transactional id they need.
_COVERED_BY_DENY: dict[tuple[str, str], frozenset[str]] = {
    ("topic", "produce"): _F({"produce"}),
    ("topic", "consume"): _F({"consume"}),
    ("topic", "describe"): _F({"describe"}),
    ("topic", "create"): _F({"create"}),
    ("topic", "delete"): _F({"delete"}),
    ("topic", "alter"): _F({"alter"}),
    ("topic", "describe_configs"): _F({"describe_configs"}),
    ("topic", "alter_configs"): _F({"alter_configs"}),
    ("group", "consumer_group"): _F({"consumer_group", "consume"}),
    ("group", "describe"): _F({"describe"}),
    ("group", "delete"): _F({"delete"}),
    ("group", "describe_configs"): _F({"describe_configs"}),
    ("group", "alter_configs"): _F({"alter_configs"}),
    ("transactional_id", "transactional_id"): _F({"transactional_id", "produce"}),
    ("transactional_id", "describe"): _F({"describe"}),
    ("cluster", "idempotent_write"): _F({"idempotent_write"}),
    ("cluster", "cluster_describe"): _F({"cluster_describe"}),
    ("cluster", "cluster_alter"): _F({"cluster_alter"}),
    ("cluster", "describe_configs"): _F({"cluster_describe"}),
    ("cluster", "alter_configs"): _F({"cluster_alter"}),
}
# Requests may also use Kafka's ACL vocabulary on any resource kind, as gateway/protocols/kafka/authz.py does:
# READ on a group is `consume`, WRITE on a transactional id is `produce`, DESCRIBE/ALTER on the cluster are
# `describe`/`alter`. They are the same questions as the Streamgate-named pairs above.
_REQUEST_ALIASES = {
    ("group", "consume"): ("group", "consumer_group"),
    ("transactional_id", "produce"): ("transactional_id", "transactional_id"),
    ("cluster", "describe"): ("cluster", "cluster_describe"),
    ("cluster", "alter"): ("cluster", "cluster_alter"),
}
for _alias, _canonical in _REQUEST_ALIASES.items():
    _COVERED_BY_ALLOW[_alias] = _COVERED_BY_ALLOW[_canonical]
    _COVERED_BY_DENY[_alias] = _COVERED_BY_DENY[_canonical]
assert _COVERED_BY_ALLOW.keys() == _COVERED_BY_DENY.keys()

# Every (resource kind, action) question `Policy.decide` can answer; anything else is denied as meaningless.
# Protocol adapters should assert that each check they build is in this set.
REQUESTABLE: frozenset[tuple[str, str]] = frozenset(_COVERED_BY_ALLOW)
_DEFAULT_APPROVAL_ACTIONS = frozenset({"produce", "consume"})
_PATTERN_FIELD = {"topic": "topics", "group": "consumer_groups", "transactional_id": "transactional_ids"}


def glob_to_regex(pattern: str) -> str:
    """Regex source for a name pattern: `*` = any run of characters, `?` = one character, rest literal."""
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)


class NamePatterns:
    """A compiled list of exact names and globs, matched with one set lookup and at most one regex."""

    __slots__ = ("_exact", "_globs", "patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if "*" not in p and "?" not in p)
        globs = [p for p in patterns if "*" in p or "?" in p]
        self._globs = (
            re.compile("|".join(f"(?:{glob_to_regex(g)})" for g in globs), re.DOTALL) if globs else None
        )

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, name: str) -> bool:
        if name in self._exact:
            return True
        return self._globs is not None and self._globs.fullmatch(name) is not None

    def first_match(self, name: str) -> str | None:
        """The pattern that matches `name` (for explanations), or None."""
        if name in self._exact:
            return name
        for pattern in self.patterns:
            if re.fullmatch(glob_to_regex(pattern), name, re.DOTALL):
                return pattern
        return None


# --------------------------------------------------------------------------------------------------------
# Compiled rules and the engine
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRule:
    index: int
    name: str
    groups: frozenset[str]
    subjects: frozenset[str]
    any_principal: bool
    patterns: dict[str, NamePatterns]
    allow: frozenset[str]
    deny: frozenset[str]
    mask: str | None
    approval: ApprovalSpec | None
    approval_actions: frozenset[str]

    def principal_match(self, sub: str, groups: Iterable[str]) -> str | None:
        """Why this rule applies to the principal ('subject alice', 'group analysts'), or None."""
        if self.any_principal:
            return "any principal ('*')"
        if sub in self.subjects:
            return f"subject {sub!r}"
        for group in groups:
            if group in self.groups:
                return f"group {group!r}"
        return None

    def resource_match(self, resource: Resource) -> bool:
        if resource.kind == "cluster":
            return True
        patterns = self.patterns.get(resource.kind)
        return patterns is not None and patterns.matches(resource.name)

    def requires_approval(self, action: str, resource: Resource) -> bool:
        return self.approval is not None and resource.kind == "topic" and action in self.approval_actions


def _compile_rule(index: int, rule: PolicyRule) -> CompiledRule:
    where = f"policy.rules[{index}] ({rule.name!r})" if rule.name else f"policy.rules[{index}]"
    if not rule.name.strip():
        raise PolicyError(f"{where}: `name` must be a non-empty string")
    if not rule.groups and not rule.subjects:
        raise PolicyError(
            f"{where}: a rule needs `groups` and/or `subjects` (use groups: ['*'] for everyone)"
        )
    if not rule.allow and not rule.deny:
        raise PolicyError(f"{where}: a rule needs `allow` or `deny` actions")
    for key in ("allow", "deny"):
        for action in getattr(rule, key):
            if action not in ACTIONS:
                raise PolicyError(
                    f"{where}.{key}: unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}"
                )
    if rule.mask is not None and not rule.allow:
        raise PolicyError(f"{where}.mask: a mask only makes sense on a rule that allows something")
    if rule.approval is not None and not rule.allow:
        raise PolicyError(f"{where}.approval: an approval only makes sense on a rule that allows something")
    for key in ("groups", "subjects", "topics", "consumer_groups", "transactional_ids"):
        for value in getattr(rule, key):
            if not value:
                raise PolicyError(f"{where}.{key}: empty name or pattern")
    for key in ("groups", "subjects"):
        for value in getattr(rule, key):
            if value != ANY_PRINCIPAL and ("*" in value or "?" in value):
                raise PolicyError(
                    f"{where}.{key}: {value!r}: only exact names or the single entry '*' are allowed"
                )

    patterns = {kind: NamePatterns(getattr(rule, field)) for kind, field in _PATTERN_FIELD.items()}
    reachable_kinds = {kind for kind, p in patterns.items() if p} | {"cluster"}
    for key, table in (("allow", _COVERED_BY_ALLOW), ("deny", _COVERED_BY_DENY)):
        for action in getattr(rule, key):
            # Cluster entries count only literally: allowing `produce` must not look useful just because it
            # implies idempotent_write when the rule lists no topics at all.
            if not any(
                action in covering and (kind != "cluster" or action == asked)
                for (kind, asked), covering in table.items()
                if kind in reachable_kinds
            ):
                raise PolicyError(
                    f"{where}.{key}: {action!r} applies to nothing: the rule lists no topics, consumer_groups or "
                    "transactional_ids for it"
                )

    approval: ApprovalSpec | None = None
    approval_actions: frozenset[str] = frozenset()
    if rule.approval is not None:
        if not rule.approval.reviewers:
            raise PolicyError(
                f"{where}.approval.reviewers: at least one reviewer group or subject is required"
            )
        try:
            grant_ttl = parse_duration(rule.approval.grant_ttl)
        except ValueError as exc:
            raise PolicyError(f"{where}.approval.grant_ttl: {exc}") from None
        try:
            hold = parse_duration(rule.approval.hold)
        except ValueError as exc:
            raise PolicyError(f"{where}.approval.hold: {exc}") from None
        if rule.approval.actions is None:
            approval_actions = frozenset(a for a in rule.allow if a in _DEFAULT_APPROVAL_ACTIONS)
        else:
            for action in rule.approval.actions:
                if action not in rule.allow:
                    raise PolicyError(f"{where}.approval.actions: {action!r} is not in the rule's allow list")
            approval_actions = frozenset(rule.approval.actions)
        if not approval_actions:
            raise PolicyError(f"{where}.approval: the rule allows none of the actions an approval would gate")
        approval = ApprovalSpec(rule.name, tuple(rule.approval.reviewers), grant_ttl, hold)

    return CompiledRule(
        index=index,
        name=rule.name,
        groups=frozenset(g for g in rule.groups if g != ANY_PRINCIPAL),
        subjects=frozenset(s for s in rule.subjects if s != ANY_PRINCIPAL),
        any_principal=ANY_PRINCIPAL in rule.groups or ANY_PRINCIPAL in rule.subjects,
        patterns={kind: p for kind, p in patterns.items() if p},
        allow=frozenset(rule.allow),
        deny=frozenset(rule.deny),
        mask=rule.mask,
        approval=approval,
        approval_actions=approval_actions,
    )


class Policy:
    """A compiled, immutable rule set. Build a new one to reload; decisions are cached per instance."""

    def __init__(self, rules: Sequence[PolicyRule], *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        compiled = [_compile_rule(i, rule) for i, rule in enumerate(rules)]
        seen: dict[str, int] = {}
        for rule in compiled:
            if rule.name in seen:
                raise PolicyError(
                    f"policy.rules[{rule.index}]: duplicate rule name {rule.name!r} (also policy.rules[{seen[rule.name]}])"
                )
            seen[rule.name] = rule.index
        self.rules: tuple[CompiledRule, ...] = tuple(compiled)
        # The subject only belongs in the cache key if some rule looks at subjects; otherwise every member of
        # the same groups shares one cache entry.
        self._uses_subjects = any(rule.subjects for rule in compiled)
        self._cached_decide = functools.lru_cache(maxsize=cache_size)(self._decide_uncached)

    @classmethod
    def from_config(cls, data: Any, *, cache_size: int = DEFAULT_CACHE_SIZE) -> Policy:
        """Build from the parsed YAML value of `policy.rules` (a list of dicts)."""
        return cls(parse_rules(data), cache_size=cache_size)

    def decide(self, principal: PolicySubject, action: str, resource: Resource) -> Decision:
        sub = principal.sub if self._uses_subjects else ""
        return self._cached_decide(sub, tuple(principal.groups), action, resource)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached_decide.cache_info()

    def _decide_uncached(
        self, sub: str, groups: tuple[str, ...], action: str, resource: Resource
    ) -> Decision:
        key = (resource.kind, action)
        allow_covering = _COVERED_BY_ALLOW.get(key)
        deny_covering = _COVERED_BY_DENY.get(key)
        if allow_covering is None or deny_covering is None:
            return Decision(False, None, f"action {action!r} does not apply to {resource.kind} resources")

        allowing: list[CompiledRule] = []
        for rule in self.rules:
            if rule.principal_match(sub, groups) is None or not rule.resource_match(resource):
                continue
            if rule.deny & deny_covering:
                return Decision(False, rule.name, f"{action} on {resource} denied by rule {rule.name!r}")
            if rule.allow & allow_covering:
                allowing.append(rule)

        if not allowing:
            return Decision(False, None, f"no rule allows {action} on {resource} (default deny)")

        masks = tuple(dict.fromkeys(rule.mask for rule in allowing if rule.mask is not None))
        direct = next((rule for rule in allowing if not rule.requires_approval(action, resource)), None)
        if direct is not None:
            return Decision(
                True, direct.name, f"{action} on {resource} allowed by rule {direct.name!r}", masks
            )
        gate = allowing[0]
        return Decision(
            True,
            gate.name,
            f"{action} on {resource} allowed by rule {gate.name!r} after approval",
            masks,
            gate.approval,
        )

    def explain(self, principal: PolicySubject, action: str, resource: Resource) -> list[str]:
        """Every rule considered, why it matched or not, and the final decision (for `policy explain`)."""
        sub, groups = principal.sub, tuple(principal.groups)
        lines = [
            f"question: may subject {sub!r} (groups: {', '.join(groups) or 'none'}) {action} {resource}?"
        ]
        key = (resource.kind, action)
        allow_covering = _COVERED_BY_ALLOW.get(key, frozenset())
        deny_covering = _COVERED_BY_DENY.get(key, frozenset())
        if not allow_covering:
            lines.append(f"action {action!r} does not apply to {resource.kind} resources")
        for rule in self.rules:
            lines.append(
                f"rule {rule.name!r}: {self._explain_rule(rule, sub, groups, action, resource, allow_covering, deny_covering)}"
            )
        decision = self._decide_uncached(sub if self._uses_subjects else "", groups, action, resource)
        verdict = "ALLOW" if decision.allowed else "DENY"
        extras = []
        if decision.masks:
            extras.append(f"masks: {', '.join(decision.masks)}")
        if decision.approval is not None:
            approval = decision.approval
            extras.append(
                f"needs approval by {', '.join(approval.reviewers)} (hold {approval.hold_s:g}s, "
                f"grant {approval.grant_ttl_s:g}s)"
            )
        by = f"by rule {decision.rule!r}" if decision.rule else "by default (no rule matched)"
        lines.append(
            f"decision: {verdict} {by}"
            + (f" [{'; '.join(extras)}]" if extras else "")
            + f" - {decision.reason}"
        )
        return lines

    @staticmethod
    def _explain_rule(
        rule: CompiledRule,
        sub: str,
        groups: tuple[str, ...],
        action: str,
        resource: Resource,
        allow_covering: frozenset[str],
        deny_covering: frozenset[str],
    ) -> str:
        who = rule.principal_match(sub, groups)
        if who is None:
            return (
                f"no match - principal is in none of groups [{', '.join(sorted(rule.groups))}] "
                f"and not one of subjects [{', '.join(sorted(rule.subjects))}]"
            )
        if resource.kind == "cluster":
            where = "the cluster"
        else:
            patterns = rule.patterns.get(resource.kind)
            field = _PATTERN_FIELD[resource.kind]
            if patterns is None:
                return f"no match - matched {who}, but the rule lists no {field}"
            hit = patterns.first_match(resource.name)
            if hit is None:
                return f"no match - matched {who}, but {resource} matches none of {field} [{', '.join(patterns.patterns)}]"
            where = f"{resource} matches {hit!r}"
        denied = sorted(rule.deny & deny_covering)
        if denied:
            return f"DENY - matched {who}; {where}; deny [{', '.join(denied)}] covers {action}"
        allowed = sorted(rule.allow & allow_covering)
        if not allowed:
            return (
                f"no match - matched {who}; {where}; but {action} is covered by neither allow "
                f"[{', '.join(sorted(rule.allow))}] nor deny [{', '.join(sorted(rule.deny))}]"
            )
        notes = []
        if rule.mask:
            notes.append(f"mask {rule.mask!r}")
        if rule.requires_approval(action, resource):
            notes.append("requires approval")
        suffix = f" ({', '.join(notes)})" if notes else ""
        return f"ALLOW - matched {who}; {where}; allow [{', '.join(allowed)}] covers {action}{suffix}"
