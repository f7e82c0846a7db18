"""The Kafka APIs the gateway handles, and what it must do with each.

Only APIs listed here are advertised to clients (ApiVersions answers with the intersection of these ranges and
the broker's). Anything else is an unknown API: the connection is closed with a clear log line, because an API
the gateway does not understand is an API it cannot enforce policy on.

`rewrites_response` marks responses that name brokers: they are decoded and their addresses replaced by the
gateway's own, so that no client ever learns a broker address and bypasses the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiSpec:
    key: int
    name: str
    min_version: int
    max_version: int
    # first version whose response names brokers (None: never); such responses are decoded and rewritten
    rewrite_from: int | None = None


PRODUCE = 0
FETCH = 1
METADATA = 3
FIND_COORDINATOR = 10
SASL_HANDSHAKE = 17
API_VERSIONS = 18
SASL_AUTHENTICATE = 36
DESCRIBE_CLUSTER = 60

_SPECS = [
    ApiSpec(0, "Produce", 0, 11, rewrite_from=10),  # v10+: NodeEndpoints (KIP-951)
    ApiSpec(1, "Fetch", 0, 17, rewrite_from=16),  # v16+: NodeEndpoints (KIP-951)
    ApiSpec(2, "ListOffsets", 0, 10),
    ApiSpec(3, "Metadata", 0, 12, rewrite_from=0),
    ApiSpec(8, "OffsetCommit", 0, 9),
    ApiSpec(9, "OffsetFetch", 0, 9),
    ApiSpec(10, "FindCoordinator", 0, 6, rewrite_from=0),
    ApiSpec(11, "JoinGroup", 0, 9),
    ApiSpec(12, "Heartbeat", 0, 4),
    ApiSpec(13, "LeaveGroup", 0, 5),
    ApiSpec(14, "SyncGroup", 0, 5),
    ApiSpec(15, "DescribeGroups", 0, 5),
    ApiSpec(16, "ListGroups", 0, 5),
    ApiSpec(17, "SaslHandshake", 0, 1),
    ApiSpec(18, "ApiVersions", 0, 4),
    ApiSpec(19, "CreateTopics", 0, 7),
    ApiSpec(20, "DeleteTopics", 0, 6),
    ApiSpec(21, "DeleteRecords", 0, 2),
    ApiSpec(22, "InitProducerId", 0, 5),
    ApiSpec(23, "OffsetForLeaderEpoch", 0, 4),
    ApiSpec(24, "AddPartitionsToTxn", 0, 3),  # v4+ is the broker-to-broker batched form
    ApiSpec(25, "AddOffsetsToTxn", 0, 4),
    ApiSpec(26, "EndTxn", 0, 5),
    ApiSpec(28, "TxnOffsetCommit", 0, 4),
    ApiSpec(32, "DescribeConfigs", 0, 4),
    ApiSpec(33, "AlterConfigs", 0, 2),
    ApiSpec(36, "SaslAuthenticate", 0, 2),
    ApiSpec(37, "CreatePartitions", 0, 3),
    ApiSpec(42, "DeleteGroups", 0, 2),
    ApiSpec(44, "IncrementalAlterConfigs", 0, 1),
    ApiSpec(47, "OffsetDelete", 0, 0),
    ApiSpec(60, "DescribeCluster", 0, 1, rewrite_from=0),
]

HANDLED: dict[int, ApiSpec] = {s.key: s for s in _SPECS}


def api_name(key: int) -> str:
    spec = HANDLED.get(key)
    return spec.name if spec else f"api_key={key}"


BY_NAME: dict[str, ApiSpec] = {s.name: s for s in _SPECS}

# Fetch v16+ responses end with NodeEndpoints (KIP-951 leader hints) that must be rewritten, so they cannot
# stream through: the whole response is buffered and checked first. Capping Fetch at v15 by default keeps the
# consume path streaming; clients lose only the leader hint and refresh metadata instead
# (kafka.max_api_versions lifts the cap; the rewrite path is implemented and tested).
DEFAULT_MAX_VERSIONS: dict[str, int] = {"Fetch": 15}


def intersect_with_broker(broker: dict[int, tuple[int, int]],
                          caps: dict[int, int] | None = None) -> dict[int, tuple[int, int]]:
    """Ranges to advertise: handled APIs the broker also supports, each clamped to both ranges and `caps`.

    ApiVersions itself is always advertised with the gateway's own range because the gateway answers it.
    SASL APIs are answered by the gateway too, so they are advertised whatever the broker says.
    """
    out: dict[int, tuple[int, int]] = {}
    for key, spec in HANDLED.items():
        if key in (API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE):
            out[key] = (spec.min_version, spec.max_version)
            continue
        if key not in broker:
            continue
        lo = max(spec.min_version, broker[key][0])
        hi = min(spec.max_version, broker[key][1], (caps or {}).get(key, spec.max_version))
        if lo <= hi:
            out[key] = (lo, hi)
    return out
