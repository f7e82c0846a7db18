"""Tests for ``gateway.protocols.kafka.partial``: transcripts of partially denied Produce, Fetch and Metadata.

Each transcript reads like the conversation: the client's request (as decoded from the wire), what the
gateway forwards, what the broker answers, and what the client finally receives -- every message passing
through the real codec at every version the gateway advertises.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateway.protocols.kafka import apis, codec
from gateway.protocols.kafka.authz import TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_ID
from gateway.protocols.kafka.generated import fetch, list_groups, metadata, offset_fetch, produce
from gateway.protocols.kafka.partial import (
    DeniedFetchTopic,
    disable_auto_create,
    fetch_denied_response,
    filter_list_groups_response,
    filter_metadata_response,
    filter_offset_fetch_response,
    leave_fetch_session,
    merge_fetch_response,
    merge_produce_response,
    produce_denied_response,
    requested_metadata_topics,
    split_fetch,
    split_produce,
)
from gateway.protocols.kafka.primitives import ZERO_UUID, CodecError

ORDERS_ID = uuid.UUID("11111111-1111-1111-1111-111111111111")
SECRETS_ID = uuid.UUID("22222222-2222-2222-2222-222222222222")
AUDIT_ID = uuid.UUID("33333333-3333-3333-3333-333333333333")
STRANGER_ID = uuid.UUID("99999999-9999-9999-9999-999999999999")
TOPIC_IDS = {ORDERS_ID: "orders", SECRETS_ID: "secrets", AUDIT_ID: "audit"}
IDS = {name: topic_id for topic_id, name in TOPIC_IDS.items()}
PARTITIONS = {"orders": [0, 1], "secrets": [0, 3], "audit": [2]}
DENIED_TOPICS = {"secrets"}
DENIED_MESSAGE = "not authorized by streamgate policy"


def versions(api_key: int) -> list[int]:
    spec = apis.HANDLED[api_key]
    return list(range(spec.min_version, spec.max_version + 1))


def allowed(name: str) -> bool:
    return name not in DENIED_TOPICS


def known_ids(topic_id: uuid.UUID) -> str | None:
    return TOPIC_IDS.get(topic_id)


def client_sends(api_key: int, version: int, request: Any) -> Any:
    return codec.decode_request(api_key, version, codec.encode_request(api_key, version, request))[0]


def forwarded(api_key: int, version: int, request: Any) -> Any:
    """What the broker receives: the gateway's request encoded, decoded on the broker's side."""
    return client_sends(api_key, version, request)


def client_receives(api_key: int, version: int, response: Any) -> Any:
    data = codec.encode_response(api_key, version, response)
    return codec.decode_response(api_key, version, data)[0]


# ------------------------------------------------------------------------------------------ produce

RECORDS = b"\x00" * 61  # opaque to the splitter: it never looks inside the batch


def produce_request(version: int) -> Any:
    return produce.ProduceRequest(
        acks=-1,
        timeout_ms=1500,
        topic_data=[
            produce.ProduceRequestTopicProduceData(
                name=name,
                partition_data=[
                    produce.ProduceRequestPartitionProduceData(index=p, records=RECORDS) for p in parts
                ],
            )
            for name, parts in PARTITIONS.items()
        ],
    )


def broker_produce_response(request: Any) -> Any:
    return produce.ProduceResponse(
        throttle_time_ms=7,
        responses=[
            produce.ProduceResponseTopicProduceResponse(
                name=t.name,
                partition_responses=[
                    produce.ProduceResponsePartitionProduceResponse(index=p.index, base_offset=100 + p.index)
                    for p in t.partition_data
                ],
            )
            for t in request.topic_data
        ],
    )


def produce_outcome(response: Any) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (t.name, p.index): (p.error_code, p.base_offset)
        for t in response.responses
        for p in t.partition_responses
    }


@pytest.mark.parametrize("version", versions(apis.PRODUCE))
def test_produce_to_three_topics_with_one_denied(version: int) -> None:
    request = client_sends(0, version, produce_request(version))

    to_broker, denied = split_produce(request, allowed)
    assert to_broker is not None
    at_broker = forwarded(0, version, to_broker)
    assert [t.name for t in at_broker.topic_data] == ["orders", "audit"]
    assert [p.records for t in at_broker.topic_data for p in t.partition_data] == [RECORDS] * 3
    assert [t.name for t in denied] == ["secrets"]

    merged = merge_produce_response(broker_produce_response(at_broker), denied, version)
    answer = client_receives(0, version, merged)
    assert produce_outcome(answer) == {
        ("orders", 0): (0, 100),
        ("orders", 1): (0, 101),
        ("audit", 2): (0, 102),
        ("secrets", 0): (TOPIC_AUTHORIZATION_FAILED, -1),
        ("secrets", 3): (TOPIC_AUTHORIZATION_FAILED, -1),
    }
    secrets = next(t for t in answer.responses if t.name == "secrets")
    expected_message = DENIED_MESSAGE if version >= 8 else None
    assert {p.error_message for p in secrets.partition_responses} == {expected_message}
    if version >= 1:
        assert answer.throttle_time_ms == 7  # the broker's throttle is kept


def test_produce_with_nothing_denied_forwards_the_request_itself() -> None:
    request = client_sends(0, 9, produce_request(9))
    to_broker, denied = split_produce(request, lambda name: True)
    assert to_broker is request and denied == []
    response = broker_produce_response(request)
    assert merge_produce_response(response, denied, 9) is response


@pytest.mark.parametrize("version", versions(apis.PRODUCE))
def test_produce_with_every_topic_denied_is_answered_by_the_gateway(version: int) -> None:
    request = client_sends(0, version, produce_request(version))
    to_broker, denied = split_produce(request, lambda name: False)
    assert to_broker is None and len(denied) == 3
    answer = client_receives(0, version, produce_denied_response(request, version))
    assert produce_outcome(answer) == {
        (name, p): (TOPIC_AUTHORIZATION_FAILED, -1) for name, parts in PARTITIONS.items() for p in parts
    }


# ------------------------------------------------------------------------------------------ fetch


def fetch_request(version: int, *, extra_ids: tuple[uuid.UUID, ...] = ()) -> Any:
    by_id = version >= 13
    topics = [
        fetch.FetchRequestFetchTopic(
            topic="" if by_id else name,
            topic_id=IDS[name] if by_id else ZERO_UUID,
            partitions=[fetch.FetchRequestFetchPartition(partition=p, fetch_offset=10) for p in parts],
        )
        for name, parts in PARTITIONS.items()
    ]
    topics += [
        fetch.FetchRequestFetchTopic(topic_id=i, partitions=[fetch.FetchRequestFetchPartition(partition=5)])
        for i in extra_ids
    ]
    forgotten = (
        [
            fetch.FetchRequestForgottenTopic(
                topic="" if by_id else "old", topic_id=AUDIT_ID if by_id else ZERO_UUID, partitions=[9]
            )
        ]
        if version >= 7
        else []
    )
    return fetch.FetchRequest(
        max_wait_ms=500,
        min_bytes=1,
        session_id=77 if version >= 7 else 0,
        session_epoch=4 if version >= 7 else -1,
        topics=topics,
        forgotten_topics_data=forgotten,
    )


def broker_fetch_response(request: Any) -> Any:
    return fetch.FetchResponse(
        session_id=request.session_id,
        responses=[
            fetch.FetchResponseFetchableTopicResponse(
                topic=t.topic,
                topic_id=t.topic_id,
                partitions=[
                    fetch.FetchResponsePartitionData(
                        partition_index=p.partition, high_watermark=50, records=b"batch"
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def fetch_outcome(response: Any, version: int) -> dict[tuple[str, int], tuple[int, int, bytes | None]]:
    def name(topic: Any) -> str:
        return topic.topic if version < 13 else TOPIC_IDS.get(topic.topic_id, str(topic.topic_id))

    return {
        (name(t), p.partition_index): (p.error_code, p.high_watermark, p.records)
        for t in response.responses
        for p in t.partitions
    }


@pytest.mark.parametrize("version", versions(apis.FETCH))
def test_fetch_strips_the_denied_topic_and_answers_it_with_errors(version: int) -> None:
    request = client_sends(1, version, fetch_request(version))

    to_broker, denied = split_fetch(request, allowed, known_ids, version)
    assert to_broker is not None
    at_broker = forwarded(1, version, to_broker)
    names = [t.topic if version < 13 else TOPIC_IDS[t.topic_id] for t in at_broker.topics]
    assert names == ["orders", "audit"]
    if version >= 7:  # a stripped request leaves the fetch session: full, sessionless, nothing to forget
        assert (at_broker.session_id, at_broker.session_epoch, at_broker.forgotten_topics_data) == (0, -1, [])
    assert [(d.name, d.error_code) for d in denied] == [("secrets", TOPIC_AUTHORIZATION_FAILED)]

    merged = merge_fetch_response(broker_fetch_response(at_broker), denied, version)
    answer = client_receives(1, version, merged)
    assert fetch_outcome(answer, version) == {
        ("orders", 0): (0, 50, b"batch"),
        ("orders", 1): (0, 50, b"batch"),
        ("audit", 2): (0, 50, b"batch"),
        ("secrets", 0): (TOPIC_AUTHORIZATION_FAILED, -1, b""),
        ("secrets", 3): (TOPIC_AUTHORIZATION_FAILED, -1, b""),
    }
    if version >= 7:
        assert answer.error_code == 0


@pytest.mark.parametrize("version", [v for v in versions(apis.FETCH) if v >= 13])
def test_fetch_by_topic_id_with_an_unknown_id(version: int) -> None:
    request = client_sends(1, version, fetch_request(version, extra_ids=(STRANGER_ID,)))
    to_broker, denied = split_fetch(request, allowed, known_ids, version)
    assert to_broker is not None
    assert [TOPIC_IDS[t.topic_id] for t in forwarded(1, version, to_broker).topics] == ["orders", "audit"]
    assert [(d.topic.topic_id, d.name, d.error_code) for d in denied] == [
        (SECRETS_ID, "secrets", TOPIC_AUTHORIZATION_FAILED),
        (STRANGER_ID, None, UNKNOWN_TOPIC_ID),
    ]
    answer = client_receives(
        1, version, merge_fetch_response(broker_fetch_response(to_broker), denied, version)
    )
    stranger = next(t for t in answer.responses if t.topic_id == STRANGER_ID)
    assert [(p.partition_index, p.error_code, p.high_watermark) for p in stranger.partitions] == [
        (5, UNKNOWN_TOPIC_ID, -1)
    ]


def test_fetch_never_forwards_a_topic_whose_id_cannot_be_named() -> None:
    # Even a policy that allows everything cannot decide on a topic without a name.
    request = client_sends(1, 13, fetch_request(13, extra_ids=(STRANGER_ID,)))
    to_broker, denied = split_fetch(request, lambda name: True, known_ids, 13)
    assert to_broker is not None
    assert STRANGER_ID not in {t.topic_id for t in to_broker.topics}
    assert [d.error_code for d in denied] == [UNKNOWN_TOPIC_ID]


def test_fetch_with_nothing_denied_keeps_the_session() -> None:
    request = client_sends(1, 12, fetch_request(12))
    to_broker, denied = split_fetch(request, lambda name: True, known_ids, 12)
    assert to_broker is request and denied == []
    assert (to_broker.session_id, to_broker.session_epoch) == (77, 4)


@pytest.mark.parametrize("version", versions(apis.FETCH))
def test_leaving_the_fetch_session_after_a_policy_change(version: int) -> None:
    request = client_sends(1, version, fetch_request(version))
    at_broker = forwarded(1, version, leave_fetch_session(request, version))
    if version >= 7:
        assert (at_broker.session_id, at_broker.session_epoch, at_broker.forgotten_topics_data) == (0, -1, [])
    else:
        assert at_broker == request
    assert at_broker.topics == request.topics
    assert (request.session_id, request.session_epoch) == ((77, 4) if version >= 7 else (0, -1))


@pytest.mark.parametrize("version", versions(apis.FETCH))
def test_fetch_with_every_topic_denied_is_answered_by_the_gateway(version: int) -> None:
    request = client_sends(
        1, version, fetch_request(version, extra_ids=(STRANGER_ID,) if version >= 13 else ())
    )
    to_broker, denied = split_fetch(request, lambda name: False, known_ids, version)
    assert to_broker is None
    answer = client_receives(1, version, fetch_denied_response(request, denied, version))
    outcome = fetch_outcome(answer, version)
    expected = {
        (name, p): (TOPIC_AUTHORIZATION_FAILED, -1, b"") for name, parts in PARTITIONS.items() for p in parts
    }
    if version >= 13:
        expected[(str(STRANGER_ID), 5)] = (UNKNOWN_TOPIC_ID, -1, b"")
    assert outcome == expected
    assert (answer.error_code, answer.session_id) == (0, 0)


def test_denied_fetch_topics_are_plain_values() -> None:
    topic = fetch.FetchRequestFetchTopic(topic="secrets")
    assert DeniedFetchTopic(topic, 29, "secrets") == DeniedFetchTopic(topic, 29, "secrets")


# ------------------------------------------------------------------------------------------ metadata


def broker_metadata_response(version: int, names: list[str]) -> Any:
    return metadata.MetadataResponse(
        brokers=[metadata.MetadataResponseBroker(node_id=1, host="b1", port=9092)],
        cluster_id="c" if version >= 2 else None,
        controller_id=1,
        topics=[
            metadata.MetadataResponseTopic(
                name=n,
                topic_id=IDS[n] if version >= 10 else ZERO_UUID,
                partitions=[
                    metadata.MetadataResponsePartition(
                        partition_index=p, leader_id=1, replica_nodes=[1], isr_nodes=[1]
                    )
                    for p in PARTITIONS[n]
                ],
            )
            for n in names
        ],
    )


def metadata_outcome(response: Any) -> dict[str, tuple[int, list[int], uuid.UUID]]:
    return {
        t.name: (t.error_code, [p.partition_index for p in t.partitions], t.topic_id) for t in response.topics
    }


@pytest.mark.parametrize("version", versions(apis.METADATA))
def test_metadata_for_all_topics_omits_what_the_principal_may_not_describe(version: int) -> None:
    request = client_sends(3, version, metadata.MetadataRequest(topics=[] if version == 0 else None))
    requested = requested_metadata_topics(request, version)
    assert requested is None
    broker = client_receives(3, version, broker_metadata_response(version, list(PARTITIONS)))
    answer = client_receives(3, version, filter_metadata_response(broker, allowed, requested))
    assert sorted(metadata_outcome(answer)) == ["audit", "orders"]
    assert [b.node_id for b in answer.brokers] == [1]


@pytest.mark.parametrize("version", versions(apis.METADATA))
def test_metadata_for_an_explicitly_requested_denied_topic_says_so(version: int) -> None:
    request = client_sends(
        3,
        version,
        metadata.MetadataRequest(
            topics=[
                metadata.MetadataRequestTopic(name="orders"),
                metadata.MetadataRequestTopic(name="secrets"),
            ]
        ),
    )
    requested = requested_metadata_topics(request, version)
    assert requested == {"orders", "secrets"}
    broker = client_receives(3, version, broker_metadata_response(version, ["orders", "secrets"]))
    answer = client_receives(3, version, filter_metadata_response(broker, allowed, requested))
    orders_id = ORDERS_ID if version >= 10 else ZERO_UUID
    assert metadata_outcome(answer) == {
        "orders": (0, [0, 1], orders_id),
        "secrets": (TOPIC_AUTHORIZATION_FAILED, [], ZERO_UUID),
    }


def test_metadata_topics_requested_by_id_are_not_echoed_when_denied() -> None:
    request = client_sends(
        3,
        12,
        metadata.MetadataRequest(
            topics=[
                metadata.MetadataRequestTopic(name=None, topic_id=SECRETS_ID),
                metadata.MetadataRequestTopic(name="orders"),
            ]
        ),
    )
    requested = requested_metadata_topics(request, 12)
    assert requested == {"orders"}
    broker = broker_metadata_response(12, ["secrets", "orders"])
    broker.topics.append(
        metadata.MetadataResponseTopic(error_code=UNKNOWN_TOPIC_ID, name=None, topic_id=STRANGER_ID)
    )
    answer = client_receives(3, 12, filter_metadata_response(broker, allowed, requested))
    assert [(t.name, t.error_code) for t in answer.topics] == [("orders", 0), (None, UNKNOWN_TOPIC_ID)]


def test_metadata_nameless_entries_with_partitions_are_dropped() -> None:
    broker = metadata.MetadataResponse(
        topics=[
            metadata.MetadataResponseTopic(
                name=None,
                topic_id=SECRETS_ID,
                partitions=[metadata.MetadataResponsePartition(partition_index=0)],
            )
        ]
    )
    assert filter_metadata_response(broker, lambda name: True).topics == []


@pytest.mark.parametrize("version", [v for v in versions(apis.METADATA) if v >= 4])
def test_disable_auto_create_reaches_the_broker(version: int) -> None:
    request = client_sends(
        3,
        version,
        metadata.MetadataRequest(
            topics=[metadata.MetadataRequestTopic(name="new")], allow_auto_topic_creation=True
        ),
    )
    assert forwarded(3, version, disable_auto_create(request)).allow_auto_topic_creation is False
    assert request.allow_auto_topic_creation is True  # the client's request is not changed in place


@pytest.mark.parametrize("version", [v for v in versions(apis.METADATA) if v < 4])
def test_disable_auto_create_cannot_be_expressed_before_v4(version: int) -> None:
    request = client_sends(
        3, version, metadata.MetadataRequest(topics=[metadata.MetadataRequestTopic(name="new")])
    )
    with pytest.raises(CodecError, match="allow_auto_topic_creation"):
        codec.encode_request(3, version, disable_auto_create(request))


# ------------------------------------------------------------------------------------------ groups, offsets


@pytest.mark.parametrize("version", versions(16))
def test_list_groups_shows_only_describable_groups(version: int) -> None:
    broker = list_groups.ListGroupsResponse(
        groups=[
            list_groups.ListGroupsResponseListedGroup(group_id=g, protocol_type="consumer")
            for g in ("analytics-1", "payments-app", "analytics-2")
        ]
    )
    answer = client_receives(
        16, version, filter_list_groups_response(broker, lambda g: g.startswith("analytics-"))
    )
    assert [g.group_id for g in answer.groups] == ["analytics-1", "analytics-2"]


@pytest.mark.parametrize("version", versions(9))
def test_offset_fetch_for_all_topics_hides_undescribable_topics(version: int) -> None:
    def topics(cls: type, partition_cls: type) -> list[Any]:
        return [
            cls(name=n, partitions=[partition_cls(partition_index=p, committed_offset=3) for p in parts])
            for n, parts in PARTITIONS.items()
        ]

    if version < 8:
        broker = offset_fetch.OffsetFetchResponse(
            topics=topics(offset_fetch.OffsetFetchResponseTopic, offset_fetch.OffsetFetchResponsePartition)
        )
    else:
        broker = offset_fetch.OffsetFetchResponse(
            groups=[
                offset_fetch.OffsetFetchResponseGroup(
                    group_id="g1",
                    topics=topics(
                        offset_fetch.OffsetFetchResponseTopics, offset_fetch.OffsetFetchResponsePartitions
                    ),
                )
            ]
        )
    answer = client_receives(9, version, filter_offset_fetch_response(broker, allowed))
    listed = answer.topics if version < 8 else answer.groups[0].topics
    assert [t.name for t in listed] == ["orders", "audit"]
