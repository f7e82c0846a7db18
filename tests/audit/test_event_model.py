"""The audit event model: compact JSON, omitted defaults, timestamps, and the no-secrets guard."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from gateway.enforcement.audit import (
    AuditEvent,
    AuditSecretError,
    ClientInfo,
    Offsets,
    Principal,
    Resource,
    SessionTotals,
    check_no_secrets,
    decode_event,
    encode_event,
    is_secret_name,
    rfc3339_ms,
)


def full_decision_event() -> AuditEvent:
    return AuditEvent(
        ts="2024-05-01T12:00:00.123Z",
        kind="decision",
        principal=Principal(sub="alice", email="alice@example.com", groups=("analysts", "payments-svc")),
        client=ClientInfo(address="10.0.0.5:53122", client_id="rdkafka"),
        connection_id="c-17",
        worker=2,
        protocol="kafka",
        api="Fetch",
        api_version=13,
        resource=Resource(topic="payments.eu", partition=3),
        offsets=Offsets(first=100, last=149),
        record_count=50,
        bytes=8123,
        decision="masked",
        rule="analysts-read-masked",
        reason="allowed with masking profile pii",
        masked_counts={"credit_card": 4},
    )


def test_round_trip_keeps_every_field() -> None:
    event = full_decision_event()
    assert decode_event(encode_event(event)) == event


def test_fields_that_do_not_apply_are_omitted() -> None:
    data = json.loads(
        encode_event(
            AuditEvent(ts="2024-05-01T12:00:00.000Z", kind="session_open", principal=Principal(sub="bob"))
        )
    )
    assert data == {"ts": "2024-05-01T12:00:00.000Z", "kind": "session_open", "principal": {"sub": "bob"}}


def test_session_close_carries_totals() -> None:
    event = AuditEvent(
        kind="session_close",
        totals=SessionTotals(requests=12, bytes_in=300, bytes_out=9000, records_out=40, duration_ms=1500),
    )
    data = json.loads(encode_event(event))
    assert data["totals"] == {
        "requests": 12,
        "bytes_in": 300,
        "bytes_out": 9000,
        "records_out": 40,
        "duration_ms": 1500,
    }


def test_unknown_decision_is_rejected_when_decoding() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"kind":"decision","decision":"maybe"}')


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1714564800.123456, "2024-05-01T12:00:00.123Z"),
        (1714564800.999, "2024-05-01T12:00:00.999Z"),
        (1714564801.0, "2024-05-01T12:00:01.000Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_milliseconds(epoch: float, expected: str) -> None:
    assert rfc3339_ms(epoch) == expected


# -- the secret guard --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "client_secret",
        "access_token",
        "Token",
        "api_key",
        "apikey",
        "private-key",
        "Authorization",
        "credentials",
        "cookie",
    ],
)
def test_secret_looking_detail_keys_are_refused(key: str) -> None:
    event = AuditEvent(kind="auth", details={key: "hunter2-value"})
    with pytest.raises(AuditSecretError) as info:
        encode_event(event)
    assert key in str(info.value)
    assert "hunter2-value" not in str(info.value)


@pytest.mark.parametrize("key", ["sink", "count", "retained_from_seq", "mechanism", "reason_code"])
def test_ordinary_detail_keys_pass(key: str) -> None:
    assert json.loads(encode_event(AuditEvent(kind="auth", details={key: "x"})))["details"] == {key: "x"}


def test_a_secret_named_key_with_no_value_is_allowed() -> None:
    # Saying *that* a token was absent is fine; carrying one is not.
    assert b'"token":null' in encode_event(AuditEvent(kind="auth", details={"token": None}))


def test_masked_counts_keys_are_detector_names_not_fields() -> None:
    event = AuditEvent(
        kind="decision", decision="masked", masked_counts={"aws_secret_key": 2, "api_token": 1}
    )
    assert json.loads(encode_event(event))["masked_counts"] == {"aws_secret_key": 2, "api_token": 1}


def test_a_struct_field_named_like_a_secret_is_refused() -> None:
    class LeakyEvent(AuditEvent, kw_only=True, omit_defaults=True):
        refresh_token: str | None = None

    with pytest.raises(AuditSecretError, match="refresh_token"):
        encode_event(LeakyEvent(kind="auth", refresh_token="abc"))


def test_nested_mapping_under_details_is_checked() -> None:
    event = AuditEvent(kind="auth", details={"upstream": {"password": "x"}})  # type: ignore[dict-item]
    with pytest.raises(AuditSecretError, match=r"details\.upstream\.password"):
        check_no_secrets(event)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_jwt_anywhere_in_the_event_is_refused() -> None:
    token = f"{_b64({'alg': 'RS256', 'kid': 'k1'})}.{_b64({'sub': 'alice', 'exp': 1})}.c2lnbmF0dXJl"
    event = AuditEvent(kind="auth", decision="denied", reason=f"token rejected: {token}")
    with pytest.raises(AuditSecretError) as info:
        encode_event(event)
    assert token not in str(info.value)


def test_the_model_has_no_secret_looking_fields() -> None:
    for cls in (AuditEvent, Principal, ClientInfo, Resource, Offsets, SessionTotals):
        assert not [f for f in cls.__struct_fields__ if is_secret_name(f)], cls
