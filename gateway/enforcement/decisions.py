"""The protocol-agnostic vocabulary of enforcement: actions, resources and the decision a policy returns.

Kafka, MQTT (and later Kinesis) sessions describe every request as `(principal, action, resource)` and get a
`Decision` back. This module only holds those value types so that protocol code, the policy engine, the
masking layer, approvals and the audit log can share them without importing each other. Everything here is
immutable and hashable: decisions are cached and reused across requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

Action = Literal[
    # Data and topic administration, on a topic resource.
    "produce",
    "consume",
    "describe",
    "create",
    "delete",
    "alter",
    "describe_configs",
    "alter_configs",
    # Using a consumer group (join, sync, heartbeat, commit and fetch offsets), on a group resource.
    "consumer_group",
    # Using a transactional id (init, add partitions/offsets, end txn), on a transactional_id resource.
    "transactional_id",
    # Idempotent producing without a transactional id (InitProducerId), on the cluster resource.
    "idempotent_write",
    # Cluster-wide reads and changes (DescribeCluster, broker configs, quotas...), on the cluster resource.
    "cluster_describe",
    "cluster_alter",
]
ACTIONS: frozenset[str] = frozenset(get_args(Action))

ResourceKind = Literal["topic", "group", "transactional_id", "cluster"]
RESOURCE_KINDS: frozenset[str] = frozenset(get_args(ResourceKind))

# The one cluster resource; its name carries no meaning for policy but appears in audit events.
CLUSTER_NAME = "kafka-cluster"


@dataclass(frozen=True, slots=True)
class Resource:
    """What a request acts on. `name` is the topic, group id or transactional id (or CLUSTER_NAME)."""

    kind: ResourceKind
    name: str

    @classmethod
    def topic(cls, name: str) -> Resource:
        return cls("topic", name)

    @classmethod
    def group(cls, name: str) -> Resource:
        return cls("group", name)

    @classmethod
    def transactional_id(cls, name: str) -> Resource:
        return cls("transactional_id", name)

    @classmethod
    def cluster(cls) -> Resource:
        return cls("cluster", CLUSTER_NAME)

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


class PolicySubject(Protocol):
    """Who is asking: anything with a subject and IdP groups (an identity.Principal, an MQTT session...)."""

    @property
    def sub(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class ApprovalSpec:
    """A matching rule requires a reviewer's approval before access is granted.

    `reviewers` are IdP groups or subjects allowed to approve (never the requester), `grant_ttl_s` is how long
    an approval lasts, `hold_s` how long the first request is held waiting for a reviewer.
    """

    rule: str
    reviewers: tuple[str, ...]
    grant_ttl_s: float
    hold_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one policy question.

    `rule` names the rule that decided (None for default deny); `reason` is a human-readable sentence for
    audit events and error messages. `masks` lists every mask profile of the allow rules that matched; the
    masking layer applies the strictest (there is deliberately no single `mask` shortcut that could hide one). `approval` is set when access needs a reviewer's approval first.
    """

    allowed: bool
    rule: str | None
    reason: str
    masks: tuple[str, ...] = ()
    approval: ApprovalSpec | None = None

    @property
    def needs_approval(self) -> bool:
        return self.allowed and self.approval is not None
