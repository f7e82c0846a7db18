"""Partial denial for the hot APIs: forward what the principal may do, answer the rest with errors.

A Produce or Fetch naming several topics is not denied as a whole when only some topics are refused: the
allowed part is forwarded, the denied part is answered by the gateway, and the two are merged into the one
response the client expects. Metadata, ListGroups and OffsetFetch responses are filtered instead, so that a
principal never learns the names of topics or groups it may not describe. The rule this module keeps: every
partition the client asked about gets exactly one answer, and a denied topic never reaches the broker.

Conventions:
- ``split_*`` return the request object itself (not a copy) when nothing is denied, so the caller may forward
  the original bytes; ``None`` when nothing is left to forward.
- Denied entries answer with TOPIC_AUTHORIZATION_FAILED, or UNKNOWN_TOPIC_ID for a Fetch v13+ topic id the
  gateway cannot name (policy applies by name, so an unnamed topic is never forwarded).
- Fetch sessions (KIP-227): a stripped Fetch is forwarded outside any session (``leave_fetch_session``), and
  after a policy change each connection's next Fetch should be too -- see ``split_fetch``.
- Produce with ``acks=0`` gets no response at all. Kafka closes the connection when such a request fails, so
  the client notices; the caller should do the same rather than send a merged response.

Metadata (see ``filter_metadata_response``): a topic the principal may not describe is omitted from an
all-topics answer, as Kafka's authorizer does; a topic the client asked for by name comes back as an entry
with TOPIC_AUTHORIZATION_FAILED and no partitions (and no topic id), so the client gets an explicit error
instead of waiting for metadata that will never come. Auto-creation: when the principal may not create a
requested topic, forward ``disable_auto_create(request)``; Metadata v0-3 has no such flag (the broker may
always auto-create), and encoding such a request after ``disable_auto_create`` fails with a CodecError rather
than silently letting the broker create the topic -- the caller must deny those requests instead.

Sans-IO: pure functions on decoded generated messages; predicates come from the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.protocols.kafka.authz import (
    DENIED_MESSAGE,
    TOPIC_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_ID,
    fetch_topic_error_entry,
    metadata_requests_all_topics,
    produce_topic_error_entry,
)
from gateway.protocols.kafka.generated import fetch as _fetch
from gateway.protocols.kafka.generated import produce as _produce
from gateway.protocols.kafka.primitives import ZERO_UUID

_replace = msgspec.structs.replace

# Kafka's "no authorized operations requested" marker (topic_authorized_operations default).
_NO_AUTHORIZED_OPERATIONS = -(2**31)

# Fetch session constants (KIP-227): session id 0 with epoch -1 is a full fetch outside any session.
_NO_SESSION_ID = 0
_SESSIONLESS_EPOCH = -1
_FIRST_SESSION_VERSION = 7
_FIRST_TOPIC_ID_VERSION = 13


# ------------------------------------------------------------------------------------------ produce


def split_produce(request: Any, allowed_topic: Callable[[str], bool]) -> tuple[Any | None, list[Any]]:
    """Split a Produce request into (request with only the allowed topics or None, denied request topics)."""
    allowed: list[Any] = []
    denied: list[Any] = []
    for topic in request.topic_data:
        (allowed if allowed_topic(topic.name) else denied).append(topic)
    if not denied:
        return request, []
    if not allowed:
        return None, denied
    return _replace(request, topic_data=allowed), denied


INVALID_RECORD = 87


def merge_produce_response(response: Any, denied: list[Any], api_version: int,
                           content_blocks: dict[str, str] | None = None,
                           messages: dict[str, str] | None = None) -> Any:
    """The broker's response plus TOPIC_AUTHORIZATION_FAILED for every partition of the denied topics
    (INVALID_RECORD with the reason, from v8, for topics whose records a content rule refused)."""
    if not denied:
        return response
    return _replace(response, responses=[*response.responses,
                                         *_denied_produce_topics(denied, api_version, content_blocks, messages)])


def produce_denied_response(request: Any, api_version: int, content_blocks: dict[str, str] | None = None,
                            messages: dict[str, str] | None = None) -> Any:
    """The answer to a Produce request whose topics are all denied."""
    return _produce.ProduceResponse(
        throttle_time_ms=0,
        responses=_denied_produce_topics(request.topic_data, api_version, content_blocks, messages),
    )


def _denied_produce_topics(topics: list[Any], api_version: int, content_blocks: dict[str, str] | None = None,
                           messages: dict[str, str] | None = None) -> list[Any]:
    """Error entries: INVALID_RECORD (v8+) for content-rule blocks, else TOPIC_AUTHORIZATION_FAILED with
    `messages[topic]` (e.g. why an approval is pending) or the generic denial message."""
    blocks = content_blocks or {}
    return [
        produce_topic_error_entry(t, INVALID_RECORD, api_version, blocks[t.name])
        if t.name in blocks and api_version >= 8
        else produce_topic_error_entry(t, TOPIC_AUTHORIZATION_FAILED, api_version,
                                       (messages or {}).get(t.name, DENIED_MESSAGE))
        for t in topics
    ]


# ------------------------------------------------------------------------------------------ fetch


@dataclass(frozen=True, slots=True)
class DeniedFetchTopic:
    """A Fetch request topic the gateway answers itself, and with which error."""

    topic: Any  # the request's FetchRequestFetchTopic, mirrored into the response
    error_code: int  # TOPIC_AUTHORIZATION_FAILED, or UNKNOWN_TOPIC_ID for an id without a known name
    name: str | None  # the topic name the decision was made on; None for an unknown id


def split_fetch(
    request: Any,
    allowed_topic: Callable[[str], bool],
    topic_name: Callable[[uuid.UUID], str | None],
    api_version: int,
) -> tuple[Any | None, list[DeniedFetchTopic]]:
    """Split a Fetch request into (request with only allowed topics or None, denied topics).

    v0-12 name topics, v13+ use ids resolved with ``topic_name``. When anything is stripped, the forwarded
    request becomes a sessionless full fetch (session id 0, epoch -1, no forgotten topics): in an incremental
    fetch session the client believes the denied partitions are part of the session and would never resend
    them, so the broker's session would drift from the client's and the denials would be reported once only.
    The broker answers a sessionless fetch with session id 0, which makes the client fall back to full
    fetches -- each of which is split again, so every response carries the denials.
    """
    allowed: list[Any] = []
    denied: list[DeniedFetchTopic] = []
    by_id = api_version >= _FIRST_TOPIC_ID_VERSION
    for topic in request.topics:
        name = topic_name(topic.topic_id) if by_id else topic.topic
        if name is None:
            denied.append(DeniedFetchTopic(topic, UNKNOWN_TOPIC_ID, None))
        elif allowed_topic(name):
            allowed.append(topic)
        else:
            denied.append(DeniedFetchTopic(topic, TOPIC_AUTHORIZATION_FAILED, name))
    if not denied:
        return request, []
    if not allowed:
        return None, denied
    return leave_fetch_session(_replace(request, topics=allowed), api_version), denied


def leave_fetch_session(request: Any, api_version: int) -> Any:
    """The Fetch request as a sessionless full fetch (v7+; earlier versions have no sessions).

    Also what a caller should forward for each connection's next Fetch after a policy reload, a grant expiry
    or a revocation: partitions already held by the broker's fetch session are not listed in incremental
    requests, so only leaving the session makes the client list -- and the gateway decide -- them again.
    """
    if api_version < _FIRST_SESSION_VERSION:
        return request
    return _replace(
        request, session_id=_NO_SESSION_ID, session_epoch=_SESSIONLESS_EPOCH, forgotten_topics_data=[]
    )


def merge_fetch_response(response: Any, denied: list[DeniedFetchTopic], api_version: int) -> Any:
    """The broker's response plus an error entry for every partition of the denied topics.

    Denied partitions carry high watermark -1 and empty records; name or id are mirrored from the request.
    """
    if not denied:
        return response
    return _replace(response, responses=[*response.responses, *_denied_fetch_topics(denied)])


def fetch_denied_response(request: Any, denied: list[DeniedFetchTopic], api_version: int) -> Any:
    """The answer to a Fetch request whose topics are all denied (``denied`` from ``split_fetch``).

    Top-level error 0: the errors are per partition, where clients report them to the application. Session
    id 0 tells the client no fetch session exists, so its next fetch is a full one.
    """
    return _fetch.FetchResponse(
        throttle_time_ms=0, error_code=0, session_id=_NO_SESSION_ID, responses=_denied_fetch_topics(denied)
    )


def _denied_fetch_topics(denied: list[DeniedFetchTopic]) -> list[Any]:
    return [fetch_topic_error_entry(d.topic, d.error_code) for d in denied]


# ------------------------------------------------------------------------------------------ metadata


def requested_metadata_topics(request: Any, api_version: int) -> frozenset[str] | None:
    """Topic names a Metadata request asks for explicitly; None for an all-topics request.

    Topics asked for by id (v10+, name null) are not included: an unauthorized one is omitted from the
    answer, because echoing its name would reveal what the id stands for.
    """
    if metadata_requests_all_topics(request, api_version):
        return None
    return frozenset(t.name for t in request.topics if t.name is not None)


def filter_metadata_response(
    response: Any, visible_topic: Callable[[str], bool], requested: Collection[str] | None = None
) -> Any:
    """Omit topics the principal may not describe; answer explicitly requested ones with an error entry.

    ``requested`` is ``requested_metadata_topics(request, version)``: None (all topics) omits every invisible
    topic; a requested invisible topic becomes TOPIC_AUTHORIZATION_FAILED with no partitions, no topic id and
    no authorized operations. Entries without a name (an unknown id, v12+) are kept only if they carry no
    partitions.
    """
    topics: list[Any] = []
    for topic in response.topics:
        if topic.name is None:
            if not topic.partitions:
                topics.append(topic)
        elif visible_topic(topic.name):
            topics.append(topic)
        elif requested is not None and topic.name in requested:
            topics.append(
                _replace(
                    topic,
                    error_code=TOPIC_AUTHORIZATION_FAILED,
                    topic_id=ZERO_UUID,
                    is_internal=False,
                    partitions=[],
                    topic_authorized_operations=_NO_AUTHORIZED_OPERATIONS,
                )
            )
    return _replace(response, topics=topics)


def disable_auto_create(request: Any) -> Any:
    """The Metadata request with auto-creation off (v4+; see the module docstring for v0-3)."""
    return _replace(request, allow_auto_topic_creation=False)


# ------------------------------------------------------------------------------------------ groups, offsets


def filter_list_groups_response(response: Any, visible_group: Callable[[str], bool]) -> Any:
    """Omit groups the principal may not describe (Kafka lists only groups the caller may describe)."""
    return _replace(response, groups=[g for g in response.groups if visible_group(g.group_id)])


def filter_offset_fetch_response(response: Any, visible_topic: Callable[[str], bool]) -> Any:
    """Omit topics the principal may not describe from an OffsetFetch response (v0-7 and v8+ layouts).

    An all-topics OffsetFetch (topics null) returns every topic the group committed; explicitly requested
    topics are authorized before forwarding (``required_checks``), so filtering only matters for the former.
    """
    if response.groups:
        return _replace(
            response,
            groups=[
                _replace(g, topics=[t for t in g.topics if visible_topic(t.name)]) for g in response.groups
            ],
        )
    return _replace(response, topics=[t for t in response.topics if visible_topic(t.name)])
