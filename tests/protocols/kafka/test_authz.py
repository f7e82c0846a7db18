"""Tests for ``gateway.protocols.kafka.authz``: the check table and whole-request error responses.

The coverage tests iterate over ``apis.HANDLED`` itself, so a newly advertised API or version without an
authorization decision, or without an error answer that survives the codec, fails here. Sample requests are
encoded and decoded with the real codec before use, so they are what a client of that version could send.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gateway.protocols.kafka import apis, codec
from gateway.protocols.kafka.authz import (
    ACTIONS,
    AUTHZ_TABLE,
    CLUSTER_AUTHORIZATION_FAILED,
    CLUSTER_NAME,
    GROUP_AUTHORIZATION_FAILED,
    KINDS,
    OPERATION_NOT_ATTEMPTED,
    SASL_AUTHENTICATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_ID,
    Check,
    UnhandledApi,
    authorization_error_code,
    error_response,
    is_unknown_topic_id_name,
    required_checks,
    unknown_topic_id_name,
)
from gateway.protocols.kafka.generated import add_offsets_to_txn as add_offsets
from gateway.protocols.kafka.generated import add_partitions_to_txn as add_partitions
from gateway.protocols.kafka.generated import (
    alter_configs,
    api_versions,
    create_partitions,
    create_topics,
    delete_groups,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_groups,
    end_txn,
    fetch,
    find_coordinator,
    heartbeat,
    incremental_alter_configs,
    init_producer_id,
    join_group,
    leave_group,
    list_groups,
    list_offsets,
    metadata,
    offset_commit,
    offset_delete,
    offset_fetch,
    offset_for_leader_epoch,
    produce,
    sasl_authenticate,
    sasl_handshake,
    sync_group,
    txn_offset_commit,
)

ORDERS_ID = uuid.UUID("11111111-1111-1111-1111-111111111111")
PAYMENTS_ID = uuid.UUID("22222222-2222-2222-2222-222222222222")
STRANGER_ID = uuid.UUID("99999999-9999-9999-9999-999999999999")
TOPIC_IDS = {ORDERS_ID: "orders", PAYMENTS_ID: "payments"}
PARTITIONS = {"orders": [0, 1], "payments": [2]}
TOP = ("top",)  # key of a response's top-level error code in the extracted code maps

ALL_VERSIONS = [
    (key, version)
    for key, spec in sorted(apis.HANDLED.items())
    for version in range(spec.min_version, spec.max_version + 1)
]


def known_ids(topic_id: uuid.UUID) -> str | None:
    return TOPIC_IDS.get(topic_id)


def wire(api_key: int, version: int, request: Any) -> Any:
    """The request as a client of that version sends it (fields the version lacks fall back to defaults)."""
    return codec.decode_request(api_key, version, codec.encode_request(api_key, version, request))[0]


def through_codec(api_key: int, version: int, response: Any) -> Any:
    data = codec.encode_response(api_key, version, response)
    decoded, end = codec.decode_response(api_key, version, data)
    assert end == len(data)
    assert codec.encode_response(api_key, version, decoded) == data
    return decoded


def partition_codes(
    topics: Any,
    name: Callable[[Any], str],
    partitions: Callable[[Any], Any],
    index: Callable[[Any], int],
    code: Callable[[Any], int],
) -> dict[tuple, int]:
    return {("topic", name(t), index(p)): code(p) for t in topics for p in partitions(t)}


def expected_partitions(code: int) -> dict[tuple, int]:
    return {("topic", name, p): code for name, parts in PARTITIONS.items() for p in parts}


# ------------------------------------------------------------------------------------------ sample requests
# Each API: build(version) -> request, codes(response, version) -> {resource: code},
# expected(version) -> {resource: code under the default kind-based mapping}.


def produce_build(v: int) -> Any:
    return produce.ProduceRequest(
        transactional_id="tx" if v >= 3 else None,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            produce.ProduceRequestTopicProduceData(
                name=n, partition_data=[produce.ProduceRequestPartitionProduceData(index=p) for p in parts]
            )
            for n, parts in PARTITIONS.items()
        ],
    )


def fetch_build(v: int) -> Any:
    ids = {"orders": ORDERS_ID, "payments": PAYMENTS_ID}
    return fetch.FetchRequest(
        max_wait_ms=100,
        min_bytes=1,
        topics=[
            fetch.FetchRequestFetchTopic(
                topic=n if v < 13 else "",
                topic_id=ids[n] if v >= 13 else uuid.UUID(int=0),
                partitions=[fetch.FetchRequestFetchPartition(partition=p) for p in parts],
            )
            for n, parts in PARTITIONS.items()
        ],
    )


def fetch_codes(r: Any, v: int) -> dict[tuple, int]:
    codes = partition_codes(
        r.responses,
        lambda t: t.topic if v < 13 else TOPIC_IDS[t.topic_id],
        lambda t: t.partitions,
        lambda p: p.partition_index,
        lambda p: p.error_code,
    )
    return {**codes, TOP: r.error_code} if v >= 7 else codes


def metadata_build(v: int) -> Any:
    return metadata.MetadataRequest(
        topics=[metadata.MetadataRequestTopic(name=n) for n in PARTITIONS], allow_auto_topic_creation=v < 4
    )


def offset_fetch_build(v: int) -> Any:
    topics = [
        offset_fetch.OffsetFetchRequestTopic(name=n, partition_indexes=p) for n, p in PARTITIONS.items()
    ]
    if v < 8:
        return offset_fetch.OffsetFetchRequest(group_id="g1", topics=topics)
    return offset_fetch.OffsetFetchRequest(
        groups=[
            offset_fetch.OffsetFetchRequestGroup(
                group_id="g1",
                topics=[
                    offset_fetch.OffsetFetchRequestTopics(name=n, partition_indexes=p)
                    for n, p in PARTITIONS.items()
                ],
            ),
            offset_fetch.OffsetFetchRequestGroup(group_id="g2", topics=None),
        ]
    )


def offset_fetch_codes(r: Any, v: int) -> dict[tuple, int]:
    if v < 8:
        codes = partition_codes(
            r.topics,
            lambda t: t.name,
            lambda t: t.partitions,
            lambda p: p.partition_index,
            lambda p: p.error_code,
        )
        return {**codes, TOP: r.error_code} if v >= 2 else codes
    codes = {}
    for g in r.groups:
        codes[("group", g.group_id)] = g.error_code
        codes |= {
            (g.group_id, *k): c
            for k, c in partition_codes(
                g.topics,
                lambda t: t.name,
                lambda t: t.partitions,
                lambda p: p.partition_index,
                lambda p: p.error_code,
            ).items()
        }
    return codes


def offset_fetch_expected(v: int) -> dict[tuple, int]:
    partitions = expected_partitions(GROUP_AUTHORIZATION_FAILED)  # the group check governs its partitions
    if v < 8:
        return {**partitions, TOP: GROUP_AUTHORIZATION_FAILED} if v >= 2 else partitions
    return {
        ("group", "g1"): GROUP_AUTHORIZATION_FAILED,
        ("group", "g2"): GROUP_AUTHORIZATION_FAILED,
        **{("g1", *k): c for k, c in partitions.items()},
    }


def find_coordinator_build(v: int) -> Any:
    if v == 0:
        return find_coordinator.FindCoordinatorRequest(key="g1")
    if v < 4:
        return find_coordinator.FindCoordinatorRequest(key="tx", key_type=1)
    return find_coordinator.FindCoordinatorRequest(key_type=0, coordinator_keys=["g1", "g2"])


def find_coordinator_codes(r: Any, v: int) -> dict[tuple, int]:
    if v < 4:
        assert (r.node_id, r.host, r.port) == (-1, "", -1)
        return {TOP: r.error_code}
    assert all((c.node_id, c.host, c.port) == (-1, "", -1) for c in r.coordinators)
    return {("group", c.key): c.error_code for c in r.coordinators}


def find_coordinator_expected(v: int) -> dict[tuple, int]:
    if v == 0:
        return {TOP: GROUP_AUTHORIZATION_FAILED}
    if v < 4:
        return {TOP: TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    return {("group", "g1"): GROUP_AUTHORIZATION_FAILED, ("group", "g2"): GROUP_AUTHORIZATION_FAILED}


def leave_group_build(v: int) -> Any:
    if v < 3:
        return leave_group.LeaveGroupRequest(group_id="g1", member_id="m1")
    return leave_group.LeaveGroupRequest(
        group_id="g1",
        members=[
            leave_group.LeaveGroupRequestMemberIdentity(member_id="m1"),
            leave_group.LeaveGroupRequestMemberIdentity(member_id="m2", group_instance_id="static-2"),
        ],
    )


def leave_group_codes(r: Any, v: int) -> dict[tuple, int]:
    return {TOP: r.error_code, **{("member", m.member_id): m.error_code for m in r.members}}


def leave_group_expected(v: int) -> dict[tuple, int]:
    members = {("member", "m1"): GROUP_AUTHORIZATION_FAILED, ("member", "m2"): GROUP_AUTHORIZATION_FAILED}
    return {TOP: GROUP_AUTHORIZATION_FAILED, **(members if v >= 3 else {})}


def delete_topics_build(v: int) -> Any:
    if v < 6:
        return delete_topics.DeleteTopicsRequest(topic_names=list(PARTITIONS), timeout_ms=1000)
    return delete_topics.DeleteTopicsRequest(
        topics=[
            delete_topics.DeleteTopicsRequestDeleteTopicState(name="orders"),
            delete_topics.DeleteTopicsRequestDeleteTopicState(name=None, topic_id=PAYMENTS_ID),
        ],
        timeout_ms=1000,
    )


def delete_topics_codes(r: Any, v: int) -> dict[tuple, int]:
    return {
        ("topic", t.name if t.name is not None else TOPIC_IDS[t.topic_id]): t.error_code for t in r.responses
    }


def config_resources(module: Any, cls_name: str) -> list[Any]:
    cls = getattr(module, cls_name)
    return [
        cls(resource_type=2, resource_name="orders"),
        cls(resource_type=4, resource_name="1"),
        cls(resource_type=32, resource_name="g1"),
    ]


def config_codes(results: list[Any]) -> dict[tuple, int]:
    return {("config", r.resource_type, r.resource_name): r.error_code for r in results}


CONFIG_EXPECTED = {
    ("config", 2, "orders"): TOPIC_AUTHORIZATION_FAILED,
    ("config", 4, "1"): CLUSTER_AUTHORIZATION_FAILED,
    ("config", 32, "g1"): GROUP_AUTHORIZATION_FAILED,
}


def topic_names_codes(
    results: list[Any], code: Callable[[Any], int] = lambda t: t.error_code
) -> dict[tuple, int]:
    return {("topic", t.name): code(t) for t in results}


TOPIC_NAMES_EXPECTED = {("topic", n): TOPIC_AUTHORIZATION_FAILED for n in PARTITIONS}

Sample = tuple[
    Callable[[int], Any], Callable[[Any, int], dict[tuple, int]], Callable[[int], dict[tuple, int]]
]

SAMPLES: dict[int, Sample] = {
    0: (
        produce_build,
        lambda r, v: partition_codes(
            r.responses,
            lambda t: t.name,
            lambda t: t.partition_responses,
            lambda p: p.index,
            lambda p: p.error_code,
        ),
        lambda v: expected_partitions(
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED if v >= 3 else TOPIC_AUTHORIZATION_FAILED
        ),
    ),
    1: (
        fetch_build,
        fetch_codes,
        lambda v: {**expected_partitions(TOPIC_AUTHORIZATION_FAILED), **({TOP: 0} if v >= 7 else {})},
    ),
    2: (
        lambda v: list_offsets.ListOffsetsRequest(
            replica_id=-1,
            topics=[
                list_offsets.ListOffsetsRequestListOffsetsTopic(
                    name=n,
                    partitions=[
                        list_offsets.ListOffsetsRequestListOffsetsPartition(partition_index=p, timestamp=-1)
                        for p in parts
                    ],
                )
                for n, parts in PARTITIONS.items()
            ],
        ),
        lambda r, v: partition_codes(
            r.topics,
            lambda t: t.name,
            lambda t: t.partitions,
            lambda p: p.partition_index,
            lambda p: p.error_code,
        ),
        lambda v: expected_partitions(TOPIC_AUTHORIZATION_FAILED),
    ),
    3: (metadata_build, lambda r, v: topic_names_codes(r.topics), lambda v: TOPIC_NAMES_EXPECTED),
    8: (
        lambda v: offset_commit.OffsetCommitRequest(
            group_id="g1",
            topics=[
                offset_commit.OffsetCommitRequestTopic(
                    name=n,
                    partitions=[
                        offset_commit.OffsetCommitRequestPartition(partition_index=p, committed_offset=5)
                        for p in parts
                    ],
                )
                for n, parts in PARTITIONS.items()
            ],
        ),
        lambda r, v: partition_codes(
            r.topics,
            lambda t: t.name,
            lambda t: t.partitions,
            lambda p: p.partition_index,
            lambda p: p.error_code,
        ),
        lambda v: expected_partitions(GROUP_AUTHORIZATION_FAILED),
    ),
    9: (offset_fetch_build, offset_fetch_codes, offset_fetch_expected),
    10: (find_coordinator_build, find_coordinator_codes, find_coordinator_expected),
    11: (
        lambda v: join_group.JoinGroupRequest(
            group_id="g1", session_timeout_ms=10000, protocol_type="consumer"
        ),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: GROUP_AUTHORIZATION_FAILED},
    ),
    12: (
        lambda v: heartbeat.HeartbeatRequest(group_id="g1", generation_id=3, member_id="m1"),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: GROUP_AUTHORIZATION_FAILED},
    ),
    13: (leave_group_build, leave_group_codes, leave_group_expected),
    14: (
        lambda v: sync_group.SyncGroupRequest(group_id="g1", generation_id=3, member_id="m1"),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: GROUP_AUTHORIZATION_FAILED},
    ),
    15: (
        lambda v: describe_groups.DescribeGroupsRequest(groups=["g1", "g2"]),
        lambda r, v: {("group", g.group_id): g.error_code for g in r.groups},
        lambda v: {("group", "g1"): GROUP_AUTHORIZATION_FAILED, ("group", "g2"): GROUP_AUTHORIZATION_FAILED},
    ),
    16: (
        lambda v: list_groups.ListGroupsRequest(),
        lambda r, v: {TOP: r.error_code, ("groups",): len(r.groups)},
        lambda v: {TOP: CLUSTER_AUTHORIZATION_FAILED, ("groups",): 0},
    ),
    17: (
        lambda v: sasl_handshake.SaslHandshakeRequest(mechanism="PLAIN"),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: SASL_AUTHENTICATION_FAILED},
    ),
    18: (
        lambda v: api_versions.ApiVersionsRequest(),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: CLUSTER_AUTHORIZATION_FAILED},
    ),
    19: (
        lambda v: create_topics.CreateTopicsRequest(
            topics=[
                create_topics.CreateTopicsRequestCreatableTopic(
                    name=n, num_partitions=3, replication_factor=1
                )
                for n in PARTITIONS
            ]
        ),
        lambda r, v: topic_names_codes(r.topics),
        lambda v: TOPIC_NAMES_EXPECTED,
    ),
    20: (delete_topics_build, delete_topics_codes, lambda v: TOPIC_NAMES_EXPECTED),
    21: (
        lambda v: delete_records.DeleteRecordsRequest(
            topics=[
                delete_records.DeleteRecordsRequestDeleteRecordsTopic(
                    name=n,
                    partitions=[
                        delete_records.DeleteRecordsRequestDeleteRecordsPartition(partition_index=p, offset=9)
                        for p in parts
                    ],
                )
                for n, parts in PARTITIONS.items()
            ]
        ),
        lambda r, v: partition_codes(
            r.topics,
            lambda t: t.name,
            lambda t: t.partitions,
            lambda p: p.partition_index,
            lambda p: p.error_code,
        ),
        lambda v: expected_partitions(TOPIC_AUTHORIZATION_FAILED),
    ),
    22: (
        lambda v: init_producer_id.InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=60000),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
    ),
    23: (
        lambda v: offset_for_leader_epoch.OffsetForLeaderEpochRequest(
            topics=[
                offset_for_leader_epoch.OffsetForLeaderEpochRequestOffsetForLeaderTopic(
                    topic=n,
                    partitions=[
                        offset_for_leader_epoch.OffsetForLeaderEpochRequestOffsetForLeaderPartition(
                            partition=p, leader_epoch=1
                        )
                        for p in parts
                    ],
                )
                for n, parts in PARTITIONS.items()
            ]
        ),
        lambda r, v: partition_codes(
            r.topics, lambda t: t.topic, lambda t: t.partitions, lambda p: p.partition, lambda p: p.error_code
        ),
        lambda v: expected_partitions(TOPIC_AUTHORIZATION_FAILED),
    ),
    24: (
        lambda v: add_partitions.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id="tx",
            v3_and_below_producer_id=7,
            v3_and_below_topics=[
                add_partitions.AddPartitionsToTxnRequestAddPartitionsToTxnTopic(name=n, partitions=parts)
                for n, parts in PARTITIONS.items()
            ],
        ),
        lambda r, v: partition_codes(
            r.results_by_topic_v3_and_below,
            lambda t: t.name,
            lambda t: t.results_by_partition,
            lambda p: p.partition_index,
            lambda p: p.partition_error_code,
        ),
        lambda v: expected_partitions(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    ),
    25: (
        lambda v: add_offsets.AddOffsetsToTxnRequest(transactional_id="tx", producer_id=7, group_id="g1"),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
    ),
    26: (
        lambda v: end_txn.EndTxnRequest(transactional_id="tx", producer_id=7, committed=True),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
    ),
    28: (
        lambda v: txn_offset_commit.TxnOffsetCommitRequest(
            transactional_id="tx",
            group_id="g1",
            topics=[
                txn_offset_commit.TxnOffsetCommitRequestTopic(
                    name=n,
                    partitions=[
                        txn_offset_commit.TxnOffsetCommitRequestPartition(
                            partition_index=p, committed_offset=4
                        )
                        for p in parts
                    ],
                )
                for n, parts in PARTITIONS.items()
            ],
        ),
        lambda r, v: partition_codes(
            r.topics,
            lambda t: t.name,
            lambda t: t.partitions,
            lambda p: p.partition_index,
            lambda p: p.error_code,
        ),
        lambda v: expected_partitions(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    ),
    32: (
        lambda v: describe_configs.DescribeConfigsRequest(
            resources=config_resources(describe_configs, "DescribeConfigsRequestDescribeConfigsResource")
        ),
        lambda r, v: config_codes(r.results),
        lambda v: CONFIG_EXPECTED,
    ),
    33: (
        lambda v: alter_configs.AlterConfigsRequest(
            resources=config_resources(alter_configs, "AlterConfigsRequestAlterConfigsResource")
        ),
        lambda r, v: config_codes(r.responses),
        lambda v: CONFIG_EXPECTED,
    ),
    36: (
        lambda v: sasl_authenticate.SaslAuthenticateRequest(auth_bytes=b"\x00u\x00p"),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: SASL_AUTHENTICATION_FAILED},
    ),
    37: (
        lambda v: create_partitions.CreatePartitionsRequest(
            topics=[
                create_partitions.CreatePartitionsRequestCreatePartitionsTopic(
                    name=n, count=4, assignments=None
                )
                for n in PARTITIONS
            ]
        ),
        lambda r, v: topic_names_codes(r.results),
        lambda v: TOPIC_NAMES_EXPECTED,
    ),
    42: (
        lambda v: delete_groups.DeleteGroupsRequest(groups_names=["g1", "g2"]),
        lambda r, v: {("group", g.group_id): g.error_code for g in r.results},
        lambda v: {("group", "g1"): GROUP_AUTHORIZATION_FAILED, ("group", "g2"): GROUP_AUTHORIZATION_FAILED},
    ),
    44: (
        lambda v: incremental_alter_configs.IncrementalAlterConfigsRequest(
            resources=config_resources(
                incremental_alter_configs, "IncrementalAlterConfigsRequestAlterConfigsResource"
            )
        ),
        lambda r, v: config_codes(r.responses),
        lambda v: CONFIG_EXPECTED,
    ),
    47: (
        lambda v: offset_delete.OffsetDeleteRequest(
            group_id="g1",
            topics=[
                offset_delete.OffsetDeleteRequestTopic(
                    name=n,
                    partitions=[offset_delete.OffsetDeleteRequestPartition(partition_index=p) for p in parts],
                )
                for n, parts in PARTITIONS.items()
            ],
        ),
        lambda r, v: {
            TOP: r.error_code,
            **partition_codes(
                r.topics,
                lambda t: t.name,
                lambda t: t.partitions,
                lambda p: p.partition_index,
                lambda p: p.error_code,
            ),
        },
        lambda v: {TOP: GROUP_AUTHORIZATION_FAILED, **expected_partitions(GROUP_AUTHORIZATION_FAILED)},
    ),
    60: (
        lambda v: describe_cluster.DescribeClusterRequest(),
        lambda r, v: {TOP: r.error_code},
        lambda v: {TOP: CLUSTER_AUTHORIZATION_FAILED},
    ),
}


def sample(api_key: int, version: int) -> Any:
    return wire(api_key, version, SAMPLES[api_key][0](version))


# ------------------------------------------------------------------------------------------ coverage


def test_every_handled_api_has_a_documented_decision() -> None:
    assert set(AUTHZ_TABLE) == set(apis.HANDLED)
    for key, line in AUTHZ_TABLE.items():
        assert line.startswith(apis.HANDLED[key].name + ":"), line


def test_every_handled_api_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(apis.HANDLED)


@pytest.mark.parametrize(("api_key", "version"), ALL_VERSIONS)
def test_required_checks_runs_on_a_default_request_of_every_advertised_version(
    api_key: int, version: int
) -> None:
    request = codec.request_class(api_key)()
    checks = required_checks(api_key, version, request, known_ids)
    assert all(isinstance(c, Check) and c.action in ACTIONS and c.kind in KINDS for c in checks)
    # The same on the wire form of that default request.
    assert required_checks(api_key, version, wire(api_key, version, request), known_ids) == checks


@pytest.mark.parametrize(("api_key", "version"), ALL_VERSIONS)
def test_required_checks_on_populated_requests_name_valid_resources(api_key: int, version: int) -> None:
    checks = required_checks(api_key, version, sample(api_key, version), known_ids)
    assert len(checks) == len(set(checks))
    for check in checks:
        assert check.action in ACTIONS and check.kind in KINDS
        assert check.name == CLUSTER_NAME if check.kind == "cluster" else check.name != CLUSTER_NAME
    no_checks = {apis.API_VERSIONS, apis.SASL_HANDSHAKE, apis.SASL_AUTHENTICATE}
    assert bool(checks) == (api_key not in no_checks)


def test_unhandled_api_or_version_has_no_mapping() -> None:
    with pytest.raises(UnhandledApi, match="api key 4"):
        required_checks(4, 0, None, known_ids)  # LeaderAndIsr: broker-internal, never advertised
    with pytest.raises(UnhandledApi, match="AddPartitionsToTxn v4"):
        required_checks(24, 4, codec.request_class(24)(), known_ids)
    with pytest.raises(UnhandledApi, match="Produce v12"):
        error_response(0, 12, codec.request_class(0)())


# ------------------------------------------------------------------------------------------ the mapping


def checks_of(api_key: int, version: int, request: Any) -> list[tuple[str, str, str]]:
    wired = wire(api_key, version, request)
    return [(c.action, c.kind, c.name) for c in required_checks(api_key, version, wired, known_ids)]


def test_produce_checks_topics_and_the_transactional_id() -> None:
    assert checks_of(0, 9, produce_build(9)) == [
        ("produce", "topic", "orders"),
        ("produce", "topic", "payments"),
        ("produce", "transactional_id", "tx"),
    ]
    assert checks_of(0, 2, produce_build(2)) == [
        ("produce", "topic", "orders"),
        ("produce", "topic", "payments"),
    ]
    idempotent = produce.ProduceRequest(transactional_id=None, topic_data=produce_build(9).topic_data[:1])
    assert checks_of(0, 11, idempotent) == [("produce", "topic", "orders")]


def test_an_empty_transactional_id_is_still_checked() -> None:
    request = produce.ProduceRequest(
        transactional_id="", topic_data=[produce.ProduceRequestTopicProduceData(name="t")]
    )
    assert checks_of(0, 3, request) == [("produce", "topic", "t"), ("produce", "transactional_id", "")]
    init = init_producer_id.InitProducerIdRequest(transactional_id="")
    assert checks_of(22, 0, init) == [("produce", "transactional_id", "")]


def test_produce_repeating_a_topic_is_checked_once() -> None:
    twice = produce.ProduceRequest(topic_data=[produce.ProduceRequestTopicProduceData(name="orders")] * 2)
    assert checks_of(0, 7, twice) == [("produce", "topic", "orders")]


def test_fetch_by_name_and_by_id_with_unknown_ids_denied_by_name() -> None:
    assert checks_of(1, 12, fetch_build(12)) == [
        ("consume", "topic", "orders"),
        ("consume", "topic", "payments"),
    ]
    request = fetch_build(13)
    request.topics.append(
        fetch.FetchRequestFetchTopic(
            topic_id=STRANGER_ID, partitions=[fetch.FetchRequestFetchPartition(partition=0)]
        )
    )
    checks = checks_of(1, 13, request)
    assert checks[:2] == [("consume", "topic", "orders"), ("consume", "topic", "payments")]
    assert checks[2] == ("consume", "topic", f"<unknown topic id {STRANGER_ID}>")
    assert is_unknown_topic_id_name(checks[2][2]) and not is_unknown_topic_id_name("orders")


def test_fetch_forgotten_topics_need_no_check() -> None:
    request = fetch.FetchRequest(
        session_id=5,
        session_epoch=3,
        topics=[],
        forgotten_topics_data=[fetch.FetchRequestForgottenTopic(topic="secret", partitions=[0])],
    )
    assert checks_of(1, 12, request) == []


@pytest.mark.parametrize("version", [11, 15])
def test_follower_fetch_also_needs_an_admin_grant_on_the_cluster(version: int) -> None:
    request = fetch_build(version)
    if version < 15:
        request.replica_id = 2
    else:
        request.replica_state = fetch.FetchRequestReplicaState(replica_id=2, replica_epoch=1)
    assert checks_of(1, version, request)[-1] == ("alter", "cluster", CLUSTER_NAME)


def test_list_offsets_and_offset_for_leader_epoch_describe_topics() -> None:
    expected = [("describe", "topic", "orders"), ("describe", "topic", "payments")]
    assert checks_of(2, 8, SAMPLES[2][0](8)) == expected
    assert checks_of(23, 4, SAMPLES[23][0](4)) == expected


def test_metadata_all_topics_needs_no_per_topic_check() -> None:
    assert checks_of(3, 0, metadata.MetadataRequest(topics=[])) == []  # v0: empty list means all topics
    assert checks_of(3, 12, metadata.MetadataRequest(topics=None, allow_auto_topic_creation=True)) == []
    assert checks_of(3, 1, metadata.MetadataRequest(topics=[])) == []  # v1+: empty list means none


def test_metadata_describe_and_create_when_auto_creation_is_allowed() -> None:
    request = metadata.MetadataRequest(
        topics=[metadata.MetadataRequestTopic(name="orders")], allow_auto_topic_creation=True
    )
    assert checks_of(3, 9, request) == [("describe", "topic", "orders"), ("create", "topic", "orders")]
    request.allow_auto_topic_creation = False
    assert checks_of(3, 9, request) == [("describe", "topic", "orders")]
    # v0-3 carry no flag: the broker may always auto-create, whatever the decoded object says.
    old = metadata.MetadataRequest(
        topics=[metadata.MetadataRequestTopic(name="orders")], allow_auto_topic_creation=False
    )
    assert [(c.action, c.name) for c in required_checks(3, 3, old, known_ids)] == [
        ("describe", "orders"),
        ("create", "orders"),
    ]


def test_metadata_by_topic_id_resolves_and_is_never_auto_created() -> None:
    request = metadata.MetadataRequest(
        topics=[
            metadata.MetadataRequestTopic(name=None, topic_id=ORDERS_ID),
            metadata.MetadataRequestTopic(name=None, topic_id=STRANGER_ID),
        ],
        allow_auto_topic_creation=True,
    )
    assert checks_of(3, 12, request) == [
        ("describe", "topic", "orders"),
        ("describe", "topic", unknown_topic_id_name(STRANGER_ID)),
    ]


def test_group_apis() -> None:
    consume_g1 = [("consume", "group", "g1")]
    assert checks_of(8, 9, SAMPLES[8][0](9)) == [
        *consume_g1,
        ("consume", "topic", "orders"),
        ("consume", "topic", "payments"),
    ]
    for api_key, version in [(11, 9), (12, 4), (13, 5), (13, 0), (14, 5)]:
        assert checks_of(api_key, version, SAMPLES[api_key][0](version)) == consume_g1, api_key
    assert checks_of(15, 5, SAMPLES[15][0](5)) == [("describe", "group", "g1"), ("describe", "group", "g2")]
    assert checks_of(16, 5, SAMPLES[16][0](5)) == [("describe", "cluster", CLUSTER_NAME)]
    assert checks_of(42, 2, SAMPLES[42][0](2)) == [("delete", "group", "g1"), ("delete", "group", "g2")]
    assert checks_of(47, 0, SAMPLES[47][0](0)) == [
        ("delete", "group", "g1"),
        ("consume", "topic", "orders"),
        ("consume", "topic", "payments"),
    ]


def test_offset_fetch_old_and_batched_forms() -> None:
    topics = [("describe", "topic", "orders"), ("describe", "topic", "payments")]
    assert checks_of(9, 7, offset_fetch_build(7)) == [("describe", "group", "g1"), *topics]
    all_topics = offset_fetch.OffsetFetchRequest(group_id="g1", topics=None)
    assert checks_of(9, 7, all_topics) == [("describe", "group", "g1")]
    assert checks_of(9, 9, offset_fetch_build(9)) == [
        ("describe", "group", "g1"),
        *topics,
        ("describe", "group", "g2"),
    ]


def test_find_coordinator_key_types() -> None:
    assert checks_of(10, 0, find_coordinator_build(0)) == [("describe", "group", "g1")]
    assert checks_of(10, 3, find_coordinator_build(3)) == [("produce", "transactional_id", "tx")]
    assert checks_of(10, 6, find_coordinator_build(6)) == [
        ("describe", "group", "g1"),
        ("describe", "group", "g2"),
    ]
    txns = find_coordinator.FindCoordinatorRequest(key_type=1, coordinator_keys=["tx1", "tx2"])
    assert checks_of(10, 4, txns) == [
        ("produce", "transactional_id", "tx1"),
        ("produce", "transactional_id", "tx2"),
    ]
    share = find_coordinator.FindCoordinatorRequest(key_type=2, coordinator_keys=["g:t:0"])
    assert checks_of(10, 6, share) == [("alter", "cluster", CLUSTER_NAME)]


def test_topic_admin_apis() -> None:
    both = ["orders", "payments"]
    assert checks_of(19, 7, SAMPLES[19][0](7)) == [("create", "topic", n) for n in both]
    assert checks_of(20, 5, delete_topics_build(5)) == [("delete", "topic", n) for n in both]
    assert checks_of(20, 6, delete_topics_build(6)) == [
        ("delete", "topic", n) for n in both
    ]  # by id: resolved
    by_unknown_id = delete_topics.DeleteTopicsRequest(
        topics=[delete_topics.DeleteTopicsRequestDeleteTopicState(name=None, topic_id=STRANGER_ID)]
    )
    assert checks_of(20, 6, by_unknown_id) == [("delete", "topic", unknown_topic_id_name(STRANGER_ID))]
    assert checks_of(21, 2, SAMPLES[21][0](2)) == [("delete", "topic", n) for n in both]
    assert checks_of(37, 3, SAMPLES[37][0](3)) == [("alter", "topic", n) for n in both]


def test_transactional_apis() -> None:
    txn = ("produce", "transactional_id", "tx")
    assert checks_of(22, 5, SAMPLES[22][0](5)) == [txn]
    assert checks_of(22, 5, init_producer_id.InitProducerIdRequest(transactional_id=None)) == []
    assert checks_of(24, 3, SAMPLES[24][0](3)) == [
        txn,
        ("produce", "topic", "orders"),
        ("produce", "topic", "payments"),
    ]
    assert checks_of(25, 4, SAMPLES[25][0](4)) == [txn, ("consume", "group", "g1")]
    assert checks_of(26, 5, SAMPLES[26][0](5)) == [txn]
    assert checks_of(28, 4, SAMPLES[28][0](4)) == [
        txn,
        ("consume", "group", "g1"),
        ("consume", "topic", "orders"),
        ("consume", "topic", "payments"),
    ]


def test_config_apis_by_resource_type() -> None:
    expected = [("topic", "orders"), ("cluster", CLUSTER_NAME), ("group", "g1")]
    assert checks_of(32, 4, SAMPLES[32][0](4)) == [("describe_configs", k, n) for k, n in expected]
    assert checks_of(33, 2, SAMPLES[33][0](2)) == [("alter_configs", k, n) for k, n in expected]
    assert checks_of(44, 1, SAMPLES[44][0](1)) == [("alter_configs", k, n) for k, n in expected]
    logger = describe_configs.DescribeConfigsRequest(
        resources=[
            describe_configs.DescribeConfigsRequestDescribeConfigsResource(resource_type=8, resource_name="1")
        ]
    )
    assert checks_of(32, 2, logger) == [("describe_configs", "cluster", CLUSTER_NAME)]


def test_cluster_and_pre_authentication_apis() -> None:
    assert checks_of(60, 1, describe_cluster.DescribeClusterRequest()) == [
        ("describe", "cluster", CLUSTER_NAME)
    ]
    assert checks_of(17, 1, SAMPLES[17][0](1)) == []
    assert checks_of(18, 4, SAMPLES[18][0](4)) == []
    assert checks_of(36, 2, SAMPLES[36][0](2)) == []


def test_default_error_codes_by_kind() -> None:
    assert authorization_error_code(Check("consume", "topic", "t")) == TOPIC_AUTHORIZATION_FAILED
    assert (
        authorization_error_code(Check("consume", "topic", unknown_topic_id_name(STRANGER_ID)))
        == UNKNOWN_TOPIC_ID
    )
    assert authorization_error_code(Check("consume", "group", "g")) == GROUP_AUTHORIZATION_FAILED
    assert (
        authorization_error_code(Check("produce", "transactional_id", "t"))
        == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
    assert (
        authorization_error_code(Check("describe", "cluster", CLUSTER_NAME)) == CLUSTER_AUTHORIZATION_FAILED
    )


# ------------------------------------------------------------------------------------------ error responses


@pytest.mark.parametrize(("api_key", "version"), ALL_VERSIONS)
def test_error_response_with_kind_codes_lands_on_every_requested_resource(api_key: int, version: int) -> None:
    _, codes_of, expected = SAMPLES[api_key]
    response = error_response(api_key, version, sample(api_key, version), topic_name=known_ids)
    assert type(response) is codec.response_class(api_key)
    assert codes_of(through_codec(api_key, version, response), version) == expected(version)
    if hasattr(response, "throttle_time_ms"):
        assert response.throttle_time_ms == 0


@pytest.mark.parametrize(("api_key", "version"), ALL_VERSIONS)
def test_error_response_with_one_code_uses_it_everywhere(api_key: int, version: int) -> None:
    _, codes_of, expected = SAMPLES[api_key]
    decoded = through_codec(
        api_key,
        version,
        error_response(api_key, version, sample(api_key, version), SASL_AUTHENTICATION_FAILED),
    )
    want = {k: SASL_AUTHENTICATION_FAILED for k in expected(version)}
    if api_key == apis.FETCH and version >= 7:
        want[TOP] = 0  # errors stay on partitions, where clients report them (see _fetch_error)
    if ("groups",) in want:
        want[("groups",)] = 0  # ListGroups: a count of listed groups, not a code
    assert codes_of(decoded, version) == want


def test_error_response_mirrors_names_indexes_and_ids() -> None:
    response = error_response(1, 13, sample(1, 13), topic_name=known_ids)
    assert [(t.topic_id, [p.partition_index for p in t.partitions]) for t in response.responses] == [
        (ORDERS_ID, [0, 1]),
        (PAYMENTS_ID, [2]),
    ]
    partition = response.responses[0].partitions[0]
    assert (partition.high_watermark, partition.records, response.session_id) == (-1, b"", 0)
    produced = through_codec(0, 8, error_response(0, 8, sample(0, 8)))
    assert produced.responses[0].partition_responses[0].error_message == "not authorized by streamgate policy"
    assert produced.responses[0].partition_responses[0].base_offset == -1


def test_fetch_error_without_a_topic_name_lookup_reports_unknown_ids() -> None:
    response = error_response(1, 13, sample(1, 13))
    assert {p.error_code for t in response.responses for p in t.partitions} == {UNKNOWN_TOPIC_ID}


def denying(*denied: Check) -> Callable[[Check], int]:
    """An error_code_for that reports only the checks the policy refused (0 for those that passed)."""
    return lambda check: authorization_error_code(check) if check in denied else 0


def test_only_refused_checks_report_their_own_code() -> None:
    # Transactional produce where only "payments" is refused: orders was fine but is not written either.
    response = error_response(0, 9, sample(0, 9), denying(Check("produce", "topic", "payments")))
    codes = {t.name: {p.error_code for p in t.partition_responses} for t in response.responses}
    assert codes == {"orders": {TOPIC_AUTHORIZATION_FAILED}, "payments": {TOPIC_AUTHORIZATION_FAILED}}
    # OffsetCommit refused on the group: the group code governs every partition.
    commit = error_response(8, 9, sample(8, 9), denying(Check("consume", "group", "g1")))
    assert {p.error_code for t in commit.topics for p in t.partitions} == {GROUP_AUTHORIZATION_FAILED}


def test_offset_fetch_topic_denial_keeps_the_group_level_clear() -> None:
    response = through_codec(
        9, 7, error_response(9, 7, sample(9, 7), denying(Check("describe", "topic", "orders")))
    )
    assert response.error_code == 0  # a group-level topic error would be an "unexpected error" to consumers
    assert {p.error_code for t in response.topics for p in t.partitions} == {TOPIC_AUTHORIZATION_FAILED}
    all_topics = wire(9, 7, offset_fetch.OffsetFetchRequest(group_id="g1", topics=None))
    assert error_response(9, 7, all_topics).error_code == GROUP_AUTHORIZATION_FAILED


def test_add_partitions_to_txn_marks_fine_partitions_not_attempted() -> None:
    response = through_codec(
        24, 3, error_response(24, 3, sample(24, 3), denying(Check("produce", "topic", "orders")))
    )
    codes = {
        t.name: {p.partition_error_code for p in t.results_by_partition}
        for t in response.results_by_topic_v3_and_below
    }
    assert codes == {"orders": {TOPIC_AUTHORIZATION_FAILED}, "payments": {OPERATION_NOT_ATTEMPTED}}


def test_idempotent_init_producer_id_is_refused_as_a_cluster_denial() -> None:
    request = wire(22, 4, init_producer_id.InitProducerIdRequest(transactional_id=None))
    assert error_response(22, 4, request).error_code == CLUSTER_AUTHORIZATION_FAILED


def test_metadata_error_by_topic_id_has_no_name_to_reveal() -> None:
    request = wire(
        3, 12, metadata.MetadataRequest(topics=[metadata.MetadataRequestTopic(name=None, topic_id=ORDERS_ID)])
    )
    response = through_codec(3, 12, error_response(3, 12, request, topic_name=known_ids))
    assert [(t.name, t.topic_id, t.error_code, t.partitions) for t in response.topics] == [
        (None, ORDERS_ID, TOPIC_AUTHORIZATION_FAILED, [])
    ]
    assert response.brokers == []


def test_delete_topics_by_unknown_id() -> None:
    request = wire(
        20,
        6,
        delete_topics.DeleteTopicsRequest(
            topics=[delete_topics.DeleteTopicsRequestDeleteTopicState(name=None, topic_id=STRANGER_ID)]
        ),
    )
    response = through_codec(20, 6, error_response(20, 6, request, topic_name=known_ids))
    assert [(t.name, t.topic_id, t.error_code) for t in response.responses] == [
        (None, STRANGER_ID, UNKNOWN_TOPIC_ID)
    ]


def test_offset_delete_topic_denial_keeps_the_group_level_clear() -> None:
    refused = denying(Check("consume", "topic", "payments"))
    response = through_codec(47, 0, error_response(47, 0, sample(47, 0), refused))
    assert response.error_code == 0
    assert {p.error_code for t in response.topics for p in t.partitions} == {TOPIC_AUTHORIZATION_FAILED}
    group_refused = error_response(47, 0, sample(47, 0), denying(Check("delete", "group", "g1")))
    assert group_refused.error_code == GROUP_AUTHORIZATION_FAILED


def test_fetch_error_top_level_code_only_for_a_follower_fetch() -> None:
    consumer = through_codec(1, 12, error_response(1, 12, sample(1, 12)))
    assert consumer.error_code == 0
    follower = fetch_build(12)
    follower.replica_id = 3
    replica = through_codec(1, 12, error_response(1, 12, wire(1, 12, follower)))
    assert replica.error_code == CLUSTER_AUTHORIZATION_FAILED
    assert {p.error_code for t in replica.responses for p in t.partitions} == {CLUSTER_AUTHORIZATION_FAILED}
