"""Webhook payloads (Slack-compatible and JSON) and delivery to a real local HTTP listener with retries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.admin.config import WebhookConfig
from gateway.admin.webhook import WebhookDeliveryError, WebhookSender, backoff_delay, payload_for, post_json
from gateway.enforcement import approvals
from gateway.enforcement.decisions import ApprovalSpec, Resource
from gateway.store.approvals_base import StoreEvent
from tests.approvals.helpers import WebhookReceiver

T0 = 1_700_000_000.0
SPEC = ApprovalSpec("pii", ("security-oncall",), 3600.0, 10.0)


class Carol:
    sub = "carol"
    groups = ("security-oncall",)


def _event(
    kind: str = "requested", seq: int = 1, justification: str = "<!channel> *urgent* & <http://x|y>"
) -> StoreEvent:
    record = approvals.new_request(
        approvals.Requester(
            "alice", "alice@example.com", ("analysts",), "10.0.0.1:1", f"nb;justification={justification}"
        ),
        "consume",
        Resource.topic("customers.pii.accounts"),
        SPEC,
        T0,
    )
    if kind == "approved":
        record = approvals.decide(record, "approve", Carol(), "INC-1", T0 + 5)
    actor = "carol" if kind == "approved" else "alice"
    return StoreEvent(seq, kind, T0 + 5, actor, record)  # type: ignore[arg-type]


def test_slack_payload_is_slack_shaped_and_escapes_user_text() -> None:
    config = WebhookConfig(url="https://hooks.example/services/T/B/secret", format="slack")
    payload = payload_for(_event(), config, "https://gw.example")
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("Approval requested: alice (alice@example.com) wants consume on topic")
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context", "actions"]
    justification = next(
        f["text"] for f in payload["blocks"][2]["fields"] if f["text"].startswith("*Justification*")
    )
    assert (
        "&lt;!channel&gt;" in justification and "&amp;" in justification and "<!channel>" not in justification
    )
    assert payload["blocks"][4]["elements"][0]["url"].startswith("https://gw.example/#request=")
    approved = payload_for(_event("approved"), config, None)
    assert "approved by carol" in approved["text"]
    assert [b["type"] for b in approved["blocks"]] == ["header", "section", "section", "context"]
    assert any(f["text"] == "*Reason*\nINC-1" for f in approved["blocks"][2]["fields"])


def test_json_payload() -> None:
    payload = payload_for(_event("approved", seq=7), WebhookConfig(url="http://h/x"), "https://gw.example")
    assert payload["event"] == "approval_granted" and payload["seq"] == 7 and payload["actor"] == "carol"
    assert payload["approval"]["status"] == "approved" and payload["approval"]["decided_by"] == "carol"
    assert payload["url"].endswith(payload["approval"]["id"])


def test_config_hides_the_url_and_checks_it() -> None:
    config = WebhookConfig(url="https://hooks.example/services/T/B/secret-part")
    assert "secret-part" not in repr(config) and config.destination == "https://hooks.example"
    with pytest.raises(ValueError) as bad:
        WebhookConfig(url="file:///etc/secret-part")
    assert "secret-part" not in str(bad.value)


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(20) == 30.0


def test_post_json_to_a_real_listener() -> None:
    with WebhookReceiver(statuses=[500, 404]) as receiver:
        config = WebhookConfig(url=receiver.url, headers={"Authorization": "Bearer hook-secret"})
        with pytest.raises(WebhookDeliveryError) as failed:
            asyncio.run(post_json(config, {"n": 1}))
        assert failed.value.retryable and "500" in str(failed.value)
        with pytest.raises(WebhookDeliveryError) as failed:
            asyncio.run(post_json(config, {"n": 2}))
        assert not failed.value.retryable
        assert asyncio.run(post_json(config, {"n": 3})) == 200
        path, headers, body = receiver.requests[-1]
        assert path == "/hooks/secret-path" and headers["Authorization"] == "Bearer hook-secret"
        assert headers["Content-Type"] == "application/json" and body == b'{"n":3}'
    with pytest.raises(WebhookDeliveryError) as failed:  # the listener is gone now
        asyncio.run(post_json(config, {"n": 4}))
    assert failed.value.retryable


def test_sender_retries_then_delivers_in_order() -> None:
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)

    async def scenario(receiver: WebhookReceiver) -> WebhookSender:
        sender = WebhookSender(WebhookConfig(url=receiver.url, max_attempts=4), sleep=no_wait)
        sender.start()
        for seq in (1, 2, 3):
            assert sender.enqueue(_event(seq=seq))
        await sender.aclose(10)
        return sender

    with WebhookReceiver(statuses=[503, 502, 200, 429]) as receiver:
        sender = asyncio.run(scenario(receiver))
    assert [m["seq"] for m in receiver.received] == [1, 2, 3]
    assert delays == [0.5, 1.0, 0.5]  # two failures for the first message, one (429) for the third
    assert (sender.delivered, sender.dropped, sender.attempts) == (3, 0, 6)


def test_sender_gives_up_on_permanent_errors_and_after_max_attempts() -> None:
    async def no_wait(delay: float) -> None:
        pass

    async def scenario(receiver: WebhookReceiver) -> WebhookSender:
        sender = WebhookSender(WebhookConfig(url=receiver.url, max_attempts=2), sleep=no_wait)
        sender.start()
        sender.enqueue(_event(seq=1))  # 400: dropped at once
        sender.enqueue(_event(seq=2))  # 500, 500: dropped after two attempts
        sender.enqueue(_event(seq=3))  # delivered
        await sender.aclose(10)
        return sender

    with WebhookReceiver(statuses=[400, 500, 500]) as receiver:
        sender = asyncio.run(scenario(receiver))
    assert [m["seq"] for m in receiver.received] == [3]
    assert (sender.delivered, sender.dropped, sender.attempts) == (1, 2, 4)


def test_enqueue_never_blocks_and_a_full_queue_drops() -> None:
    release = asyncio.Event()

    async def stuck_post(config: WebhookConfig, payload: dict[str, Any]) -> int:
        await release.wait()
        return 200

    async def scenario() -> WebhookSender:
        sender = WebhookSender(WebhookConfig(url="http://127.0.0.1:9/x", queue_size=3), post=stuck_post)
        sender.start()
        started = time.monotonic()
        results = [sender.enqueue(_event(seq=n)) for n in range(5)]
        assert time.monotonic() - started < 0.1
        assert results == [True, True, True, False, False]
        release.set()
        await sender.aclose(5)
        return sender

    sender = asyncio.run(scenario())
    assert sender.delivered == 3 and sender.dropped == 2
