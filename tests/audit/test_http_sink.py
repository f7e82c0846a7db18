"""HTTP sink against a real local HTTP server (stdlib http.server in a thread): both formats, batching,
an outage under `block` and under `spool`, and a worker killed with events still undelivered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.dispatcher import AuditDispatcher
from gateway.audit.http import HttpSink
from gateway.audit.spool import Spool
from gateway.enforcement.audit import AuditEvent
from tests.audit.helpers import Counter, decision, run, seq_numbers

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hec-token-5f1e9c"


class Collector:
    """A real HTTP server recording each POST (path, headers, body); `status` chooses the answer."""

    def __init__(self, port: int = 0) -> None:
        collector = self
        self.requests: list[dict[str, Any]] = []
        self.bodies = Counter()
        self.status = 200
        self.connections: set[socket.socket] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                collector.connections.add(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = collector.status
                if status == 200:
                    collector.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    collector.bodies.extend([body])
                reply = b'{"text":"Success","code":0}' if status == 200 else b'{"text":"busy"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/collector/event"

    def events_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for body in self.bodies.items:
            out.extend(json.loads(body))
        return out

    def close(self) -> None:
        """Stop listening and cut kept-alive connections too: a real outage, not just a closed port."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)


def hec_objects(body: bytes) -> list[dict[str, Any]]:
    """Split a HEC batch: JSON objects concatenated without separators."""
    decoder = json.JSONDecoder()
    text, position, out = body.decode(), 0, []
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        out.append(obj)
    return out


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def raw_events(collector: Collector) -> list[bytes]:
    return [json.dumps(e).encode() for e in collector.events_json()]


def test_generic_json_batches_by_size_and_interval(collector: Collector) -> None:
    async def scenario() -> None:
        sink = HttpSink("http", collector.url, fmt="json", token=TOKEN, batch_size=10, flush_interval=0.2)
        dispatcher = AuditDispatcher([sink], worker_id=2)
        await dispatcher.start()
        for n in range(25):
            assert dispatcher.emit(decision(n))
        await collector.bodies.wait(lambda bodies: len(bodies) == 3)
        # Three events in three loop iterations, within one flush interval: one request.
        for n in range(25, 28):
            assert dispatcher.emit(decision(n))
            await asyncio.sleep(0.01)
        await collector.bodies.wait(lambda bodies: len(bodies) == 4)
        await dispatcher.aclose()

    run(scenario)
    sizes = [len(json.loads(body)) for body in collector.bodies.items]
    assert sizes == [10, 10, 5, 3]
    assert seq_numbers(raw_events(collector)) == list(range(28))
    first = collector.requests[0]
    assert first["path"] == "/services/collector/event"
    assert first["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert first["headers"]["Content-Type"] == "application/json"
    assert collector.events_json()[0]["worker"] == 2


def test_splunk_hec_format(collector: Collector) -> None:
    async def scenario() -> None:
        sink = HttpSink(
            "hec",
            collector.url,
            fmt="splunk_hec",
            token=TOKEN,
            batch_size=5,
            flush_interval=0.05,
            sourcetype="streamgate:audit",
            index="security",
            hostname="gw-7",
        )
        dispatcher = AuditDispatcher([sink], worker_id=1, clock=lambda: 1714564800.25)
        await dispatcher.start()
        for n in range(7):
            dispatcher.emit(decision(n))
        await collector.bodies.wait(lambda bodies: sum(len(hec_objects(b)) for b in bodies) == 7)
        await dispatcher.aclose()

    run(scenario)
    assert [r["headers"]["Authorization"] for r in collector.requests] == [f"Splunk {TOKEN}"] * 2
    objects = [obj for body in collector.bodies.items for obj in hec_objects(body)]
    assert [len(hec_objects(b)) for b in collector.bodies.items] == [5, 2]
    assert {(o["time"], o["host"], o["source"], o["sourcetype"], o["index"]) for o in objects} == {
        (1714564800.25, "gw-7", "streamgate", "streamgate:audit", "security")
    }
    assert [o["event"]["connection_id"] for o in objects] == [f"c{n}" for n in range(7)]


def test_block_mode_outage_refuses_until_the_server_returns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamgate.audit")
    first = Collector()
    port = first.port
    holder: dict[str, Collector] = {}

    async def scenario() -> None:
        sink = HttpSink(
            "http",
            first.url,
            token=TOKEN,
            batch_size=50,
            flush_interval=0.0,
            retry_initial=0.05,
            retry_max=0.1,
            timeout=2,
        )
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        assert dispatcher.emit(decision(0))
        await first.bodies.wait(lambda b: len(b) == 1)
        await asyncio.to_thread(first.close)  # connection refused from now on

        assert dispatcher.emit(decision(1))  # accepted: the outage is not known yet
        await sink.wait_health(False, timeout=5)
        refused = [n for n in range(2, 6) if not dispatcher.emit(decision(n))]
        assert refused == [2, 3, 4, 5]
        dispatcher.record(
            AuditEvent(kind="decision", decision="error", reason="audit sink down", connection_id="c50")
        )

        holder["second"] = Collector(port)
        await sink.wait_health(True, timeout=10)
        assert dispatcher.emit(decision(6))
        await holder["second"].bodies.wait(lambda b: 6 in seq_numbers(raw_events(holder["second"])))
        await dispatcher.aclose()

    try:
        run(scenario)
        assert seq_numbers(raw_events(holder["second"])) == [1, 50, 6]
        assert any("is down" in r.getMessage() for r in caplog.records)
        assert all(TOKEN not in r.getMessage() for r in caplog.records)
    finally:
        first.close()
        if "second" in holder:
            holder["second"].close()


def test_spool_mode_outage_loses_nothing_and_keeps_order(collector: Collector, tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=16384)
        sink = HttpSink(
            "http",
            collector.url,
            batch_size=20,
            flush_interval=0.01,
            on_failure="spool",
            spool=spool,
            retry_initial=0.05,
            retry_max=0.1,
        )
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        emitted = 0
        for n in range(30):
            assert dispatcher.emit(decision(n))
            emitted += 1
        await collector.bodies.wait(lambda b: len(seq_numbers(raw_events(collector))) == 30)

        collector.status = 503  # the collector is overloaded: every POST fails
        for n in range(30, 60):
            assert dispatcher.emit(decision(n))
            emitted += 1
        await sink.wait_health(False, timeout=5)
        for n in range(60, 300):
            assert dispatcher.emit(decision(n)), "spool mode must not refuse while the spool has room"
            emitted += 1
            if n % 40 == 0:
                await asyncio.sleep(0.01)
        assert spool.pending_count > 0

        collector.status = 200
        await collector.bodies.wait(lambda b: len(seq_numbers(raw_events(collector))) == emitted, timeout=20)
        await dispatcher.aclose()

    run(scenario)
    assert seq_numbers(raw_events(collector)) == list(range(300))


@pytest.mark.integration
def test_write_ahead_spool_survives_kill_9_of_the_worker(collector: Collector, tmp_path: Path) -> None:
    """A worker with a write-ahead spool accepts events while its HTTP sink is down and is killed with
    SIGKILL; the next worker with the same id replays every event once the collector is back."""
    spool_dir = tmp_path / "spool" / "w1" / "http1"
    collector.status = 503
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from gateway.audit.dispatcher import AuditDispatcher
        from gateway.audit.http import HttpSink
        from gateway.audit.spool import Spool
        from tests.audit.helpers import decision
        async def main():
            sink = HttpSink("http1", {collector.url!r}, on_failure="spool", retry_initial=0.05, retry_max=0.1,
                            spool=Spool({str(spool_dir)!r}, 1 << 20, 16384), write_ahead=True)
            d = AuditDispatcher([sink], 1)
            await d.start()
            for n in range(100):
                assert d.emit(decision(n))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            print("emitted", flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"emitted\n"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert collector.bodies.items == []

    collector.status = 200

    async def successor() -> None:
        sink = HttpSink(
            "http1",
            collector.url,
            on_failure="spool",
            spool=Spool(spool_dir, 1 << 20, 16384),
            write_ahead=True,
        )
        dispatcher = AuditDispatcher([sink], 1)
        await dispatcher.start()
        await collector.bodies.wait(lambda b: len(seq_numbers(raw_events(collector))) >= 100)
        await dispatcher.aclose()

    run(successor)
    assert seq_numbers(raw_events(collector)) == list(range(100))
