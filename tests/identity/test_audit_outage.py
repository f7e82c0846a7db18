"""An audit sink that is down: `block` refuses traffic, `spool` serves it and later delivers every event."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.devstack.processes import free_port
from tests.helpers.gateway import start_gateway
from tests.identity.conftest import oidc_conf, read_audit, write_identity_config
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration


class Collector:
    """A real HTTP endpoint receiving the generic-JSON audit batches; can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                batch = json.loads(body)
                with collector.lock:
                    collector.events.extend(batch if isinstance(batch, list) else [batch])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def produce_events(self, topic: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("api") == "Produce" and e.get("resource", {}).get("topic") == topic]


def _gateway(tansu, idp, tmp_path, on_failure: str, port: int):
    audit = tmp_path / "audit"
    audit.mkdir()
    spool = f", spool: {{path: {tmp_path}/spool}}" if on_failure == "spool" else ""
    extra = (f"    - {{type: http, url: \"http://127.0.0.1:{port}/events\", format: json, batch_size: 5, "
             f"flush_interval: 0.1, retry_max: 0.5, on_failure: {on_failure}{spool}}}\n")
    cfg = write_identity_config(tmp_path / "gw.yaml", idp.extra["issuer"], audit, extra_audit=extra)
    return start_gateway(tansu.address, tmp_path, workers=1, config=cfg), audit


def _produce(conf: dict, topic: str, n: int) -> list[str]:
    errors: list[str] = []
    p = Producer({**conf, "linger.ms": 0, "message.timeout.ms": 8000, "retries": 0})
    for i in range(n):
        p.produce(topic, value=f"r{i}".encode(), on_delivery=lambda e, m: errors.append(e.name()) if e else None)
        p.flush(10)
    return errors


def test_block_mode_refuses_while_the_sink_is_down(tansu, idp, tmp_path):
    port = free_port()
    collector = Collector(port)
    collector.start()
    gw, audit = _gateway(tansu, idp, tmp_path, "block", port)
    try:
        admin = AdminClient(oidc_conf(gw, idp, "admin-svc"))
        topic = unique_topic("payments.blk")
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        writer = oidc_conf(gw, idp, "payments-svc")
        assert _produce(writer, topic, 3) == []
        collector.stop()
        # the sink notices on its next delivery attempt; from then on requests are refused, and recorded
        deadline = time.monotonic() + 20
        refused = []
        while time.monotonic() < deadline and not refused:
            errors = _produce(writer, topic, 1)
            refused = [e for e in errors if e != "NO_ERROR"]
        assert refused, "traffic kept flowing while the block-mode audit sink was down"
        assert any(e.get("reason", "").startswith("audit trail unavailable") for e in read_audit(audit))
        collector.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _produce(writer, topic, 1):
            pass
        assert _produce(writer, topic, 2) == [], "traffic did not resume when the sink came back"
    finally:
        collector.stop()
        assert gw.stop() == 0


def test_spool_mode_loses_nothing_across_an_outage(tansu, idp, tmp_path):
    port = free_port()
    collector = Collector(port)  # down from the start
    gw, audit = _gateway(tansu, idp, tmp_path, "spool", port)
    try:
        admin = AdminClient(oidc_conf(gw, idp, "admin-svc"))
        topic = unique_topic("payments.spl")
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        assert _produce(oidc_conf(gw, idp, "payments-svc"), topic, 20) == [], "spool mode must keep serving"
        file_events = [e for e in read_audit(audit)
                       if e.get("api") == "Produce" and e.get("resource", {}).get("topic") == topic]
        assert sum(e["record_count"] for e in file_events) == 20
        collector.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(collector.produce_events(topic)) < len(file_events):
            time.sleep(0.1)
        received = collector.produce_events(topic)
        assert sorted(e["offsets"]["first"] for e in received) == sorted(e["offsets"]["first"] for e in file_events)
    finally:
        collector.stop()
        assert gw.stop() == 0
