"""Kafka sink: produce audit events to a topic of the gateway's own cluster with confluent-kafka.

librdkafka's `produce()` only queues; delivery reports arrive through `flush()`/`poll()`, which block. Both
run on a single dedicated thread (an executor with one worker), so the event loop never blocks and the
producer is only ever touched by one thread at a time. A batch is delivered when every message of it was
acknowledged (`acks=all`); if any failed or `delivery_timeout` passed, the not yet delivered messages are
purged from librdkafka's queue and the rest of the batch is retried later: at-least-once, duplicates possible
after a failure. The idempotent producer (default) keeps per-partition order across librdkafka's own retries;
after a fatal idempotence error (the broker lost the producer id) a new producer is created.

Events are keyed `w<worker>`, so one worker's events stay in order on one partition. Extra librdkafka
settings (`security.protocol`, `sasl.*`, `ssl.*`: the gateway's own credentials) come from the config's
`options` (the `librdkafka` argument) and are
never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Unpack

from gateway.audit.sinks import AuditSink, SinkOptions, SinkUnavailable

log = logging.getLogger("streamgate.audit.kafka")


class KafkaSink(AuditSink):
    type_name = "kafka"

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topic: str,
        *,
        worker_id: int | str,
        client_id: str = "streamgate-audit",
        delivery_timeout: float = 10.0,
        idempotent: bool = True,
        librdkafka: dict[str, Any] | None = None,
        **options: Unpack[SinkOptions],
    ) -> None:
        super().__init__(name, **options)
        self.bootstrap = bootstrap
        self.topic = topic
        self.key = f"w{worker_id}".encode()
        self.delivery_timeout = delivery_timeout
        self._settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": idempotent,
            "message.timeout.ms": max(1, int(delivery_timeout * 1000)),
            "socket.timeout.ms": max(10, int(delivery_timeout * 1000)),
            "linger.ms": 5,
            "logger": log,  # librdkafka's own log lines go through Python logging, not raw stderr
            "error_cb": self._on_error,
            **(librdkafka or {}),
        }
        self._producer: Any = None
        self._fatal = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"KafkaSink(name={self.name!r}, bootstrap={self.bootstrap!r}, topic={self.topic!r})"

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = True

    async def _run_in_thread(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"audit-{self.name}")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _open(self) -> None:
        if self._producer is None:
            self._producer = await self._run_in_thread(self._create_producer)
        await self._run_in_thread(self._probe)

    def _create_producer(self) -> Any:
        from confluent_kafka import KafkaException, Producer

        try:
            return Producer(self._settings)
        except KafkaException as exc:
            # The error text can quote configuration values (credentials among them): report its name only.
            raise SinkUnavailable(
                f"cannot create the Kafka producer for {self.bootstrap}: {exc.args[0].name()} (check `options`)"
            ) from None

    def _probe(self) -> None:
        from confluent_kafka import KafkaException

        try:
            self._producer.list_topics(self.topic, timeout=self.delivery_timeout)
        except KafkaException as exc:
            raise SinkUnavailable(f"Kafka {self.bootstrap} unreachable: {exc.args[0].name()}") from None

    async def _deliver(self, batch: list[bytes]) -> None:
        if self._producer is None:
            self._producer = await self._run_in_thread(self._create_producer)
        await self._run_in_thread(self._produce_batch, batch)

    def _produce_batch(self, batch: list[bytes]) -> None:
        from confluent_kafka import KafkaException

        failures: list[str] = []
        delivered = 0
        fatal = False

        def on_delivery(err: Any, _msg: Any) -> None:
            nonlocal delivered, fatal
            if err is None:
                delivered += 1
            else:
                failures.append(err.name())
                fatal = fatal or err.fatal()

        producer = self._producer
        remaining = len(batch)
        try:
            for value in batch:
                while True:
                    try:
                        producer.produce(self.topic, value, key=self.key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.1)  # librdkafka's local queue is full: let it drain
            remaining = producer.flush(self.delivery_timeout + 1.0)
        except KafkaException as exc:
            error = exc.args[0]
            failures.append(error.name())
            fatal = fatal or error.fatal() or error.name() == "_FATAL"
        except Exception as exc:  # noqa: BLE001 - librdkafka surfaced something unexpected: start afresh
            failures.append(type(exc).__name__)
            fatal = True
        if not remaining and not failures:
            return
        if fatal or self._fatal:
            # An idempotent producer the broker no longer knows (e.g. a wiped cluster) cannot continue;
            # the next attempt starts a new producer with a new producer id.
            self._producer = None
            self._fatal = False
        else:
            # Drop what is still queued so a retry does not race an old copy; in-flight copies may still land.
            producer.purge(in_queue=True, in_flight=False)
            producer.poll(0)
        reason = failures[0] if failures else f"{remaining} not acknowledged"
        if reason == "_MSG_TIMED_OUT":
            reason = "timed out"
        # One key, one partition: delivery reports arrive in order, so the successes are a prefix.
        raise SinkUnavailable(f"Kafka topic {self.topic} at {self.bootstrap}: {reason}", delivered)

    async def _close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await self._run_in_thread(producer.flush, 1.0)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
