"""The bench's identity mode end to end: a real OIDC provider, Streamgate with policy + audit, real clients.

What must hold for the identity/passthrough ratio to mean anything: the bench's clients really authenticate
(librdkafka's OIDC method; SASL PLAIN with a token for the raw idle connections), the policy really decides
their requests (the audit trail names the rule), unauthenticated clients are refused rather than measured,
and the client credentials never show up on a command line or in a log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.e2e.harness import BenchContext, ClientError, ClientProcess
from bench.e2e.identity import BENCH_CLIENT_ID, BENCH_GROUP, BenchIdentity
from bench.e2e.scenarios import PROFILES, ConsumeThroughput, ProduceThroughput
from bench.e2e.targets import StreamgateTarget, process_tree
from gateway.devstack.processes import ManagedProcess

pytestmark = pytest.mark.integration
SMOKE = PROFILES["smoke"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-identity")


@pytest.fixture(scope="module")
def identity(run_dir: Path) -> Iterator[BenchIdentity]:
    handle = BenchIdentity.start(run_dir)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def ctx(tansu: ManagedProcess, run_dir: Path) -> BenchContext:
    return BenchContext(broker=tansu, profile="smoke", log_dir=run_dir)


@pytest.fixture(scope="module")
def target(ctx: BenchContext, identity: BenchIdentity, run_dir: Path) -> Iterator[StreamgateTarget]:
    gateway = StreamgateTarget("streamgate-identity", mode="identity", identity=identity, log_dir=run_dir)
    gateway.start(ctx.broker)
    yield gateway
    tree = process_tree(gateway.root_pids())
    gateway.close()
    assert process_tree(tree) == []


def _audit_events(target: StreamgateTarget) -> list[dict[str, Any]]:
    assert target.audit_dir is not None
    events = []
    for path in sorted(target.audit_dir.glob("audit*.jsonl*")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line may still be being written
    return events


def _wait_for_events(target: StreamgateTarget, matches: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the audit files (the sink writes once per loop iteration) until an event matches."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in _audit_events(target) if matches(event)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_identity_target_is_configured_from_the_run(target: StreamgateTarget, run_dir: Path) -> None:
    assert target.config_path.name == "bench-identity.yaml"
    assert target.audit_dir == run_dir / "streamgate-identity-audit"
    config = target.client_config()
    assert config["sasl.oauthbearer.method"] == "oidc"
    assert config["sasl.oauthbearer.client.id"] == BENCH_CLIENT_ID
    assert target.describe()["mode"] == "identity"


def test_scenarios_through_the_identity_target_are_authorized_and_audited(
    ctx: BenchContext, target: StreamgateTarget
) -> None:
    produce = ProduceThroughput().measure(ctx, target, SMOKE["produce_throughput"])
    assert produce.raw["records"] == SMOKE["produce_throughput"]["records"]
    consume_scenario = ConsumeThroughput()
    consume_scenario.begin_round(ctx, SMOKE["consume_throughput"])
    try:
        consume = consume_scenario.measure(ctx, target, SMOKE["consume_throughput"])
    finally:
        consume_scenario.end_round(ctx)
    assert consume.raw["records"] == SMOKE["consume_throughput"]["records"]

    def bench_decision(api: str) -> Any:
        return lambda e: (
            e.get("kind") == "decision"
            and e.get("api") == api
            and e.get("decision") == "allowed"
            and e.get("rule") == "bench-clients"
            and (e.get("principal") or {}).get("sub") == BENCH_CLIENT_ID
            and BENCH_GROUP in (e.get("principal") or {}).get("groups", [])
        )

    produced = _wait_for_events(target, bench_decision("Produce"))
    fetched = _wait_for_events(target, bench_decision("Fetch"))
    assert produced and fetched
    # the audit trail accounts for every record that went through: produce counts from batch headers
    deadline = time.monotonic() + 10.0
    while True:
        topic_events = [
            e
            for e in _audit_events(target)
            if bench_decision("Produce")(e) and "produce_throughput" in str(e)
        ]
        counted = sum(e.get("record_count") or 0 for e in topic_events)
        if counted >= produce.raw["records"] + produce.raw["warm_up_records"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == produce.raw["records"] + produce.raw["warm_up_records"]


def test_clients_without_credentials_are_refused_not_measured(
    ctx: BenchContext, target: StreamgateTarget
) -> None:
    with pytest.raises(ClientError):
        ctx.probe(target.bootstrap, "no-credentials")  # no SASL settings: the gateway must refuse it
    holder = ClientProcess("idle_connections", {"bootstrap": target.bootstrap, "count": 2, "max_seconds": 10})
    try:
        opened = holder.read_result(30)
    finally:
        holder.finish()
    assert not opened["complete"] and not opened["authenticated"]
    assert opened["error"]


def test_idle_connections_authenticate_with_a_token_kept_off_the_command_line(
    ctx: BenchContext, target: StreamgateTarget, identity: BenchIdentity, run_dir: Path
) -> None:
    sasl = target.raw_sasl()
    assert sasl is not None and sasl["mechanism"] == "PLAIN"
    holder = ClientProcess(
        "idle_connections", {"bootstrap": target.bootstrap, "count": 5, "max_seconds": 20, "raw_sasl": sasl}
    )
    try:
        opened = holder.read_result(40)
        command_line = Path(f"/proc/{holder.proc.pid}/cmdline").read_bytes()
    finally:
        holder.finish()
    assert opened["complete"] and opened["authenticated"] and opened["opened"] == 5
    assert sasl["password"].encode() not in command_line
    secret = identity.client_config()["sasl.oauthbearer.client.secret"]
    authenticated = _wait_for_events(
        target,
        lambda e: (
            e.get("kind") == "auth"
            and e.get("decision") == "allowed"
            and (e.get("principal") or {}).get("sub") == BENCH_CLIENT_ID
        ),
    )
    assert len(authenticated) >= 5
    # neither the client secret nor a token appears in the gateway's, the provider's or the audit files
    for path in [p for p in run_dir.rglob("*") if p.is_file()]:
        text = path.read_bytes()
        assert secret.encode() not in text, path
        assert sasl["password"].encode() not in text, path
