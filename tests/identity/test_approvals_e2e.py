"""Just-in-time approvals end to end: real librdkafka clients through a two-worker gateway, decided through
the same gateway's supervised admin process (JSON API, `streamgate approvals` CLI and the reviewer page in
headless Chromium).

What this module is for: evidence for the approval promises of issue 6 and docs/approvals.md, against the real
`streamgate run` (workers + admin process sharing the SQLite approval store):
- a consume that needs approval is held; approved through the API while held, the held fetch proceeds before
  the hold runs out;
- not decided within `hold`: the client gets TOPIC_AUTHORIZATION_FAILED, its retries wait on the same request
  (no duplicates), and a retry after the approval is served; connections on both workers share one request;
- denied: the client is refused (the reviewer's reason reaches the requester where Kafka can carry it, and
  the audit trail), retries within the cooldown are refused at once; a requester who is also a reviewer
  cannot decide their own request (403 self_approval);
- revocation and grant expiry stop a live consumer at its next fetch;
- the CLI lists a pending request and approves it with a reason;
- the audit trail shows every request, hold and decision with principal and rule;
- a reviewer approves a held consumer's request on the web page in headless Chromium.

Every test uses its own subject (a minted token with a fresh `sub`), so the approval state of one test
(grants, denials, their cooldown) never leaks into another.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.devstack.processes import ManagedProcess
from gateway.protocols.kafka.generated.fetch import (
    FetchRequest,
    FetchRequestFetchPartition,
    FetchRequestFetchTopic,
)
from gateway.protocols.kafka.generated.produce import (
    ProduceRequest,
    ProduceRequestPartitionProduceData,
    ProduceRequestTopicProduceData,
)
from tests.helpers.gateway import GatewayProcess, start_gateway
from tests.identity.conftest import (
    mint,
    oidc_conf,
    plain_conf,
    read_audit,
    wait_for_audit,
    write_identity_config,
)
from tests.identity.test_tokens import SaslRawClient
from tests.integration.kafka_helpers import unique_topic
from tests.integration.test_gateway_process import worker_of_connection
from tests.native.batches import build_batch

pytestmark = pytest.mark.integration

HOLD_S = 6.0  # how long a request needing approval waits for a reviewer (below librdkafka's timeouts)
SHORT_GRANT_S = 3.0  # grant_ttl of the rule used for the expiry test
REVIEWERS = "security-oncall"
APPROVAL_RULE = "pii-needs-approval"
SHORT_GRANT_RULE = "pii-short-grant"
# The admin process sweeps every second here, so `approval_expired` events appear promptly.
APPROVALS_POLICY = f"""
admin:
  sweep_interval: 1s
policy:
  rules:
    - name: {APPROVAL_RULE}
      groups: [pii-readers]
      topics: ["customers.pii.*"]
      consumer_groups: ["*"]
      allow: [consume, produce, describe]
      approval: {{reviewers: [{REVIEWERS}], grant_ttl: 1h, hold: {HOLD_S:g}s}}
    - name: {SHORT_GRANT_RULE}
      groups: [pii-short-grants]
      topics: ["customers.pii.*"]
      consumer_groups: ["*"]
      allow: [consume, describe]
      approval: {{reviewers: [{REVIEWERS}], grant_ttl: {SHORT_GRANT_S:g}s, hold: {HOLD_S:g}s}}
    - name: platform-admins
      groups: [platform-admins]
      topics: ["*"]
      consumer_groups: ["*"]
      allow: [create, delete, alter, describe, describe_configs, alter_configs, produce, consume]
"""
# librdkafka needs a fresh metadata answer and a fetch round trip after the release of a held fetch; on this
# shared 2-core machine that is well under this bound.
PROMPT_S = 3.0
PRODUCE, PRODUCE_VERSION = 0, 9  # v8+ carries an error message per partition
FETCH, FETCH_VERSION = 1, 12  # the last version naming topics (v13+ use topic ids)
TOPIC_AUTHORIZATION_FAILED = 29
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# ------------------------------------------------------------------------------------------------ fixtures
@dataclass(frozen=True)
class Identity:
    sub: str
    token: str
    conf: dict[str, str]  # librdkafka configuration for this identity (SASL/PLAIN, the token as password)


@dataclass
class ApprovalsGateway:
    gw: GatewayProcess
    idp: ManagedProcess
    audit: Path
    admin: AdminClient  # kept alive for the module: topics are created through it

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.gw.admin_port}"

    def requester(self, purpose: str, *groups: str) -> Identity:
        """A fresh subject (so its own approval state) in `groups` (default: the approval rule's group)."""
        sub = f"req-{purpose}-{uuid.uuid4().hex[:8]}"
        token = mint(self.idp, sub=sub, groups=list(groups or ("pii-readers",)))
        return Identity(sub, token, plain_conf(self.gw, token, username=sub))

    def reviewer(self, purpose: str) -> Identity:
        sub = f"rev-{purpose}-{uuid.uuid4().hex[:8]}"
        token = mint(self.idp, sub=sub, groups=[REVIEWERS])
        return Identity(sub, token, plain_conf(self.gw, token, username=sub))

    def pii_topic(self, records: int) -> str:
        """A new `customers.pii.*` topic (one partition) with `records` records written by an admin."""
        name = unique_topic("customers.pii.e2e")
        for future in self.admin.create_topics([NewTopic(name, 1, 1)]).values():
            future.result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until metadata through the gateway shows the partition
            topic = self.admin.list_topics(name, timeout=10).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == 1:
                break
            time.sleep(0.1)
        self.produce(name, [f"{name}-{i}".encode() for i in range(records)])
        return name

    def produce(self, topic: str, values: list[bytes]) -> None:
        producer = Producer({**oidc_conf(self.gw, self.idp, "admin-svc"), "linger.ms": 5, "acks": "all"})
        errors: list[str] = []
        for value in values:
            producer.produce(topic, value=value, partition=0,
                             on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
        assert producer.flush(30) == 0 and errors == [], errors

    def api(self, method: str, path: str, who: Identity,
            body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON) of one admin API call with `who`'s bearer token."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {who.token}",
                                                  "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def decide(self, request_id: str, verb: str, who: Identity, reason: str) -> dict[str, Any]:
        status, body = self.api("POST", f"/api/approvals/{request_id}/{verb}", who, {"reason": reason})
        assert status == 200, (status, body)
        return dict(body)

    def requests_of(self, sub: str, reviewer: Identity, status: str = "pending") -> list[dict[str, Any]]:
        code, body = self.api("GET", f"/api/approvals?status={status}", reviewer)
        assert code == 200, body
        return [a for a in body["approvals"] if a["requester"]["sub"] == sub]

    def wait_pending(self, sub: str, reviewer: Identity, *, timeout: float = 15.0,
                     not_id: str | None = None) -> dict[str, Any]:
        """The pending request of `sub` (other than `not_id`) once a worker has filed it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [a for a in self.requests_of(sub, reviewer) if a["id"] != not_id]
            if found:
                assert len(found) == 1, found
                return found[0]
            assert time.monotonic() < deadline, f"no pending approval request of {sub} appeared"
            time.sleep(0.05)

    def events(self, matches: Callable[[dict[str, Any]], bool], *, count: int = 1,
               timeout: float = 10.0) -> list[dict[str, Any]]:
        return wait_for_audit(self.audit, matches, count=count, timeout=timeout)


@pytest.fixture(scope="module")
def approvals_gw(tansu: ManagedProcess, idp: ManagedProcess,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApprovalsGateway]:
    tmp = tmp_path_factory.mktemp("approvals")
    audit = tmp / "audit"
    audit.mkdir()
    cfg = write_identity_config(tmp / "gw.yaml", idp.extra["issuer"], audit, policy=APPROVALS_POLICY)
    # start_gateway gives the admin process a free port (gw.admin_port) and a state dir (SQLite store) in tmp
    gw = start_gateway(tansu.address, tmp, workers=2, config=cfg)
    admin = AdminClient(oidc_conf(gw, idp, "admin-svc"))
    handle = ApprovalsGateway(gw, idp, audit, admin)
    try:
        wait_admin_ready(handle.admin_url)
        yield handle
    finally:
        del admin, handle
        assert gw.stop() == 0, gw.log_text()[-3000:]
    state_dir = Path(gw.env["STREAMGATE__SERVER__STATE_DIR"])
    assert state_dir.is_relative_to(tmp) and (state_dir / "approvals.sqlite3").exists()


def wait_admin_ready(base_url: str, timeout: float = 30.0) -> None:
    """Poll /readyz of the admin process (an external process: polling with a deadline)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with opener.open(base_url + "/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise AssertionError(f"admin process at {base_url} never became ready: {last}")


# ------------------------------------------------------------------------------------------------- clients
@dataclass
class BackgroundConsumer:
    """A librdkafka consumer assigned to partition 0 from offset 0, polled on its own thread.

    Every record value and every error code is kept with its wall-clock arrival time (comparable with the
    admin API's timestamps); `wait_until` blocks on a condition variable that each arrival notifies.
    """

    conf: dict[str, str]
    topic: str
    client_id: str = "approvals-e2e"
    values: list[tuple[float, bytes]] = field(default_factory=list)
    errors: list[tuple[float, int]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failure: BaseException | None = None

    def __enter__(self) -> BackgroundConsumer:
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        assert not self._thread.is_alive(), "the consumer thread did not stop"

    def _run(self) -> None:
        try:
            consumer = Consumer({**self.conf, "group.id": unique_topic("approvals-e2e"),
                                 "client.id": self.client_id, "enable.auto.commit": False,
                                 "fetch.wait.max.ms": 100, "fetch.error.backoff.ms": 200})
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            try:
                while not self._stop.is_set():
                    msg = consumer.poll(0.1)
                    if msg is None:
                        continue
                    with self._changed:
                        if msg.error():
                            self.errors.append((time.time(), msg.error().code()))
                        else:
                            self.values.append((time.time(), msg.value()))
                        self._changed.notify_all()
            finally:
                consumer.close()
        except BaseException as exc:  # surfaced to the test by wait_until/assertions
            self._failure = exc
            with self._changed:
                self._changed.notify_all()

    def wait_until(self, done: Callable[[BackgroundConsumer], bool], timeout: float) -> bool:
        with self._changed:
            reached = self._changed.wait_for(lambda: done(self) or self._failure is not None, timeout)
        if self._failure is not None:
            raise AssertionError(f"consumer thread failed: {self._failure!r}")
        return bool(reached) and done(self)

    @property
    def error_codes(self) -> list[int]:
        return [code for _, code in self.errors]


def epoch(iso: str) -> float:
    """UNIX seconds of an API timestamp like 2026-11-30T09:07:16.120Z."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def of(sub: str, kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Audit matcher: events of principal `sub` and `kind` whose top-level fields equal `fields`."""
    def matches(event: dict[str, Any]) -> bool:
        return (event.get("kind") == kind and (event.get("principal") or {}).get("sub") == sub
                and all(event.get(k) == v for k, v in fields.items()))
    return matches


def waiting_hold(sub: str) -> Callable[[dict[str, Any]], bool]:
    """Audit matcher: a request of `sub` starting to wait for a reviewer (one per held request)."""
    def matches(event: dict[str, Any]) -> bool:
        return of(sub, "decision", decision="held")(event) and str(event.get("reason", "")).startswith(
            "waiting up to")
    return matches


# ------------------------------------------------------------------------------------------------- tests
def test_held_consume_proceeds_when_approved_through_the_api_before_the_hold_ends(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=5)
    requester, reviewer = ag.requester("approve-in-hold"), ag.reviewer("approve-in-hold")
    client_id = "notebook;justification=INC-1 refund check"
    with BackgroundConsumer(requester.conf, topic, client_id=client_id) as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        assert pending["action"] == "consume" and pending["resource"] == {"kind": "topic", "name": topic}
        assert pending["rule"] == APPROVAL_RULE and pending["reviewers"] == [REVIEWERS]
        assert pending["justification"] == "INC-1 refund check" and pending["can_decide"] is True
        # the fetch really is held by the gateway (not merely slow): the worker says so in the audit trail
        assert ag.events(waiting_hold(requester.sub))
        approve_sent_at = time.time()
        approved = ag.decide(pending["id"], "approve", reviewer, "INC-1 confirmed")
        assert approved["status"] == "approved" and approved["grant_active"] is True
        assert approved["decided_by"] == reviewer.sub
        assert c.wait_until(lambda c: len(c.values) >= 5, timeout=HOLD_S + 5), (c.values, c.errors)
    hold_deadline = epoch(pending["created_at"]) + HOLD_S
    first_arrival = c.values[0][0]
    assert [v for _, v in c.values] == [f"{topic}-{i}".encode() for i in range(5)]
    assert first_arrival >= approve_sent_at, "records were delivered before a reviewer approved"
    # the held fetch itself proceeded: no refusal in between, and the records came before the hold ran out
    assert c.errors == []
    assert first_arrival < hold_deadline, (first_arrival - approve_sent_at, hold_deadline - first_arrival)


def test_no_decision_within_the_hold_refuses_then_a_retry_after_approval_succeeds(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=3)
    requester, reviewer = ag.requester("hold-timeout"), ag.reviewer("hold-timeout")
    with BackgroundConsumer(requester.conf, topic) as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        assert c.wait_until(lambda c: c.errors, timeout=HOLD_S + 6), "no refusal after the hold ran out"
        waited = c.errors[0][0] - epoch(pending["created_at"])
        assert c.error_codes[0] == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert HOLD_S - 0.5 <= waited <= HOLD_S + PROMPT_S, waited
        # librdkafka retries; the retry is held again on the *same* request: no duplicate is filed
        assert len(ag.events(waiting_hold(requester.sub), count=2, timeout=HOLD_S)) >= 2
        assert [a["id"] for a in ag.requests_of(requester.sub, reviewer)] == [pending["id"]]
        assert len(ag.events(of(requester.sub, "approval_requested"), timeout=2)) == 1
        refused = ag.events(of(requester.sub, "decision", decision="denied"))
        assert refused and refused[0]["reason"].startswith(f"approval pending: request {pending['id']} ")
        assert c.values == []
        approve_sent_at = time.time()
        ag.decide(pending["id"], "approve", reviewer, "late but fine")
        assert c.wait_until(lambda c: len(c.values) >= 3, timeout=HOLD_S + 5), (c.values, c.errors)
    assert [v for _, v in c.values] == [f"{topic}-{i}".encode() for i in range(3)]
    # served by the retry waiting at the time of the approval, not by one after a further hold timeout
    assert c.values[0][0] - approve_sent_at < PROMPT_S
    assert set(c.error_codes) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}


def test_connections_on_both_workers_wait_on_one_request_and_one_approval_releases_both(approvals_gw):
    """The store is shared: a second worker asking for the same principal and topic files no duplicate, and
    the admin process's approval wakes the held fetches in both worker processes."""
    ag = approvals_gw
    topic = ag.pii_topic(records=2)
    requester, reviewer = ag.requester("two-workers"), ag.reviewer("two-workers")
    fetch = FetchRequest(max_wait_ms=100, min_bytes=1, max_bytes=1 << 20, topics=[FetchRequestFetchTopic(
        topic=topic, partitions=[FetchRequestFetchPartition(partition=0, fetch_offset=0,
                                                             partition_max_bytes=1 << 16)])])
    with contextlib.ExitStack() as stack:
        on_worker: dict[int, SaslRawClient] = {}
        for _ in range(24):  # SO_REUSEPORT spreads connections by hash: open some until both workers have one
            client = stack.enter_context(SaslRawClient(ag.gw.bootstrap))
            assert client.login(requester.token, username=requester.sub).error_code == 0
            client_port = int(client.address.rsplit(":", 1)[1])
            pid = worker_of_connection(ag.gw.worker_pids(), ag.gw.port, client_port)
            if pid is not None:
                on_worker.setdefault(pid, client)
            if len(on_worker) == 2:
                break
        assert len(on_worker) == 2, "no connection landed on the second worker"
        for client in on_worker.values():
            client.sock.settimeout(HOLD_S + 10)  # the fetch is held up to the hold
            client.send(FETCH, FETCH_VERSION, fetch)
        holds = ag.events(waiting_hold(requester.sub), count=2)
        assert len({e["worker"] for e in holds}) == 2, holds  # each worker holds its own connection's fetch
        [pending] = ag.requests_of(requester.sub, reviewer)
        assert len(ag.events(of(requester.sub, "approval_requested"), timeout=2)) == 1
        approve_sent_at = time.time()
        ag.decide(pending["id"], "approve", reviewer, "both notebooks")
        answers = [client.receive(FETCH, FETCH_VERSION) for client in on_worker.values()]
        answered_at = time.time()
    assert answered_at - approve_sent_at < PROMPT_S
    for answer in answers:
        [part] = [p for t in answer.responses if t.topic == topic for p in t.partitions]
        assert part.error_code == 0 and f"{topic}-0".encode() in bytes(part.records or b"")


def test_denied_consume_is_refused_and_the_requester_cannot_decide_their_own_request(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=2)
    # the requester is in the reviewer group too: still not allowed to decide their own request
    requester, reviewer = ag.requester("self", "pii-readers", REVIEWERS), ag.reviewer("deny")
    reason = "no ticket for this access"
    with BackgroundConsumer(requester.conf, topic) as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        status, own = ag.api("GET", f"/api/approvals/{pending['id']}", requester)
        assert status == 200 and own["is_requester"] is True and own["can_decide"] is False
        for verb in ("approve", "deny"):
            status, body = ag.api("POST", f"/api/approvals/{pending['id']}/{verb}", requester,
                                  {"reason": "I need it"})
            assert (status, body.get("code")) == (403, "self_approval"), body
        assert ag.requests_of(requester.sub, reviewer)[0]["status"] == "pending"
        deny_sent_at = time.time()
        denied = ag.decide(pending["id"], "deny", reviewer, reason)
        assert denied["status"] == "denied" and denied["reason"] == reason
        # the held fetch is released by the denial, not by the end of the hold
        assert c.wait_until(lambda c: c.errors, timeout=HOLD_S), "the denied consumer got no error"
        assert c.errors[0][0] - deny_sent_at < PROMPT_S
        # librdkafka retries (and reports the repeated error once); within the deny cooldown each retry is
        # refused at once: two refusal events per fetch (the gate's and the fetch's), no further hold
        refusals = of(requester.sub, "decision", api="Fetch", decision="denied", rule=APPROVAL_RULE)
        told = ag.events(refusals, count=4, timeout=HOLD_S)
        assert len(told) >= 4, told
    assert set(c.error_codes) == {KafkaError.TOPIC_AUTHORIZATION_FAILED} and c.values == []
    assert len(ag.events(waiting_hold(requester.sub), timeout=2)) == 1
    assert ag.requests_of(requester.sub, reviewer) == []  # no new request paged the reviewers again
    assert len(ag.events(of(requester.sub, "approval_requested"), timeout=2)) == 1
    # what the requester is told carries the reviewer's name and reason
    assert {e["reason"] for e in told} == {f"approval denied by {reviewer.sub}: {reason}"}


def test_denied_produce_answer_carries_the_reviewers_reason(approvals_gw):
    """Produce responses (v8+) have an error message per partition: the denial's reason belongs there.

    A raw client reads it off the wire: librdkafka's delivery report shows only the error code's text
    ("Broker: Topic authorization failed"), whatever message the response carries.
    """
    ag = approvals_gw
    topic = ag.pii_topic(records=0)
    requester, reviewer = ag.requester("produce-deny"), ag.reviewer("produce-deny")
    reason = "writes to PII need a change ticket"
    batch = build_batch([(None, b"not yet approved", [])])
    request = ProduceRequest(acks=-1, timeout_ms=10000, topic_data=[ProduceRequestTopicProduceData(
        name=topic, partition_data=[ProduceRequestPartitionProduceData(index=0, records=batch)])])
    with SaslRawClient(ag.gw.bootstrap) as raw:
        raw.sock.settimeout(HOLD_S + 10)  # the produce is held up to the hold
        assert raw.login(requester.token, username=requester.sub).error_code == 0
        raw.send(PRODUCE, PRODUCE_VERSION, request)
        pending = ag.wait_pending(requester.sub, reviewer)
        assert pending["action"] == "produce"
        ag.decide(pending["id"], "deny", reviewer, reason)
        response = raw.receive(PRODUCE, PRODUCE_VERSION)
    [answer] = [p for t in response.responses if t.name == topic for p in t.partition_responses]
    assert answer.error_code == TOPIC_AUTHORIZATION_FAILED
    assert answer.error_message == f"approval denied by {reviewer.sub}: {reason}"


def test_revocation_stops_a_live_consumer_at_its_next_fetch(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=3)
    requester, reviewer = ag.requester("revoke"), ag.reviewer("revoke")
    with BackgroundConsumer(requester.conf, topic) as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        ag.decide(pending["id"], "approve", reviewer, "short investigation")
        assert c.wait_until(lambda c: len(c.values) >= 3, timeout=HOLD_S + 5), (c.values, c.errors)
        revoked_at = time.time()
        revoked = ag.decide(pending["id"], "revoke", reviewer, "investigation closed")
        assert revoked["status"] == "revoked" and revoked["grant_active"] is False
        # the consumer's very next fetch (it long-polls every 100 ms) is gated again: a new request is filed
        again = ag.wait_pending(requester.sub, reviewer, not_id=pending["id"])
        assert again["action"] == "consume" and epoch(again["created_at"]) - revoked_at < PROMPT_S
        # records written now are not delivered: the fetch is held, then refused
        ag.produce(topic, [b"after-revocation"])
        deny_sent_at = time.time()
        ag.decide(again["id"], "deny", reviewer, "no more access")
        assert c.wait_until(lambda c: c.errors, timeout=HOLD_S), "the revoked consumer got no error"
        assert c.errors[0][0] - deny_sent_at < PROMPT_S
    assert [v for _, v in c.values] == [f"{topic}-{i}".encode() for i in range(3)]
    assert c.error_codes[0] == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_grant_expiry_stops_a_live_consumer_at_its_next_fetch(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=3)
    requester, reviewer = ag.requester("expiry", "pii-short-grants"), ag.reviewer("expiry")
    with BackgroundConsumer(requester.conf, topic) as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        assert pending["rule"] == SHORT_GRANT_RULE and pending["grant_ttl_seconds"] == SHORT_GRANT_S
        approved = ag.decide(pending["id"], "approve", reviewer, "a few seconds only")
        expires_at = epoch(approved["grant_expires_at"])
        assert abs(expires_at - epoch(approved["decided_at"]) - SHORT_GRANT_S) < 0.01
        assert c.wait_until(lambda c: len(c.values) >= 3, timeout=HOLD_S + 5), (c.values, c.errors)
        # the first fetch after the expiry time is gated again, without any store change
        again = ag.wait_pending(requester.sub, reviewer, not_id=pending["id"], timeout=SHORT_GRANT_S + 10)
        filed = epoch(again["created_at"])
        assert expires_at <= filed < expires_at + PROMPT_S, (filed - expires_at)
        ag.produce(topic, [b"after-expiry"])
        ag.decide(again["id"], "deny", reviewer, "grant is over")
        assert c.wait_until(lambda c: c.errors, timeout=HOLD_S), "the expired consumer got no error"
    assert [v for _, v in c.values] == [f"{topic}-{i}".encode() for i in range(3)]
    assert c.error_codes[0] == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # the admin process's sweeper records the expiry (sweep_interval 1s)
    expired = ag.events(of(requester.sub, "approval_expired"), timeout=5)
    assert expired and expired[0]["details"]["request_id"] == pending["id"]
    assert expired[0]["reason"].startswith("grant expired at") and expired[0]["rule"] == SHORT_GRANT_RULE


def test_cli_lists_the_pending_request_and_approves_it_with_a_reason(approvals_gw, tmp_path):
    ag = approvals_gw
    topic = ag.pii_topic(records=2)
    requester, reviewer = ag.requester("cli"), ag.reviewer("cli")
    token_file = tmp_path / "reviewer.token"
    token_file.write_text(reviewer.token)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no STREAMGATE_TOKEN/ADMIN_URL inherited

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "approvals", *args, "--admin", ag.admin_url],
                              capture_output=True, text=True, timeout=30, env=env,
                              cwd=Path(__file__).resolve().parents[2])

    with BackgroundConsumer(requester.conf, topic, client_id="cli-app;justification=JIRA-42") as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        listed = cli("list", "--token-file", str(token_file))
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if pending["id"] in line)
        for expected in ("pending", requester.sub, "consume", f"topic:{topic}", APPROVAL_RULE, "JIRA-42"):
            assert expected in row, (expected, row)
        approve_sent_at = time.time()
        done = cli("approve", pending["id"], "--reason", "JIRA-42 approved by the data owner",
                   "--token", reviewer.token)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{pending['id']}: approved by {reviewer.sub}, grant until ")
        assert reviewer.token not in done.stdout + done.stderr + listed.stdout + listed.stderr
        assert c.wait_until(lambda c: len(c.values) >= 2, timeout=HOLD_S + 5), (c.values, c.errors)
    assert c.values[0][0] - approve_sent_at < PROMPT_S
    shown = cli("show", pending["id"], "--json", "--token-file", str(token_file))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "approved" and record["reason"] == "JIRA-42 approved by the data owner"
    # a second approval of the same request is refused by the API (exit status 1, the reason on stderr)
    again = cli("approve", pending["id"], "--reason", "twice", "--token-file", str(token_file))
    assert again.returncode == 1 and "approved" in again.stderr


def test_audit_trail_records_requests_holds_and_decisions_with_principal_and_rule(approvals_gw):
    ag = approvals_gw
    topic = ag.pii_topic(records=2)
    requester, reviewer = ag.requester("audit"), ag.reviewer("audit")
    with BackgroundConsumer(requester.conf, topic, client_id="audit-app;justification=AUD-7") as c:
        first = ag.wait_pending(requester.sub, reviewer)
        ag.decide(first["id"], "approve", reviewer, "AUD-7 ok")
        assert c.wait_until(lambda c: len(c.values) >= 2, timeout=HOLD_S + 5), (c.values, c.errors)
        ag.decide(first["id"], "revoke", reviewer, "AUD-7 closed")
        second = ag.wait_pending(requester.sub, reviewer, not_id=first["id"])
        ag.decide(second["id"], "deny", reviewer, "not again")
        assert c.wait_until(lambda c: c.errors, timeout=HOLD_S)

    requested = ag.events(of(requester.sub, "approval_requested"), count=2)
    assert [e["details"]["request_id"] for e in requested] == [first["id"], second["id"]]
    for e in requested:  # written by the worker that filed the request
        assert e["decision"] == "held" and e["rule"] == APPROVAL_RULE and e["resource"]["topic"] == topic
        assert e["details"]["reviewers"] == REVIEWERS and e["details"]["justification"] == "AUD-7"
        assert e["client"]["client_id"] == "audit-app;justification=AUD-7" and e["connection_id"]
    holds = ag.events(waiting_hold(requester.sub), count=2)
    assert {e["rule"] for e in holds} == {APPROVAL_RULE}
    assert {e["resource"]["topic"] for e in holds} == {topic}
    assert {first["id"], second["id"]} <= {e["reason"].rsplit(" ", 1)[-1] for e in holds}

    def decided(kind: str, request_id: str) -> dict[str, Any]:
        found = [e for e in ag.events(of(requester.sub, kind)) if e["details"]["request_id"] == request_id]
        assert len(found) == 1, (kind, found)
        event = found[0]
        assert event["rule"] == APPROVAL_RULE and event["resource"]["topic"] == topic
        assert event["principal"]["groups"] == ["pii-readers"]
        return event

    granted = decided("approval_granted", first["id"])
    assert granted["decision"] == "approved" and granted["approved_by"] == reviewer.sub
    assert granted["details"]["grant_expires_at"]
    revoked = decided("approval_revoked", first["id"])
    assert revoked["details"]["decided_by"] == reviewer.sub and revoked["reason"] == "AUD-7 closed"
    denied = decided("approval_denied", second["id"])
    assert denied["decision"] == "denied" and denied["details"]["decided_by"] == reviewer.sub
    assert denied["reason"] == "not again"
    # the fetches served under the grant name it
    assert ag.events(of(requester.sub, "decision", decision="approved", rule=APPROVAL_RULE))
    # decisions are written by the admin process through its own file sink
    assert {e.get("worker") for e in (granted, revoked, denied)} == {"admin"}
    text = json.dumps(read_audit(ag.audit))
    assert requester.token not in text and reviewer.token not in text


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless browser test needs Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER,
                                              log_output=str(tmp_path / "driver.log")), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_reviewer_approves_a_held_consumer_on_the_web_page_in_chromium(approvals_gw, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ag = approvals_gw
    topic = ag.pii_topic(records=3)
    requester, reviewer = ag.requester("page"), ag.reviewer("page")
    wait = WebDriverWait(browser, 15)
    # sign in first (browser start-up is slow here); the page then shows requests filed later on a reload
    browser.get(ag.admin_url + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token-input"))).send_keys(reviewer.token)
    browser.find_element(By.ID, "login-button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "whoami"), f"Signed in as {reviewer.sub}"))

    with BackgroundConsumer(requester.conf, topic, client_id="page-app;justification=PAGE-9") as c:
        pending = ag.wait_pending(requester.sub, reviewer)
        browser.refresh()  # the token stays in the tab's session storage: still signed in
        row = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, f'#pending-table tbody tr[data-id="{pending["id"]}"]')))
        assert requester.sub in row.text and f"topic {topic}" in row.text and "PAGE-9" in row.text
        row.click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "details-id"), pending["id"]))
        browser.find_element(By.ID, "reason-input").send_keys("PAGE-9 checked with the data owner")
        approve_clicked_at = time.time()
        wait.until(ec.visibility_of_element_located((By.ID, "approve-button"))).click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "flash"),
                                                    f"Request {pending['id']} is now approved."))
        assert c.wait_until(lambda c: len(c.values) >= 3, timeout=HOLD_S + 5), (c.values, c.errors)
        browser.save_screenshot(str(tmp_path / "reviewer-page.png"))
    assert [v for _, v in c.values] == [f"{topic}-{i}".encode() for i in range(3)]
    assert c.values[0][0] >= approve_clicked_at and c.values[0][0] - approve_clicked_at < PROMPT_S
    # the held fetch itself proceeded (the whole page round trip fitted in the hold)
    assert c.errors == [] and c.values[0][0] < epoch(pending["created_at"]) + HOLD_S
    status, record = ag.api("GET", f"/api/approvals/{pending['id']}", reviewer)
    assert status == 200 and record["status"] == "approved" and record["decided_by"] == reviewer.sub
    assert record["reason"] == "PAGE-9 checked with the data owner"

