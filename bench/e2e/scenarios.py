"""The six end-to-end scenarios. Each measures one target once per call; the run alternates targets.

A scenario turns one client workload (or a few) into named metrics with a unit and a direction (higher or
lower is better), so the report can compute medians, ratios to direct and goal checks without knowing
what the numbers mean. A measurement whose counts do not add up (records lost, not acknowledged, not
consumed) is reported as an error: its speed would be a speed of doing less work.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from bench.e2e.harness import BenchContext, ClientError, ClientProcess, run_client
from bench.e2e.targets import DirectTarget, StreamgateTarget, Target, TargetUnavailable, tree_rss_kib

# A client gets this long beyond its own bound to start, warm up and report.
CLIENT_SLACK_S = 30.0


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    higher_is_better: bool
    label: str = ""


@dataclass
class Measurement:
    metrics: dict[str, float | None]
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class IncompleteMeasurement(RuntimeError):
    """The counts of a measurement did not add up; carries the raw numbers for the result file."""

    def __init__(self, message: str, raw: dict[str, Any]) -> None:
        super().__init__(message)
        self.raw = raw


class Scenario(ABC):
    name: str
    title: str
    description: str
    metrics: tuple[MetricSpec, ...]
    # Restart proxy targets before each measurement (memory deltas must not reuse an earlier round's heap).
    fresh_target: bool = False

    def setup(self, ctx: BenchContext, targets: list[Target], params: dict[str, Any]) -> list[Target]:
        """Targets to alternate over, in order; may start scenario-specific targets."""
        return targets

    def teardown(self, ctx: BenchContext) -> None:  # noqa: B027 - an optional hook, empty by default
        """Stop what `setup` started."""

    def begin_round(self, ctx: BenchContext, params: dict[str, Any]) -> None:  # noqa: B027 - an optional hook, empty by default
        """Prepare what every target of one round shares (runs before the round's first target)."""

    def end_round(self, ctx: BenchContext) -> None:  # noqa: B027 - an optional hook, empty by default
        """Clean up what `begin_round` prepared (runs even when the round failed)."""

    @abstractmethod
    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement: ...


def client_params(target: Target) -> dict[str, Any]:
    """What every confluent-kafka workload against `target` needs: its bootstrap and its client settings."""
    return {"bootstrap": target.bootstrap, "client_config": target.client_config()}


def _without_histogram(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "hdr"}


def _require(condition: bool, message: str, raw: dict[str, Any]) -> None:
    if not condition:
        raise IncompleteMeasurement(message, raw)


THROUGHPUT_METRICS = (
    MetricSpec("records_per_s", "rec/s", True, "records/s"),
    MetricSpec("mb_per_s", "MB/s", True, "MB/s"),
)


class ProduceThroughput(Scenario):
    name = "produce_throughput"
    title = "Produce throughput"
    description = (
        "One producer process sends `records` records of `record_size` bytes with batching on "
        "(linger.ms=5, batch.size=1,000,000, acks=all); time from the first send to the last ack."
    )
    metrics = THROUGHPUT_METRICS

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        topic = ctx.new_topic(self.name)
        try:
            result = run_client(
                "produce_throughput",
                {**params, **client_params(target), "topic": topic},
                timeout=float(params["max_seconds"]) + CLIENT_SLACK_S,
            )
        finally:
            ctx.delete_topic(topic)
        # The producer's own delivery accounting is the check here: Tansu's high watermark is the last
        # batch's base offset + 1, not the record count, so it cannot confirm the total.
        _require(
            bool(result["complete"]),
            f"sent {result['sent']} of {params['records']}, acked {result['records']}, "
            f"errors {result['errors']} ({result['first_error']})",
            result,
        )
        return Measurement({"records_per_s": result["records_per_s"], "mb_per_s": result["mb_per_s"]}, result)


class ConsumeThroughput(Scenario):
    name = "consume_throughput"
    title = "Consume throughput"
    description = (
        "Once per round a topic is pre-filled with `records` records through the broker directly (not "
        "timed); then, for each target, one consumer process reads them all from offset 0 through the "
        "target (assign, no group, no commits), so every target reads the same bytes."
    )
    metrics = THROUGHPUT_METRICS

    def __init__(self) -> None:
        self._topic: str | None = None
        self._fill: dict[str, Any] = {}

    def begin_round(self, ctx: BenchContext, params: dict[str, Any]) -> None:
        self._topic = ctx.new_topic(self.name)
        self._fill = run_client(
            "produce_throughput",
            {**params, "bootstrap": ctx.direct_bootstrap, "topic": self._topic, "warm_up": False},
            timeout=float(params["max_seconds"]) + CLIENT_SLACK_S,
        )
        _require(
            bool(self._fill["complete"]),
            f"pre-fill acked {self._fill['records']} of {params['records']}",
            self._fill,
        )

    def end_round(self, ctx: BenchContext) -> None:
        if self._topic is not None:
            ctx.delete_topic(self._topic)
        self._topic = None
        self._fill = {}

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        if self._topic is None:
            raise RuntimeError("consume_throughput measured without a pre-filled topic (begin_round not run)")
        result = run_client(
            "consume_throughput",
            {**params, **client_params(target), "topic": self._topic},
            timeout=float(params["max_seconds"]) + CLIENT_SLACK_S,
        )
        result["prefill_records_per_s"] = self._fill.get("records_per_s")
        _require(
            result["records"] == int(params["records"]) and result["errors"] == 0,
            f"consumed {result['records']} of {params['records']} ({result['errors']} errors)",
            result,
        )
        return Measurement({"records_per_s": result["records_per_s"], "mb_per_s": result["mb_per_s"]}, result)


LATENCY_METRICS = (
    MetricSpec("p50", "ms", False, "p50"),
    MetricSpec("p99", "ms", False, "p99"),
    MetricSpec("p99_9", "ms", False, "p99.9"),
)


class ProduceLatency(Scenario):
    name = "produce_latency"
    title = "Produce latency at a fixed rate"
    description = (
        "One producer process offers `rate` records/s (acks=all, linger.ms=0) on a deadline "
        "schedule; latency = ack time - scheduled send time (no coordinated omission), HDR histogram."
    )
    metrics = LATENCY_METRICS

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        topic = ctx.new_topic(self.name)
        bound = float(params["duration_s"]) + float(params["warmup_s"]) + CLIENT_SLACK_S
        try:
            result = run_client(
                "produce_latency",
                {**params, **client_params(target), "topic": topic, "max_seconds": bound},
                timeout=bound + CLIENT_SLACK_S,
            )
        finally:
            ctx.delete_topic(topic)
        _require(
            bool(result["complete"]) and result["errors"] == 0,
            f"sent {result['sent']}, acked {result['acked']}, errors {result['errors']}",
            result,
        )
        return Measurement({m.name: result[m.name] for m in self.metrics}, result)


class EndToEndLatency(Scenario):
    name = "e2e_latency"
    title = "End-to-end latency producer -> consumer"
    description = (
        "One process runs a paced producer thread (`rate` records/s, due time in the payload) and a "
        "consumer; latency = arrival - scheduled send time. The consumer's fetch.wait.max.ms bounds "
        "how long the broker parks an empty fetch, which dominates this number on Tansu."
    )
    metrics = (MetricSpec("p50", "ms", False, "p50"), MetricSpec("p99", "ms", False, "p99"))

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        topic = ctx.new_topic(self.name)
        bound = float(params["duration_s"]) + float(params["warmup_s"]) + CLIENT_SLACK_S
        try:
            result = run_client(
                "e2e_latency",
                {**params, **client_params(target), "topic": topic, "max_seconds": bound},
                timeout=bound + CLIENT_SLACK_S,
            )
        finally:
            ctx.delete_topic(topic)
        _require(
            bool(result["complete"]) and result["producer_errors"] == 0 and result["consumer_errors"] == 0,
            f"produced {result['produced']}, received {result['received']}, first error "
            f"{result['first_error']}",
            result,
        )
        return Measurement({m.name: result[m.name] for m in self.metrics}, result)


class ConnectionScaling(Scenario):
    name = "connection_scaling"
    title = "Connection scaling"
    description = (
        "A holder process opens `connections` raw TCP connections that each complete ApiVersions v0 + "
        "Metadata v1 (after SaslHandshake v1 + SaslAuthenticate PLAIN with an OIDC token on identity "
        "targets) and then stay idle; the target's RSS delta (its own process tree, restarted fresh and "
        "warmed by `warmup_connections` short-lived connections) per connection is reported, then light "
        "produce traffic (`light_rate` records/s, acks=all) runs beside them."
    )
    metrics = (
        MetricSpec("rss_kib_per_conn", "KiB", False, "RSS KiB/conn"),
        MetricSpec("light_p99", "ms", False, "light p99"),
    )
    fresh_target = True

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        pids = target.root_pids()
        topic = ctx.new_topic(self.name)
        count = int(params["connections"])
        light_bound = float(params["light_duration_s"]) + 0.5 + CLIENT_SLACK_S
        raw: dict[str, Any] = {"connections_requested": count}
        holder: ClientProcess | None = None
        try:
            # A fresh process pays one-off costs (lazy imports, first buffers) on its first connections;
            # a few short-lived ones first keep those out of the per-connection figure.
            # Identity targets: every idle connection authenticates (one token, fetched here, not timed).
            idle = {
                "bootstrap": target.bootstrap,
                "max_seconds": params["max_seconds"],
                "raw_sasl": target.raw_sasl(),
            }
            warm_up = int(params.get("warmup_connections", 20))
            if warm_up:
                run_client(
                    "idle_connections",
                    {**idle, "count": warm_up},
                    timeout=float(params["max_seconds"]) + CLIENT_SLACK_S,
                )
            raw["rss_before_kib"] = tree_rss_kib(pids)
            holder = ClientProcess("idle_connections", {**idle, "count": count})
            opened = holder.read_result(float(params["max_seconds"]) + CLIENT_SLACK_S)
            raw.update(
                opened=opened["opened"],
                open_seconds=opened["seconds"],
                open_error=opened["error"],
                authenticated=opened["authenticated"],
            )
            raw["rss_open_kib"] = tree_rss_kib(pids)
            light = run_client(
                "produce_latency",
                {
                    **client_params(target),
                    "topic": topic,
                    "rate": params["light_rate"],
                    "duration_s": params["light_duration_s"],
                    "warmup_s": float(params.get("light_warmup_s", 0.5)),
                    "record_size": params["record_size"],
                    "max_seconds": light_bound,
                },
                timeout=light_bound + CLIENT_SLACK_S,
            )
            raw["rss_loaded_kib"] = tree_rss_kib(pids)
            raw["light"] = _without_histogram(light)
            raw["light_hdr"] = light["hdr"]
        finally:
            if holder is not None:
                holder.finish()
            ctx.delete_topic(topic)
        raw["rss_after_close_kib"] = tree_rss_kib(pids)
        _require(bool(opened["complete"]), f"opened {opened['opened']} of {count}: {opened['error']}", raw)
        _require(bool(light["complete"]), f"light traffic acked {light['acked']} of {light['sent']}", raw)
        per_connection = (raw["rss_open_kib"] - raw["rss_before_kib"]) / opened["opened"]
        return Measurement({"rss_kib_per_conn": per_connection, "light_p99": light["p99"]}, raw)


class WorkerScaling(Scenario):
    name = "worker_scaling"
    title = "Worker scaling (Streamgate 1 vs 2 workers)"
    description = (
        "`producers` producer processes (each on its own topic) run the produce-throughput workload "
        "at once; aggregate records/s = all records / (last finish - first start). Streamgate is "
        "started with 1 and with 2 workers; direct is the reference. SO_REUSEPORT spreads "
        "connections by hash, so two workers are not guaranteed an equal share."
    )
    metrics = THROUGHPUT_METRICS

    def __init__(self) -> None:
        self._owned: list[Target] = []
        self.unavailable: dict[str, str] = {}

    def setup(self, ctx: BenchContext, targets: list[Target], params: dict[str, Any]) -> list[Target]:
        gateway = [t for t in targets if isinstance(t, StreamgateTarget) and t.mode == "passthrough"]
        if not gateway:
            return []
        chosen: list[Target] = [t for t in targets if isinstance(t, DirectTarget)]
        for workers in (1, 2):
            candidate = StreamgateTarget(
                f"streamgate-w{workers}", mode="passthrough", workers=workers, log_dir=ctx.log_dir
            )
            try:
                candidate.start(ctx.broker)
                ctx.probe(candidate.bootstrap, candidate.name, candidate.client_config())
            except (TargetUnavailable, ClientError) as exc:
                candidate.stop()
                self.unavailable[candidate.name] = str(exc)
                continue
            self._owned.append(candidate)
            chosen.append(candidate)
        return chosen if self._owned else []

    def teardown(self, ctx: BenchContext) -> None:
        for target in self._owned:
            target.stop()
        self._owned.clear()

    def measure(self, ctx: BenchContext, target: Target, params: dict[str, Any]) -> Measurement:
        producers = int(params["producers"])
        topics = [ctx.new_topic(f"{self.name}-{i}") for i in range(producers)]
        bound = float(params["max_seconds"]) + CLIENT_SLACK_S
        # Start together after every client has connected and warmed up (CLOCK_MONOTONIC is system-wide).
        start_at_ns = time.monotonic_ns() + int(float(params["start_delay_s"]) * 1e9)
        clients = [
            ClientProcess(
                "produce_throughput",
                {**params, **client_params(target), "topic": topic, "start_at_ns": start_at_ns},
            )
            for topic in topics
        ]
        try:
            results = [client.read_result(bound) for client in clients]
        finally:
            for client in clients:
                client.finish()
            for topic in topics:
                ctx.delete_topic(topic)
        raw: dict[str, Any] = {"per_producer": results}
        _require(all(r["complete"] for r in results), "a producer did not get every record acked", raw)
        span_s = (max(r["end_ns"] for r in results) - min(r["start_ns"] for r in results)) / 1e9
        records = sum(int(r["records"]) for r in results)
        total_bytes = sum(int(r["bytes"]) for r in results)
        raw.update(records=records, bytes=total_bytes, seconds=span_s)
        return Measurement({"records_per_s": records / span_s, "mb_per_s": total_bytes / span_s / 1e6}, raw)


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    # Connection scaling runs last: the proxies' upstream sockets it closes sit in TIME_WAIT for a minute,
    # which would make reserving a free port block for a new gateway fail right after it.
    for cls in (
        ProduceThroughput,
        ConsumeThroughput,
        ProduceLatency,
        EndToEndLatency,
        WorkerScaling,
        ConnectionScaling,
    )
}

# Short names accepted by --scenarios.
ALIASES = {
    "produce": "produce_throughput",
    "consume": "consume_throughput",
    "latency": "produce_latency",
    "e2e": "e2e_latency",
    "connections": "connection_scaling",
    "workers": "worker_scaling",
}

# Parameters per profile. Every scenario is bounded by a record count and by max_seconds.
# "smoke" exists for tests/bench: tiny counts that exercise every code path in seconds, not a measurement.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "rounds": 2,
        "produce_throughput": {"records": 200, "record_size": 1024, "max_seconds": 10.0},
        "consume_throughput": {"records": 200, "record_size": 1024, "max_seconds": 10.0},
        "produce_latency": {"rate": 400, "duration_s": 0.4, "warmup_s": 0.1, "record_size": 1024},
        "e2e_latency": {
            "rate": 200,
            "duration_s": 0.4,
            "warmup_s": 0.1,
            "record_size": 1024,
            "fetch_wait_max_ms": 10,
        },
        "connection_scaling": {
            "connections": 20,
            "warmup_connections": 2,
            "light_rate": 100,
            "light_duration_s": 0.3,
            "light_warmup_s": 0.1,
            "record_size": 1024,
            "max_seconds": 10.0,
        },
        "worker_scaling": {
            "producers": 2,
            "records": 200,
            "record_size": 1024,
            "max_seconds": 10.0,
            "start_delay_s": 1.5,
        },
    },
    "quick": {
        "rounds": 3,
        "produce_throughput": {"records": 60_000, "record_size": 1024, "max_seconds": 20.0},
        "consume_throughput": {"records": 60_000, "record_size": 1024, "max_seconds": 20.0},
        "produce_latency": {"rate": 1000, "duration_s": 1.5, "warmup_s": 0.3, "record_size": 1024},
        "e2e_latency": {
            "rate": 500,
            "duration_s": 1.2,
            "warmup_s": 0.3,
            "record_size": 1024,
            "fetch_wait_max_ms": 10,
        },
        "connection_scaling": {
            "connections": 1000,
            "light_rate": 200,
            "light_duration_s": 1.0,
            "record_size": 1024,
            "max_seconds": 30.0,
        },
        "worker_scaling": {
            "producers": 2,
            "records": 40_000,
            "record_size": 1024,
            "max_seconds": 20.0,
            "start_delay_s": 1.5,
        },
    },
    "full": {
        "rounds": 5,
        "produce_throughput": {"records": 300_000, "record_size": 1024, "max_seconds": 60.0},
        "consume_throughput": {"records": 300_000, "record_size": 1024, "max_seconds": 60.0},
        "produce_latency": {"rate": 1000, "duration_s": 10.0, "warmup_s": 1.0, "record_size": 1024},
        "e2e_latency": {
            "rate": 500,
            "duration_s": 8.0,
            "warmup_s": 1.0,
            "record_size": 1024,
            "fetch_wait_max_ms": 10,
        },
        "connection_scaling": {
            "connections": 1000,
            "light_rate": 200,
            "light_duration_s": 5.0,
            "record_size": 1024,
            "max_seconds": 60.0,
        },
        "worker_scaling": {
            "producers": 2,
            "records": 150_000,
            "record_size": 1024,
            "max_seconds": 60.0,
            "start_delay_s": 1.5,
        },
    },
}
