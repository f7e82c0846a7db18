"""Client workloads, each run in its own process: `python -m bench.e2e.clients WORKLOAD 'JSON params'`.

The machine has two cores shared by the client, the broker and the target, so the harness keeps its own
Python loop out of the client's process: a workload owns its interpreter and GIL, prints one line
`RESULT {json}` on stdout and exits. Every workload is bounded by a record count and `max_seconds`.

Latency workloads pace sends by a deadline schedule (send i is due at start + i/rate) and measure each
latency from the *scheduled* send time, not from when `produce()` actually ran. When the client or the
target stalls, the sends that should have happened during the stall are charged the stall, instead of
silently being sent later (coordinated omission).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from bench.e2e.kafka_wire import authenticated_handshake, handshake
from bench.e2e.stats import LatencyRecorder

RESULT_PREFIX = "RESULT "
Params = dict[str, Any]
# Params that carry credentials: the harness moves them from argv to this environment variable (JSON).
CREDENTIALS_ENV = "STREAMGATE_BENCH_CREDENTIALS"
CREDENTIAL_PARAMS = ("client_config", "raw_sasl")

# Payload of the end-to-end scenario starts with (scheduled send time in ns, kind); the rest is padding.
E2E_HEADER = struct.Struct(">qB")
KIND_WARMUP = 0
KIND_MEASURED = 1


def _quiet_logger(level: int = 3) -> dict[str, Any]:
    # librdkafka logs go to stderr, which the harness keeps for error messages; errors only.
    return {"log_level": level}


def _payload(size: int) -> bytes:
    # Random bytes: nothing on the path (or a later compression setting) gets an easy ride.
    return os.urandom(size)


def _producer(params: Params, extra: Params) -> Producer:
    """A producer for `params["bootstrap"]` with the target's client settings (SASL, if any) and `extra`."""
    conf: Params = {
        "bootstrap.servers": params["bootstrap"],
        "client.id": "streamgate-bench",
        **_quiet_logger(),
    }
    conf.update(params.get("client_config") or {})
    conf.update(extra)
    return Producer(conf)


def _warm_up(producer: Producer, topic: str, payload: bytes, timeout: float) -> None:
    """Connect, fetch metadata and complete one acked send before any clock starts."""
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    producer.produce(topic, payload, on_delivery=on_delivery)
    if producer.flush(timeout) != 0 or failures:
        raise RuntimeError(f"warm-up send to {topic} failed: {failures or 'not acknowledged in time'}")


def produce_throughput(params: Params) -> Params:
    """Send `records` records as fast as the producer takes them (batching on); time until all are acked."""
    records = int(params["records"])
    size = int(params.get("record_size", 1024))
    max_seconds = float(params.get("max_seconds", 60.0))
    topic = params["topic"]
    errors: list[str] = []

    def on_error(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    producer = _producer(
        params,
        {
            "linger.ms": int(params.get("linger_ms", 5)),
            "batch.size": int(params.get("batch_size", 1_000_000)),
            "acks": str(params.get("acks", "all")),
            "queue.buffering.max.messages": 200_000,
            "delivery.report.only.error": True,  # a Python call per acked record would be the bottleneck
            "on_delivery": on_error,
        },
    )
    payload = _payload(size)
    warmed = 0
    if params.get("warm_up", True):
        _warm_up(producer, topic, payload, timeout=min(max_seconds, 15.0))
        warmed = 1
    start_at_ns = params.get("start_at_ns")
    if start_at_ns is not None:
        # Several producers measured together start on one shared instant, after their own warm-up.
        wait_ns = int(start_at_ns) - time.monotonic_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
    start_ns = time.monotonic_ns()
    start = time.perf_counter()
    deadline = start + max_seconds
    sent = 0
    while sent < records:
        try:
            producer.produce(topic, payload)
        except BufferError:
            producer.poll(0.001)  # local queue full: let deliveries drain
            if time.perf_counter() > deadline:
                break
            continue
        sent += 1
        if sent & 1023 == 0:
            producer.poll(0)
            if time.perf_counter() > deadline:
                break
    unacknowledged = producer.flush(max(deadline - time.perf_counter(), 1.0))
    seconds = time.perf_counter() - start
    end_ns = time.monotonic_ns()
    delivered = sent - len(errors) - unacknowledged
    return {
        "records": delivered,
        "sent": sent,
        "warm_up_records": warmed,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "unacknowledged": unacknowledged,
        "bytes": delivered * size,
        "seconds": seconds,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "records_per_s": delivered / seconds if seconds > 0 else 0.0,
        "mb_per_s": delivered * size / seconds / 1e6 if seconds > 0 else 0.0,
        "complete": sent == records and unacknowledged == 0 and not errors,
    }


def _consumer(params: Params, extra: Params) -> Consumer:
    conf: Params = {
        "bootstrap.servers": params["bootstrap"],
        "group.id": f"streamgate-bench-{uuid.uuid4().hex[:8]}",  # required by the client; never joined
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        **_quiet_logger(),
    }
    conf.update(params.get("client_config") or {})
    conf.update(extra)
    return Consumer(conf)


def consume_throughput(params: Params) -> Params:
    """Read `records` records from the start of a pre-filled topic (assign, no group join)."""
    expected = int(params["records"])
    max_seconds = float(params.get("max_seconds", 60.0))
    partitions = int(params.get("partitions", 1))
    consumer = _consumer(params, {})
    consumer.assign([TopicPartition(params["topic"], p, OFFSET_BEGINNING) for p in range(partitions)])
    deadline = time.perf_counter() + max_seconds
    count = 0
    size_sum = 0
    errors: list[str] = []
    first_at: float | None = None
    try:
        while count < expected and time.perf_counter() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            if batch and first_at is None:
                # Timing starts at the first record: connecting and the first metadata round trip are
                # measured by the latency scenarios, not by this one.
                first_at = time.perf_counter()
            for message in batch:
                err = message.error()
                if err is not None:
                    errors.append(str(err))
                    continue
                count += 1
                size_sum += len(message.value() or b"")
        finished_at = time.perf_counter()
    finally:
        consumer.close()
    seconds = finished_at - first_at if first_at is not None else 0.0
    return {
        "records": count,
        "bytes": size_sum,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": seconds,
        "records_per_s": count / seconds if seconds > 0 else 0.0,
        "mb_per_s": size_sum / seconds / 1e6 if seconds > 0 else 0.0,
        "complete": count >= expected,
    }


class _Schedule:
    """Send i is due at start_ns + i * interval_ns; `wait(i)` sleeps until then and returns the due time."""

    def __init__(self, rate: float, start_ns: int) -> None:
        self.interval_ns = 1e9 / rate
        self.start_ns = start_ns

    def due_ns(self, index: int) -> int:
        return self.start_ns + int(index * self.interval_ns)

    def wait(self, index: int) -> int:
        due = self.due_ns(index)
        remaining = due - time.monotonic_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
        return due


def produce_latency(params: Params) -> Params:
    """Send at a fixed offered rate (acks=all, linger 0) and record scheduled-send -> ack latencies."""
    rate = float(params.get("rate", 5000))
    duration_s = float(params.get("duration_s", 5.0))
    warmup_s = float(params.get("warmup_s", 0.5))
    size = int(params.get("record_size", 1024))
    max_seconds = float(params.get("max_seconds", duration_s + warmup_s + 30.0))
    max_records = int(params.get("max_records", 1_000_000))
    topic = params["topic"]
    total = min(int(rate * (duration_s + warmup_s)), max_records)
    producer = _producer(
        params,
        {
            "acks": str(params.get("acks", "all")),
            "linger.ms": int(params.get("linger_ms", 0)),
        },
    )
    payload = _payload(size)
    _warm_up(producer, topic, payload, timeout=min(max_seconds, 15.0))

    recorder = LatencyRecorder()
    state = {"acked": 0, "errors": 0, "done": 0}
    first_error: list[str] = []

    def on_ack(due_ns: int, measured: bool, err: KafkaError | None, _msg: Message) -> None:
        now = time.monotonic_ns()  # runs in the poll thread, which wakes as soon as the ack is queued
        state["done"] += 1
        if err is not None:
            state["errors"] += 1
            if not first_error:
                first_error.append(str(err))
            return
        state["acked"] += 1
        if measured:
            recorder.record_ns(now - due_ns)

    stop_polling = threading.Event()

    def poll_loop() -> None:
        # A dedicated thread blocks in poll() with the GIL released, so an ack is timed when it arrives,
        # not when the pacing loop next gets around to polling.
        while not stop_polling.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll_loop, name="ack-poller", daemon=True)
    poller.start()
    schedule = _Schedule(rate, time.monotonic_ns() + 1_000_000)
    warmup_until = schedule.start_ns + int(warmup_s * 1e9)
    hard_deadline = time.monotonic() + max_seconds
    sent = 0
    measured = 0
    max_lag_ns = 0
    try:
        for index in range(total):
            due = schedule.wait(index)
            lag = time.monotonic_ns() - due
            max_lag_ns = max(max_lag_ns, lag)
            is_measured = due >= warmup_until
            while True:
                try:
                    producer.produce(topic, payload, on_delivery=functools.partial(on_ack, due, is_measured))
                    break
                except BufferError:
                    time.sleep(0.0005)
            sent += 1
            measured += is_measured
            if time.monotonic() > hard_deadline:
                break
        send_seconds = (time.monotonic_ns() - schedule.start_ns) / 1e9
        while state["done"] < sent and time.monotonic() < hard_deadline:
            time.sleep(0.005)
    finally:
        stop_polling.set()
        poller.join()
    # Anything still unacknowledged is flushed here; its callbacks no longer race the poll thread.
    unacknowledged = producer.flush(5.0)
    summary = recorder.summary_ms()
    return {
        **summary,
        "sent": sent,
        "measured_sent": measured,
        "acked": state["acked"],
        "errors": state["errors"],
        "first_error": first_error[0] if first_error else None,
        "unacknowledged": unacknowledged,
        "samples": recorder.count,
        "clamped": recorder.clamped,
        "rate": rate,
        "achieved_rate": sent / send_seconds if send_seconds > 0 else 0.0,
        "max_send_lag_ms": max_lag_ns / 1e6,
        "hdr": recorder.encode(),
        "complete": sent == total and state["acked"] == sent,
    }


def e2e_latency(params: Params) -> Params:
    """Producer thread at a fixed rate stamps each record with its due time; the consumer records arrival."""
    rate = float(params.get("rate", 2000))
    duration_s = float(params.get("duration_s", 5.0))
    warmup_s = float(params.get("warmup_s", 0.5))
    size = max(int(params.get("record_size", 1024)), E2E_HEADER.size)
    max_seconds = float(params.get("max_seconds", duration_s + warmup_s + 30.0))
    topic = params["topic"]
    measured_total = int(rate * duration_s)
    warmup_total = int(rate * warmup_s)
    padding = _payload(size - E2E_HEADER.size)

    producer_errors: list[str] = []

    def on_error(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            producer_errors.append(str(err))

    producer = _producer(
        params,
        {
            "acks": str(params.get("acks", "all")),
            "linger.ms": int(params.get("linger_ms", 0)),
            "delivery.report.only.error": True,
            "on_delivery": on_error,
        },
    )
    consumer = _consumer(params, {"fetch.wait.max.ms": int(params.get("fetch_wait_max_ms", 100))})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    consumer_ready = threading.Event()
    stop = threading.Event()
    produced = {"warmup": 0, "measured": 0}
    hard_deadline = time.monotonic() + max_seconds

    def send(kind: int, due_ns: int) -> None:
        value = E2E_HEADER.pack(due_ns, kind) + padding
        while True:
            try:
                producer.produce(topic, value)
                return
            except BufferError:
                producer.poll(0.001)

    def produce_loop() -> None:
        # Until the consumer has seen a record, ping every 10 ms: connections and the first fetch settle.
        while not consumer_ready.is_set() and not stop.is_set() and time.monotonic() < hard_deadline:
            send(KIND_WARMUP, time.monotonic_ns())
            producer.poll(0)
            consumer_ready.wait(0.01)
        schedule = _Schedule(rate, time.monotonic_ns() + 1_000_000)
        for index in range(warmup_total + measured_total):
            if stop.is_set() or time.monotonic() > hard_deadline:
                break
            due = schedule.wait(index)
            kind = KIND_WARMUP if index < warmup_total else KIND_MEASURED
            send(kind, due)
            produced["measured" if kind == KIND_MEASURED else "warmup"] += 1
            if index & 63 == 0:
                producer.poll(0)
        producer.flush(5.0)

    producer_thread = threading.Thread(target=produce_loop, name="paced-producer", daemon=True)
    producer_thread.start()
    recorder = LatencyRecorder()
    received = 0
    consume_errors: list[str] = []
    try:
        while time.monotonic() < hard_deadline:
            if received >= measured_total:
                break
            if not producer_thread.is_alive() and received >= produced["measured"]:
                break
            message = consumer.poll(0.1)
            if message is None:
                continue
            now = time.monotonic_ns()  # CLOCK_MONOTONIC is system-wide, so due times compare directly
            err = message.error()
            if err is not None:
                consume_errors.append(str(err))
                continue
            due_ns, kind = E2E_HEADER.unpack_from(message.value() or b"", 0)
            if kind == KIND_WARMUP:
                consumer_ready.set()
                continue
            received += 1
            recorder.record_ns(now - due_ns)
    finally:
        stop.set()
        producer_thread.join(10.0)
        consumer.close()
    all_errors = producer_errors + consume_errors
    return {
        **recorder.summary_ms(),
        "rate": rate,
        "produced": produced["measured"],
        "received": received,
        "samples": recorder.count,
        "producer_errors": len(producer_errors),
        "consumer_errors": len(consume_errors),
        "first_error": all_errors[0] if all_errors else None,
        "hdr": recorder.encode(),
        "complete": received == measured_total and produced["measured"] == measured_total,
    }


def idle_connections(params: Params) -> Params:
    """Open `count` connections that each do ApiVersions + Metadata, report, then hold them until told.

    Prints its RESULT line once all connections are open, then waits for a line (or EOF) on stdin before
    closing them, so the harness can sample the target's memory and run light traffic in between. With
    `raw_sasl` ({"username", "password"}) each connection authenticates (SASL PLAIN) before its Metadata.
    """
    host, port = params["bootstrap"].rsplit(":", 1)
    count = int(params["count"])
    sasl = params.get("raw_sasl")
    max_seconds = float(params.get("max_seconds", 60.0))
    deadline = time.monotonic() + max_seconds
    sockets: list[socket.socket] = []
    error: str | None = None
    start = time.monotonic()
    try:
        for index in range(count):
            if time.monotonic() > deadline:
                error = f"opening stopped at the {max_seconds:.0f}s bound"
                break
            sock = socket.create_connection((host, int(port)), timeout=10.0)
            # Close with a reset: a thousand client-side TIME_WAIT sockets would linger for a minute and
            # block later port-range reservations on this machine.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sockets.append(sock)
            if sasl:
                authenticated_handshake(sock, sasl["username"], sasl["password"])
            else:
                handshake(sock, first_correlation_id=1 + 2 * index)
    except (OSError, RuntimeError) as exc:
        error = f"connection {len(sockets)}: {exc}"
    result = {
        "opened": len(sockets),
        "requested": count,
        "seconds": time.monotonic() - start,
        "error": error,
        "authenticated": bool(sasl),
        "complete": error is None and len(sockets) == count,
    }
    _emit(result)
    sys.stdin.readline()
    for sock in sockets:
        sock.close()
    return result


def probe(params: Params) -> Params:
    """One acknowledged send through the target: proves the whole path (bootstrap and node ports) works."""
    producer = _producer(params, {"acks": "all"})
    _warm_up(producer, params["topic"], b"probe", timeout=float(params.get("max_seconds", 15.0)))
    return {"ok": True, "complete": True}


WORKLOADS: dict[str, Callable[[Params], Params]] = {
    "produce_throughput": produce_throughput,
    "consume_throughput": consume_throughput,
    "produce_latency": produce_latency,
    "e2e_latency": e2e_latency,
    "idle_connections": idle_connections,
    "probe": probe,
}


def _emit(result: Params) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in WORKLOADS:
        sys.stderr.write(f"usage: python -m bench.e2e.clients {{{','.join(WORKLOADS)}}} 'JSON params'\n")
        return 2
    params = json.loads(argv[2])
    credentials = os.environ.get(CREDENTIALS_ENV)
    if credentials:
        params.update(json.loads(credentials))
    result = WORKLOADS[argv[1]](params)
    if argv[1] != "idle_connections":  # that one reports before holding its connections
        _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
