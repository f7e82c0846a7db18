"""Which authorization checks each Kafka request needs, and how to answer a request that is denied as a whole.

This module is the single table that turns every API the gateway advertises (``apis.HANDLED``) into
``Check(action, kind, name)`` triples the policy engine decides. The rule it keeps: **no advertised API
without an authorization decision** -- ``required_checks`` raises for anything it has no mapping for, and
``AUTHZ_TABLE`` documents the decision for every handled key (a test pins both to ``apis.HANDLED``). An empty
list is itself a decision: the API needs nothing beyond an authenticated session.

The mapping follows Apache Kafka's own ACL rules (KIP-11 and the per-API operation table), translated into
Streamgate's action names: Kafka WRITE -> ``produce``, READ -> ``consume``, DESCRIBE -> ``describe``,
CREATE/DELETE/ALTER/DESCRIBE_CONFIGS/ALTER_CONFIGS keep their names. Kafka's CLUSTER_ACTION (replication
traffic that only brokers send) has no application-level equivalent; it is mapped to ``alter`` on the cluster
so that only an admin grant could let it through.

Topic ids: Fetch v13+, Metadata v10+ and DeleteTopics v6+ may name topics by UUID. The caller resolves ids
with a ``topic_name`` lookup (fed from Metadata responses); an id it cannot resolve becomes a topic check on
``unknown_topic_id_name(id)`` -- a string that can never be a legal Kafka topic name (it contains ``<``, ``>``
and spaces), so no policy rule written for real topics can match it by accident, and the default error code
for it is UNKNOWN_TOPIC_ID.

``error_response`` answers a whole request with errors, for every handled API and advertised version: each
topic, partition, group, transactional id or config resource named in the request gets an entry carrying an
error code (mirroring the request's names, partition indexes and topic ids), ``throttle_time_ms`` is 0, and
the top-level ``error_code`` is set where the response has one (Fetch excepted, see ``_fetch_error``). Partial
denial of the hot APIs lives in ``partial.py``.

Sans-IO: pure functions over decoded generated messages; no sockets, no policy engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from gateway.protocols.kafka import apis
from gateway.protocols.kafka.primitives import ZERO_UUID

# ------------------------------------------------------------------------------------------ error codes

UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
OPERATION_NOT_ATTEMPTED = 55
SASL_AUTHENTICATION_FAILED = 58
UNKNOWN_TOPIC_ID = 100

DENIED_MESSAGE = "not authorized by streamgate policy"

# ------------------------------------------------------------------------------------------ checks

ACTIONS = ("produce", "consume", "describe", "create", "delete", "alter", "describe_configs", "alter_configs")
KINDS = ("topic", "group", "transactional_id", "cluster")
CLUSTER_NAME = "kafka-cluster"

# Config resource types (DescribeConfigs / AlterConfigs / IncrementalAlterConfigs `resource_type`).
CONFIG_RESOURCE_TOPIC = 2
CONFIG_RESOURCE_BROKER = 4
CONFIG_RESOURCE_BROKER_LOGGER = 8
CONFIG_RESOURCE_CLIENT_METRICS = 16
CONFIG_RESOURCE_GROUP = 32

# FindCoordinator `key_type`.
COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1


@dataclass(frozen=True, slots=True)
class Check:
    """One authorization question: may the principal perform ``action`` on the resource ``kind``/``name``?"""

    action: str  # one of ACTIONS
    kind: str  # one of KINDS
    name: str  # topic / group / transactional id; CLUSTER_NAME for the cluster


TopicNameLookup: TypeAlias = Callable[[uuid.UUID], str | None]
ErrorCodeFor: TypeAlias = Callable[[Check], int] | int


class UnhandledApi(ValueError):
    """The API key or version is not one the gateway advertises, so it has no authorization mapping."""


_UNKNOWN_ID_PREFIX = "<unknown topic id "


def unknown_topic_id_name(topic_id: uuid.UUID) -> str:
    """The name checked for a topic id the gateway cannot resolve; never a legal Kafka topic name."""
    return f"{_UNKNOWN_ID_PREFIX}{topic_id}>"


def is_unknown_topic_id_name(name: str) -> bool:
    return name.startswith(_UNKNOWN_ID_PREFIX)


def cluster_check(action: str) -> Check:
    return Check(action, "cluster", CLUSTER_NAME)


def authorization_error_code(check: Check) -> int:
    """Kafka's error code for a denied check, by resource kind (unresolvable topic id: UNKNOWN_TOPIC_ID)."""
    if check.kind == "topic":
        return UNKNOWN_TOPIC_ID if is_unknown_topic_id_name(check.name) else TOPIC_AUTHORIZATION_FAILED
    if check.kind == "group":
        return GROUP_AUTHORIZATION_FAILED
    if check.kind == "transactional_id":
        return TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return CLUSTER_AUTHORIZATION_FAILED


# One line per handled API key: what is checked. Kept beside the code that does it; a test pins it to HANDLED.
AUTHZ_TABLE: dict[int, str] = {
    0: "Produce: produce on each topic; produce on the transactional id when one is set",
    1: (
        "Fetch: consume on each topic (v13+ ids resolved to names; unknown ids denied); forgotten topics "
        "need nothing; a follower fetch (replica id >= 0) also needs alter on the cluster"
    ),
    2: "ListOffsets: describe on each topic",
    3: (
        "Metadata: describe on each requested topic (all-topics requests: the response is filtered instead); "
        "create on each topic requested by name when auto-creation is allowed (always for v0-3)"
    ),
    8: "OffsetCommit: consume on the group and on each topic",
    9: (
        "OffsetFetch: describe on each group (v8+ several) and on each requested topic (all-topics: the "
        "response is filtered)"
    ),
    10: (
        "FindCoordinator: describe on the group (key type 0) or produce on the transactional id (key "
        "type 1); any other key type is broker-internal and needs alter on the cluster"
    ),
    11: "JoinGroup: consume on the group",
    12: "Heartbeat: consume on the group",
    13: "LeaveGroup: consume on the group",
    14: "SyncGroup: consume on the group",
    15: "DescribeGroups: describe on each group",
    16: "ListGroups: describe on the cluster; the listed groups are also filtered by describe (partial.py)",
    17: "SaslHandshake: nothing (answered by the gateway before authentication)",
    18: "ApiVersions: nothing (answered by the gateway before authentication)",
    19: "CreateTopics: create on each topic",
    20: "DeleteTopics: delete on each topic (v6+ ids resolved to names; unknown ids denied)",
    21: "DeleteRecords: delete on each topic",
    22: (
        "InitProducerId: produce on the transactional id when one is set; idempotent producers need "
        "nothing here (their writes are checked at Produce)"
    ),
    23: "OffsetForLeaderEpoch: describe on each topic",
    24: "AddPartitionsToTxn: produce on the transactional id and on each topic",
    25: "AddOffsetsToTxn: produce on the transactional id, consume on the group",
    26: "EndTxn: produce on the transactional id",
    28: "TxnOffsetCommit: produce on the transactional id, consume on the group and on each topic",
    32: (
        "DescribeConfigs: describe_configs on each topic resource, on the group for group resources, on "
        "the cluster for broker, broker-logger and any other resource type"
    ),
    33: (
        "AlterConfigs: alter_configs on each topic resource, on the group for group resources, on the "
        "cluster otherwise"
    ),
    36: "SaslAuthenticate: nothing (it is the authentication)",
    37: "CreatePartitions: alter on each topic",
    42: "DeleteGroups: delete on each group",
    44: (
        "IncrementalAlterConfigs: alter_configs on each topic resource, on the group for group resources, "
        "on the cluster otherwise"
    ),
    47: "OffsetDelete: delete on the group, consume on each topic",
    60: "DescribeCluster: describe on the cluster",
}


# ------------------------------------------------------------------------------------------ required checks


def required_checks(api_key: int, api_version: int, request: Any, topic_name: TopicNameLookup) -> list[Check]:
    """Every check ``request`` needs, in order, without duplicates. All of them must pass to forward it whole.

    Raises ``UnhandledApi`` for an API key or version the gateway does not advertise.
    """
    _require_handled(api_key, api_version)
    checks = _CHECKS[api_key](request, api_version, topic_name)
    return list(dict.fromkeys(checks))


def _require_handled(api_key: int, api_version: int) -> None:
    spec = apis.HANDLED.get(api_key)
    if spec is None or api_key not in _CHECKS:
        raise UnhandledApi(f"api key {api_key} is not handled by the gateway; no authorization mapping")
    if not spec.min_version <= api_version <= spec.max_version:
        raise UnhandledApi(
            f"{spec.name} v{api_version} is not advertised "
            f"(handled versions {spec.min_version}-{spec.max_version})"
        )


def _resolve(topic_id: uuid.UUID, topic_name: TopicNameLookup) -> str:
    name = topic_name(topic_id) if topic_id != ZERO_UUID else None
    return name if name is not None else unknown_topic_id_name(topic_id)


def _topic_refs(name: str | None, topic_id: uuid.UUID, topic_name: TopicNameLookup) -> list[str]:
    """Names to check for a topic given by name and/or id (APIs where either may be set)."""
    refs = [] if name is None else [name]
    if topic_id != ZERO_UUID or name is None:
        refs.append(_resolve(topic_id, topic_name))
    return refs


def _fetch_topic_ref(topic: Any, api_version: int, topic_name: TopicNameLookup) -> str:
    return topic.topic if api_version < 13 else _resolve(topic.topic_id, topic_name)


def _is_follower_fetch(request: Any, api_version: int) -> bool:
    replica_id = request.replica_id if api_version < 15 else request.replica_state.replica_id
    return bool(replica_id >= 0)


def _produce_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    checks = [Check("produce", "topic", t.name) for t in request.topic_data]
    # Checked whenever present (even ""), as Kafka does: an empty id must not be a way around the txn rule.
    if request.transactional_id is not None:
        checks.append(Check("produce", "transactional_id", request.transactional_id))
    return checks


def _fetch_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    checks = [Check("consume", "topic", _fetch_topic_ref(t, api_version, topic_name)) for t in request.topics]
    if _is_follower_fetch(request, api_version):
        checks.append(cluster_check("alter"))
    return checks


def _list_offsets_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("describe", "topic", t.name) for t in request.topics]


def _offset_for_leader_epoch_checks(
    request: Any, api_version: int, topic_name: TopicNameLookup
) -> list[Check]:
    return [Check("describe", "topic", t.topic) for t in request.topics]


def metadata_requests_all_topics(request: Any, api_version: int) -> bool:
    """Metadata v0 asks for all topics with an empty list; v1+ with a null list (empty then means none)."""
    return request.topics is None or (api_version == 0 and not request.topics)


def _metadata_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    if metadata_requests_all_topics(request, api_version):
        return []
    checks: list[Check] = []
    auto_create = api_version < 4 or request.allow_auto_topic_creation  # v0-3 always may auto-create
    for topic in request.topics:
        checks += [
            Check("describe", "topic", ref) for ref in _topic_refs(topic.name, topic.topic_id, topic_name)
        ]
    if auto_create:
        # Only a name can be auto-created; ids name existing topics.
        checks += [Check("create", "topic", t.name) for t in request.topics if t.name is not None]
    return checks


def _offset_commit_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        Check("consume", "group", request.group_id),
        *(Check("consume", "topic", t.name) for t in request.topics),
    ]


def _offset_fetch_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    groups = (
        [(request.group_id, request.topics)]
        if api_version < 8
        else [(g.group_id, g.topics) for g in request.groups]
    )
    checks: list[Check] = []
    for group_id, topics in groups:
        checks.append(Check("describe", "group", group_id))
        checks += [
            Check("describe", "topic", t.name) for t in topics or ()
        ]  # null: all topics, filtered later
    return checks


def _coordinator_check(key_type: int, key: str) -> Check:
    if key_type == COORDINATOR_GROUP:
        return Check("describe", "group", key)
    if key_type == COORDINATOR_TRANSACTION:
        return Check("produce", "transactional_id", key)
    return cluster_check("alter")  # share-group and later key types are coordinator-internal


def _find_coordinator_keys(request: Any, api_version: int) -> list[str]:
    return [request.key] if api_version < 4 else list(request.coordinator_keys)


def _find_coordinator_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    key_type = request.key_type if api_version >= 1 else COORDINATOR_GROUP
    return [_coordinator_check(key_type, key) for key in _find_coordinator_keys(request, api_version)]


def _consume_group(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("consume", "group", request.group_id)]


def _describe_groups_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("describe", "group", g) for g in request.groups]


def _describe_cluster(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [cluster_check("describe")]


def _nothing(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return []


def _create_topics_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("create", "topic", t.name) for t in request.topics]


def _delete_topic_refs(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[str]:
    if api_version < 6:
        return list(request.topic_names)
    return [ref for t in request.topics for ref in _topic_refs(t.name, t.topic_id, topic_name)]


def _delete_topics_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("delete", "topic", ref) for ref in _delete_topic_refs(request, api_version, topic_name)]


def _delete_records_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("delete", "topic", t.name) for t in request.topics]


def _init_producer_id_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    if request.transactional_id is None:
        return []
    return [Check("produce", "transactional_id", request.transactional_id)]


def _add_partitions_to_txn_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        Check("produce", "transactional_id", request.v3_and_below_transactional_id),
        *(Check("produce", "topic", t.name) for t in request.v3_and_below_topics),
    ]


def _add_offsets_to_txn_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        Check("produce", "transactional_id", request.transactional_id),
        Check("consume", "group", request.group_id),
    ]


def _end_txn_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("produce", "transactional_id", request.transactional_id)]


def _txn_offset_commit_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        Check("produce", "transactional_id", request.transactional_id),
        Check("consume", "group", request.group_id),
        *(Check("consume", "topic", t.name) for t in request.topics),
    ]


def config_resource_check(action: str, resource_type: int, resource_name: str) -> Check:
    """A config resource as a check: topics and groups by name; brokers, loggers and the rest: the cluster."""
    if resource_type == CONFIG_RESOURCE_TOPIC:
        return Check(action, "topic", resource_name)
    if resource_type == CONFIG_RESOURCE_GROUP:
        return Check(action, "group", resource_name)
    return cluster_check(action)


def _describe_configs_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        config_resource_check("describe_configs", r.resource_type, r.resource_name) for r in request.resources
    ]


def _alter_configs_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        config_resource_check("alter_configs", r.resource_type, r.resource_name) for r in request.resources
    ]


def _create_partitions_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("alter", "topic", t.name) for t in request.topics]


def _delete_groups_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [Check("delete", "group", g) for g in request.groups_names]


def _offset_delete_checks(request: Any, api_version: int, topic_name: TopicNameLookup) -> list[Check]:
    return [
        Check("delete", "group", request.group_id),
        *(Check("consume", "topic", t.name) for t in request.topics),
    ]


_CheckFn: TypeAlias = Callable[[Any, int, TopicNameLookup], list[Check]]

_CHECKS: dict[int, _CheckFn] = {
    0: _produce_checks,
    1: _fetch_checks,
    2: _list_offsets_checks,
    3: _metadata_checks,
    8: _offset_commit_checks,
    9: _offset_fetch_checks,
    10: _find_coordinator_checks,
    11: _consume_group,
    12: _consume_group,
    13: _consume_group,
    14: _consume_group,
    15: _describe_groups_checks,
    16: _describe_cluster,
    17: _nothing,
    18: _nothing,
    19: _create_topics_checks,
    20: _delete_topics_checks,
    21: _delete_records_checks,
    22: _init_producer_id_checks,
    23: _offset_for_leader_epoch_checks,
    24: _add_partitions_to_txn_checks,
    25: _add_offsets_to_txn_checks,
    26: _end_txn_checks,
    28: _txn_offset_commit_checks,
    32: _describe_configs_checks,
    33: _alter_configs_checks,
    36: _nothing,
    37: _create_partitions_checks,
    42: _delete_groups_checks,
    44: _alter_configs_checks,
    47: _offset_delete_checks,
    60: _describe_cluster,
}


# ------------------------------------------------------------------------------------------ error responses


class _ErrorCodes:
    """Picks the error code of each response entry from the caller's ``error_code_for``.

    An entry is governed by the request-level checks (transactional id, group) followed by its own check; it
    gets the first non-zero code among them. A callable may return 0 for checks that passed; an entry whose
    checks all passed still must not claim success (its request is not forwarded), so it falls back to the
    kind's authorization code. An int is used for every entry.
    """

    def __init__(self, error_code_for: ErrorCodeFor, message: str | None) -> None:
        self._given = error_code_for
        self.message = message

    def code(self, check: Check) -> int:
        given = self._given
        return given if isinstance(given, int) else given(check)

    def first_denial(self, checks: Iterable[Check]) -> int:
        if isinstance(self._given, int):
            return self._given
        for check in checks:
            code = self.code(check)
            if code:
                return code
        return 0

    def for_entry(self, *checks: Check) -> int:
        """Code for an entry governed by ``checks`` (request-level ones first, the entry's own check last)."""
        return self.first_denial(checks) or authorization_error_code(checks[-1])

    def for_request(
        self, checks: Sequence[Check], *, has_entries: bool, fallback: int = CLUSTER_AUTHORIZATION_FAILED
    ) -> int:
        """Top-level code: the request-level denial; 0 if the request level passed and entries carry it."""
        code = self.first_denial(checks)
        if code or has_entries:
            return code
        return authorization_error_code(checks[0]) if checks else fallback


def error_response(
    api_key: int,
    api_version: int,
    request: Any,
    error_code_for: ErrorCodeFor = authorization_error_code,
    *,
    topic_name: TopicNameLookup | None = None,
    message: str | None = DENIED_MESSAGE,
) -> Any:
    """A response (generated response class) that answers the whole of ``request`` with errors.

    ``error_code_for`` maps each entry's check to its code (default: by resource kind), or is one code for
    everything (e.g. SASL_AUTHENTICATION_FAILED for a request before authentication). ``topic_name`` resolves
    topic ids for the checks handed to ``error_code_for`` (unresolved ids get UNKNOWN_TOPIC_ID by default);
    the response itself mirrors ids as the request gave them. ``message`` fills ``error_message`` fields in
    versions that have them. Raises ``UnhandledApi`` for anything the gateway does not advertise.
    """
    _require_handled(api_key, api_version)
    codes = _ErrorCodes(error_code_for, message)
    return _ERRORS[api_key](request, api_version, codes, topic_name or _no_topic_names)


def _no_topic_names(topic_id: uuid.UUID) -> str | None:
    return None


def _versioned_message(codes: _ErrorCodes, api_version: int, first_version: int) -> str | None:
    return codes.message if api_version >= first_version else None


def produce_topic_error_entry(topic: Any, error_code: int, api_version: int, message: str | None) -> Any:
    """A Produce response topic answering every partition of a request topic with ``error_code``."""
    from gateway.protocols.kafka.generated import produce as m

    return m.ProduceResponseTopicProduceResponse(
        name=topic.name,
        partition_responses=[
            m.ProduceResponsePartitionProduceResponse(
                index=p.index,
                error_code=error_code,
                base_offset=-1,
                log_append_time_ms=-1,
                log_start_offset=-1,
                error_message=message if api_version >= 8 else None,
            )
            for p in topic.partition_data
        ],
    )


def fetch_topic_error_entry(topic: Any, error_code: int) -> Any:
    """A Fetch response topic answering every partition of a request topic with ``error_code``.

    Name and id are both mirrored from the request; the encoder writes the one the version has. Records are
    empty (not null), as Kafka brokers send for failed partitions; offsets are -1 (unknown).
    """
    from gateway.protocols.kafka.generated import fetch as m

    return m.FetchResponseFetchableTopicResponse(
        topic=topic.topic,
        topic_id=topic.topic_id,
        partitions=[
            m.FetchResponsePartitionData(
                partition_index=p.partition,
                error_code=error_code,
                high_watermark=-1,
                last_stable_offset=-1,
                log_start_offset=-1,
                records=b"",
            )
            for p in topic.partitions
        ],
    )


def _produce_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    from gateway.protocols.kafka.generated import produce as m

    txn = (
        [Check("produce", "transactional_id", request.transactional_id)]
        if request.transactional_id is not None
        else []
    )
    return m.ProduceResponse(
        throttle_time_ms=0,
        responses=[
            produce_topic_error_entry(
                t, codes.for_entry(*txn, Check("produce", "topic", t.name)), api_version, codes.message
            )
            for t in request.topic_data
        ],
    )


def _fetch_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    """Fetch: errors per partition; a top-level code only for a follower fetch or when no partition is named.

    Kafka reserves the top-level code for fetch-session failures; a client that sees one (the Java consumer's
    FetchSessionHandler, for one) drops the whole response and silently retries, so per-partition
    authorization errors would never reach the application. Session id 0 ends any fetch session.
    """
    from gateway.protocols.kafka.generated import fetch as m

    request_level = [cluster_check("alter")] if _is_follower_fetch(request, api_version) else []
    responses = [
        fetch_topic_error_entry(
            t,
            codes.for_entry(
                *request_level, Check("consume", "topic", _fetch_topic_ref(t, api_version, topic_name))
            ),
        )
        for t in request.topics
    ]
    top = (
        codes.for_request(request_level, has_entries=bool(responses)) if request_level or not responses else 0
    )
    return m.FetchResponse(
        throttle_time_ms=0, error_code=top if api_version >= 7 else 0, session_id=0, responses=responses
    )


def _list_offsets_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import list_offsets as m

    return m.ListOffsetsResponse(
        throttle_time_ms=0,
        topics=[
            m.ListOffsetsResponseListOffsetsTopicResponse(
                name=t.name,
                partitions=[
                    m.ListOffsetsResponseListOffsetsPartitionResponse(
                        partition_index=p.partition_index,
                        error_code=codes.for_entry(Check("describe", "topic", t.name)),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _metadata_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    """Metadata: an error entry (no partitions) per requested topic; no brokers, so nothing to connect to."""
    from gateway.protocols.kafka.generated import metadata as m

    topics = [] if metadata_requests_all_topics(request, api_version) else request.topics
    auto_create = api_version < 4 or request.allow_auto_topic_creation
    entries = []
    for topic in topics:
        checks = [
            Check("describe", "topic", ref) for ref in _topic_refs(topic.name, topic.topic_id, topic_name)
        ]
        if auto_create and topic.name is not None:
            checks.append(Check("create", "topic", topic.name))
        # A topic asked for by id has no name to mirror: null where the version allows it, else "".
        name = topic.name if topic.name is not None else (None if api_version >= 12 else "")
        entries.append(
            m.MetadataResponseTopic(
                error_code=codes.for_entry(*checks), name=name, topic_id=topic.topic_id, partitions=[]
            )
        )
    return m.MetadataResponse(
        throttle_time_ms=0, brokers=[], cluster_id=None, controller_id=-1, topics=entries
    )


def _offset_commit_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import offset_commit as m

    group = Check("consume", "group", request.group_id)
    return m.OffsetCommitResponse(
        throttle_time_ms=0,
        topics=[
            m.OffsetCommitResponseTopic(
                name=t.name,
                partitions=[
                    m.OffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=codes.for_entry(group, Check("consume", "topic", t.name)),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _offset_fetch_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    """OffsetFetch: the group's code at top level (v2-7) or per group (v8+), topic codes per partition.

    Kafka puts group authorization failures at the group level and topic failures on partitions; a Java
    consumer reads a group-level TOPIC_AUTHORIZATION_FAILED as an unexpected error, so the group level only
    carries a group denial unless there is no partition to carry anything.
    """
    from gateway.protocols.kafka.generated import offset_fetch as m

    if api_version < 8:
        group = Check("describe", "group", request.group_id)
        topics = [
            m.OffsetFetchResponseTopic(
                name=t.name,
                partitions=[
                    m.OffsetFetchResponsePartition(
                        partition_index=index,
                        committed_offset=-1,
                        metadata="",
                        error_code=codes.for_entry(group, Check("describe", "topic", t.name)),
                    )
                    for index in t.partition_indexes
                ],
            )
            for t in request.topics or ()
        ]
        has_partitions = any(t.partitions for t in topics)
        top = codes.for_request([group], has_entries=has_partitions) if api_version >= 2 else 0
        return m.OffsetFetchResponse(throttle_time_ms=0, topics=topics, error_code=top)
    groups = []
    for requested in request.groups:
        group = Check("describe", "group", requested.group_id)
        topics8 = [
            m.OffsetFetchResponseTopics(
                name=t.name,
                partitions=[
                    m.OffsetFetchResponsePartitions(
                        partition_index=index,
                        committed_offset=-1,
                        metadata="",
                        error_code=codes.for_entry(group, Check("describe", "topic", t.name)),
                    )
                    for index in t.partition_indexes
                ],
            )
            for t in requested.topics or ()
        ]
        has_partitions = any(t.partitions for t in topics8)
        groups.append(
            m.OffsetFetchResponseGroup(
                group_id=requested.group_id,
                topics=topics8,
                error_code=codes.for_request([group], has_entries=has_partitions),
            )
        )
    return m.OffsetFetchResponse(throttle_time_ms=0, groups=groups)


def _find_coordinator_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    """FindCoordinator: "no coordinator" (node -1, no host) and the error; the address rewriter skips it."""
    from gateway.protocols.kafka.generated import find_coordinator as m

    key_type = request.key_type if api_version >= 1 else COORDINATOR_GROUP
    if api_version < 4:
        return m.FindCoordinatorResponse(
            throttle_time_ms=0,
            error_code=codes.for_entry(_coordinator_check(key_type, request.key)),
            error_message=_versioned_message(codes, api_version, 1),
            node_id=-1,
            host="",
            port=-1,
        )
    return m.FindCoordinatorResponse(
        throttle_time_ms=0,
        coordinators=[
            m.FindCoordinatorResponseCoordinator(
                key=key,
                node_id=-1,
                host="",
                port=-1,
                error_code=codes.for_entry(_coordinator_check(key_type, key)),
                error_message=codes.message,
            )
            for key in request.coordinator_keys
        ],
    )


def _join_group_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    from gateway.protocols.kafka.generated import join_group as m

    code = codes.for_request([Check("consume", "group", request.group_id)], has_entries=False)
    # Kafka's own error answer: unknown generation and member, protocol name null where the version allows it.
    return m.JoinGroupResponse(
        throttle_time_ms=0,
        error_code=code,
        generation_id=-1,
        protocol_name=None if api_version >= 7 else "",
        leader="",
        member_id="",
        members=[],
    )


def _heartbeat_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    from gateway.protocols.kafka.generated import heartbeat as m

    code = codes.for_request([Check("consume", "group", request.group_id)], has_entries=False)
    return m.HeartbeatResponse(throttle_time_ms=0, error_code=code)


def _leave_group_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import leave_group as m

    code = codes.for_request([Check("consume", "group", request.group_id)], has_entries=False)
    members = (
        [
            m.LeaveGroupResponseMemberResponse(
                member_id=member.member_id, group_instance_id=member.group_instance_id, error_code=code
            )
            for member in request.members
        ]
        if api_version >= 3
        else []
    )
    return m.LeaveGroupResponse(throttle_time_ms=0, error_code=code, members=members)


def _sync_group_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    from gateway.protocols.kafka.generated import sync_group as m

    code = codes.for_request([Check("consume", "group", request.group_id)], has_entries=False)
    return m.SyncGroupResponse(throttle_time_ms=0, error_code=code, assignment=b"")


def _describe_groups_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import describe_groups as m

    return m.DescribeGroupsResponse(
        throttle_time_ms=0,
        groups=[
            m.DescribeGroupsResponseDescribedGroup(
                error_code=codes.for_entry(Check("describe", "group", g)),
                group_id=g,
                group_state="",
                protocol_type="",
                protocol_data="",
                members=[],
            )
            for g in request.groups
        ],
    )


def _list_groups_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import list_groups as m

    return m.ListGroupsResponse(
        throttle_time_ms=0,
        groups=[],
        error_code=codes.for_request([cluster_check("describe")], has_entries=False),
    )


def _sasl_handshake_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import sasl_handshake as m

    code = codes.for_request([], has_entries=False, fallback=SASL_AUTHENTICATION_FAILED)
    return m.SaslHandshakeResponse(error_code=code, mechanisms=[])


def _api_versions_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import api_versions as m

    return m.ApiVersionsResponse(
        error_code=codes.for_request([], has_entries=False), api_keys=[], throttle_time_ms=0
    )


def _sasl_authenticate_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import sasl_authenticate as m

    code = codes.for_request([], has_entries=False, fallback=SASL_AUTHENTICATION_FAILED)
    return m.SaslAuthenticateResponse(
        error_code=code, error_message=codes.message, auth_bytes=b"", session_lifetime_ms=0
    )


def _create_topics_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import create_topics as m

    return m.CreateTopicsResponse(
        throttle_time_ms=0,
        topics=[
            m.CreateTopicsResponseCreatableTopicResult(
                name=t.name,
                error_code=codes.for_entry(Check("create", "topic", t.name)),
                error_message=codes.message,
                num_partitions=-1,
                replication_factor=-1,
            )
            for t in request.topics
        ],
    )


def _delete_topics_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import delete_topics as m

    message = _versioned_message(codes, api_version, 5)
    if api_version < 6:
        results = [
            m.DeleteTopicsResponseDeletableTopicResult(
                name=name, error_code=codes.for_entry(Check("delete", "topic", name)), error_message=message
            )
            for name in request.topic_names
        ]
    else:
        results = [
            m.DeleteTopicsResponseDeletableTopicResult(
                name=t.name,
                topic_id=t.topic_id,
                error_message=message,
                error_code=codes.for_entry(
                    *(Check("delete", "topic", ref) for ref in _topic_refs(t.name, t.topic_id, topic_name))
                ),
            )
            for t in request.topics
        ]
    return m.DeleteTopicsResponse(throttle_time_ms=0, responses=results)


def _delete_records_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import delete_records as m

    return m.DeleteRecordsResponse(
        throttle_time_ms=0,
        topics=[
            m.DeleteRecordsResponseDeleteRecordsTopicResult(
                name=t.name,
                partitions=[
                    m.DeleteRecordsResponseDeleteRecordsPartitionResult(
                        partition_index=p.partition_index,
                        low_watermark=-1,
                        error_code=codes.for_entry(Check("delete", "topic", t.name)),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _init_producer_id_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import init_producer_id as m

    # Without a transactional id this is an idempotent producer: Kafka answers CLUSTER_AUTHORIZATION_FAILED.
    code = codes.for_request(_init_producer_id_checks(request, api_version, topic_name), has_entries=False)
    return m.InitProducerIdResponse(throttle_time_ms=0, error_code=code, producer_id=-1, producer_epoch=-1)


def _offset_for_leader_epoch_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import offset_for_leader_epoch as m

    return m.OffsetForLeaderEpochResponse(
        throttle_time_ms=0,
        topics=[
            m.OffsetForLeaderEpochResponseOffsetForLeaderTopicResult(
                topic=t.topic,
                partitions=[
                    m.OffsetForLeaderEpochResponseEpochEndOffset(
                        partition=p.partition,
                        leader_epoch=-1,
                        end_offset=-1,
                        error_code=codes.for_entry(Check("describe", "topic", t.topic)),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _add_partitions_to_txn_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    """AddPartitionsToTxn v0-3: as in Kafka, partitions that were fine are OPERATION_NOT_ATTEMPTED."""
    from gateway.protocols.kafka.generated import add_partitions_to_txn as m

    txn = Check("produce", "transactional_id", request.v3_and_below_transactional_id)
    denials = {
        t.name: codes.first_denial([txn, Check("produce", "topic", t.name)])
        for t in request.v3_and_below_topics
    }
    not_attempted = OPERATION_NOT_ATTEMPTED if any(denials.values()) else TOPIC_AUTHORIZATION_FAILED
    return m.AddPartitionsToTxnResponse(
        throttle_time_ms=0,
        results_by_topic_v3_and_below=[
            m.AddPartitionsToTxnResponseAddPartitionsToTxnTopicResult(
                name=t.name,
                results_by_partition=[
                    m.AddPartitionsToTxnResponseAddPartitionsToTxnPartitionResult(
                        partition_index=p, partition_error_code=denials[t.name] or not_attempted
                    )
                    for p in t.partitions
                ],
            )
            for t in request.v3_and_below_topics
        ],
    )


def _add_offsets_to_txn_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import add_offsets_to_txn as m

    code = codes.for_request(_add_offsets_to_txn_checks(request, api_version, topic_name), has_entries=False)
    return m.AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=code)


def _end_txn_error(request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup) -> Any:
    from gateway.protocols.kafka.generated import end_txn as m

    code = codes.for_request(_end_txn_checks(request, api_version, topic_name), has_entries=False)
    return m.EndTxnResponse(throttle_time_ms=0, error_code=code, producer_id=-1, producer_epoch=-1)


def _txn_offset_commit_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import txn_offset_commit as m

    txn = Check("produce", "transactional_id", request.transactional_id)
    group = Check("consume", "group", request.group_id)
    return m.TxnOffsetCommitResponse(
        throttle_time_ms=0,
        topics=[
            m.TxnOffsetCommitResponseTopic(
                name=t.name,
                partitions=[
                    m.TxnOffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=codes.for_entry(txn, group, Check("consume", "topic", t.name)),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _describe_configs_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import describe_configs as m

    return m.DescribeConfigsResponse(
        throttle_time_ms=0,
        results=[
            m.DescribeConfigsResponseDescribeConfigsResult(
                error_code=codes.for_entry(
                    config_resource_check("describe_configs", r.resource_type, r.resource_name)
                ),
                error_message=codes.message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
                configs=[],
            )
            for r in request.resources
        ],
    )


def _alter_configs_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import alter_configs as m

    return m.AlterConfigsResponse(
        throttle_time_ms=0,
        responses=[
            m.AlterConfigsResponseAlterConfigsResourceResponse(
                error_code=codes.for_entry(
                    config_resource_check("alter_configs", r.resource_type, r.resource_name)
                ),
                error_message=codes.message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
            for r in request.resources
        ],
    )


def _incremental_alter_configs_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import incremental_alter_configs as m

    return m.IncrementalAlterConfigsResponse(
        throttle_time_ms=0,
        responses=[
            m.IncrementalAlterConfigsResponseAlterConfigsResourceResponse(
                error_code=codes.for_entry(
                    config_resource_check("alter_configs", r.resource_type, r.resource_name)
                ),
                error_message=codes.message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
            for r in request.resources
        ],
    )


def _create_partitions_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import create_partitions as m

    return m.CreatePartitionsResponse(
        throttle_time_ms=0,
        results=[
            m.CreatePartitionsResponseCreatePartitionsTopicResult(
                name=t.name,
                error_code=codes.for_entry(Check("alter", "topic", t.name)),
                error_message=codes.message,
            )
            for t in request.topics
        ],
    )


def _delete_groups_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import delete_groups as m

    return m.DeleteGroupsResponse(
        throttle_time_ms=0,
        results=[
            m.DeleteGroupsResponseDeletableGroupResult(
                group_id=g, error_code=codes.for_entry(Check("delete", "group", g))
            )
            for g in request.groups_names
        ],
    )


def _offset_delete_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import offset_delete as m

    group = Check("delete", "group", request.group_id)
    topics = [
        m.OffsetDeleteResponseTopic(
            name=t.name,
            partitions=[
                m.OffsetDeleteResponsePartition(
                    partition_index=p.partition_index,
                    error_code=codes.for_entry(group, Check("consume", "topic", t.name)),
                )
                for p in t.partitions
            ],
        )
        for t in request.topics
    ]
    top = codes.for_request([group], has_entries=any(t.partitions for t in topics))
    return m.OffsetDeleteResponse(error_code=top, throttle_time_ms=0, topics=topics)


def _describe_cluster_error(
    request: Any, api_version: int, codes: _ErrorCodes, topic_name: TopicNameLookup
) -> Any:
    from gateway.protocols.kafka.generated import describe_cluster as m

    return m.DescribeClusterResponse(
        throttle_time_ms=0,
        error_code=codes.for_request([cluster_check("describe")], has_entries=False),
        error_message=codes.message,
        endpoint_type=request.endpoint_type,
        cluster_id="",
        controller_id=-1,
        brokers=[],
    )


_ErrorFn: TypeAlias = Callable[[Any, int, _ErrorCodes, TopicNameLookup], Any]

_ERRORS: dict[int, _ErrorFn] = {
    0: _produce_error,
    1: _fetch_error,
    2: _list_offsets_error,
    3: _metadata_error,
    8: _offset_commit_error,
    9: _offset_fetch_error,
    10: _find_coordinator_error,
    11: _join_group_error,
    12: _heartbeat_error,
    13: _leave_group_error,
    14: _sync_group_error,
    15: _describe_groups_error,
    16: _list_groups_error,
    17: _sasl_handshake_error,
    18: _api_versions_error,
    19: _create_topics_error,
    20: _delete_topics_error,
    21: _delete_records_error,
    22: _init_producer_id_error,
    23: _offset_for_leader_epoch_error,
    24: _add_partitions_to_txn_error,
    25: _add_offsets_to_txn_error,
    26: _end_txn_error,
    28: _txn_offset_commit_error,
    32: _describe_configs_error,
    33: _alter_configs_error,
    36: _sasl_authenticate_error,
    37: _create_partitions_error,
    42: _delete_groups_error,
    44: _incremental_alter_configs_error,
    47: _offset_delete_error,
    60: _describe_cluster_error,
}
