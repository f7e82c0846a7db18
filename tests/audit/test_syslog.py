"""Syslog sink against real UDP and TCP listeners that parse RFC 5424 (and RFC 6587 octet-counted frames)."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.dispatcher import AuditDispatcher
from gateway.audit.syslog import SyslogSink, format_rfc5424
from gateway.enforcement.audit import AuditEvent, Principal, Resource, encode_event
from tests.audit.helpers import Counter, decision, run, seq_numbers

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA [SP MSG]
_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    rb"(?P<msgid>\S+) (?P<rest>.*)$",
    re.DOTALL,
)
_SD_ELEMENT = re.compile(rb'\[(?P<id>[^ =\]"]+)(?P<params>(?: [^ =\]"]+="(?:[^"\\\]]|\\.)*")*)\]')
_SD_PARAM = re.compile(rb' ([^ =\]"]+)="((?:[^"\\\]]|\\.)*)"')
_BOM = b"\xef\xbb\xbf"


def parse_rfc5424(message: bytes) -> dict[str, Any]:
    """An independent RFC 5424 parser: header fields, structured data, and MSG (as JSON)."""
    m = _HEADER.match(message)
    assert m, f"not RFC 5424: {message[:80]!r}"
    rest = m.group("rest")
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while rest.startswith(b"["):
            element = _SD_ELEMENT.match(rest)
            assert element, f"bad structured data: {rest[:80]!r}"
            sd[element.group("id").decode()] = {
                k.decode(): re.sub(rb"\\(.)", rb"\1", v).decode()
                for k, v in _SD_PARAM.findall(element.group("params"))
            }
            rest = rest[element.end() :]
    assert rest.startswith(b" "), "MSG must follow structured data after one space"
    msg = rest[1:]
    bom = msg.startswith(_BOM)
    return {
        "pri": int(m.group("pri")),
        "version": int(m.group("version")),
        "ts": m.group("ts").decode(),
        "host": m.group("host").decode(),
        "app": m.group("app").decode(),
        "procid": m.group("procid").decode(),
        "msgid": m.group("msgid").decode(),
        "sd": sd,
        "bom": bom,
        "event": json.loads(msg[3:] if bom else msg),
    }


class UdpListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.messages.extend([data])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class TcpListener:
    """Accepts connections and splits octet-counted frames (`<len> <msg>`) strictly by their length."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.messages = Counter()
        self.connections = 0
        self.handshake_failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._clients.append(conn)
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn: socket.socket) -> None:
        if self.tls is not None:
            conn.settimeout(5)
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1  # e.g. the client refused our certificate
                return
            self._clients.append(conn)
        conn.settimeout(0.2)
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            frames = []
            while True:
                space = buffer.find(b" ")
                if space < 0:
                    break
                length = int(buffer[:space])  # a non-digit prefix would be a framing error: let it raise
                if len(buffer) < space + 1 + length:
                    break
                frames.append(buffer[space + 1 : space + 1 + length])
                buffer = buffer[space + 1 + length :]
            if frames:
                self.messages.extend(frames)

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        for c in self._clients:
            c.close()
        self.server.close()


@pytest.fixture
def udp_listener() -> Iterator[UdpListener]:
    listener = UdpListener()
    yield listener
    listener.close()


@pytest.fixture
def tcp_listener() -> Iterator[TcpListener]:
    listener = TcpListener()
    yield listener
    listener.close()


def test_format_is_rfc5424_with_structured_data_and_json_msg() -> None:
    event = AuditEvent(
        ts="2024-05-01T12:00:00.123Z",
        kind="decision",
        decision="denied",
        rule='r"1]',
        principal=Principal(sub="alice"),
        resource=Resource(topic="payments.eu", partition=2),
        api="Produce",
        connection_id="c-9",
        reason="no rule allows produce",
    )
    parsed = parse_rfc5424(
        format_rfc5424(
            encode_event(event),
            facility=10,
            hostname="gw-1",
            app_name="streamgate",
            procid="4242",
            utf8_bom=True,
        )
    )
    assert parsed["pri"] == 10 * 8 + 4  # authpriv.warning for a denial
    assert (
        parsed["version"],
        parsed["ts"],
        parsed["host"],
        parsed["app"],
        parsed["procid"],
        parsed["msgid"],
    ) == (1, "2024-05-01T12:00:00.123Z", "gw-1", "streamgate", "4242", "decision")
    assert parsed["sd"] == {
        "streamgate@32473": {
            "kind": "decision",
            "decision": "denied",
            "sub": "alice",
            "topic": "payments.eu",
            "partition": "2",
            "api": "Produce",
            "rule": 'r"1]',
            "conn": "c-9",
        }
    }
    assert parsed["bom"] and parsed["event"]["reason"] == "no rule allows produce"


@pytest.mark.parametrize(
    ("decision_", "severity"), [("allowed", 6), ("held", 5), ("blocked", 4), ("error", 3)]
)
def test_severity_follows_the_outcome(decision_: str, severity: int) -> None:
    raw = encode_event(AuditEvent(ts="2024-05-01T12:00:00.000Z", kind="decision", decision=decision_))  # type: ignore[arg-type]
    assert parse_rfc5424(format_rfc5424(raw, facility=16, hostname="h", app_name="a", procid="1"))["pri"] == (
        16 * 8 + severity
    )


def test_udp_listener_receives_every_event(udp_listener: UdpListener) -> None:
    async def scenario() -> None:
        sink = SyslogSink(
            "syslog", f"127.0.0.1:{udp_listener.port}", protocol="udp", hostname="gw-test", procid="77"
        )
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        for n in range(20):
            assert dispatcher.emit(decision(n))
        await udp_listener.messages.wait(lambda items: len(items) == 20)
        await dispatcher.aclose()

    run(scenario)
    parsed = [parse_rfc5424(m) for m in udp_listener.messages.items]
    assert sorted(int(p["event"]["connection_id"][1:]) for p in parsed) == list(range(20))  # UDP may reorder
    assert all(
        p["host"] == "gw-test" and p["msgid"] == "decision" and p["sd"]["streamgate@32473"]["sub"] == "alice"
        for p in parsed
    )


def test_tcp_listener_receives_octet_counted_frames_in_order(tcp_listener: TcpListener) -> None:
    async def scenario() -> None:
        sink = SyslogSink("syslog", f"127.0.0.1:{tcp_listener.port}", protocol="tcp", hostname="gw-test")
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        for n in range(300):
            assert dispatcher.emit(decision(n))
            if n % 50 == 0:
                await __import__("asyncio").sleep(0)
        await tcp_listener.messages.wait(lambda items: len(items) == 300)
        await dispatcher.aclose()

    run(scenario)
    events = [json.dumps(parse_rfc5424(m)["event"]).encode() for m in tcp_listener.messages.items]
    assert seq_numbers(events) == list(range(300))
    assert tcp_listener.connections == 1  # one kept connection


def test_tcp_outage_blocks_and_recovery_delivers_what_was_accepted() -> None:
    first = TcpListener()
    port = first.port
    second: TcpListener | None = None

    async def scenario() -> None:
        nonlocal second
        sink = SyslogSink("syslog", f"127.0.0.1:{port}", protocol="tcp", retry_initial=0.05, retry_max=0.1)
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        assert dispatcher.emit(decision(0))
        await first.messages.wait(lambda items: len(items) == 1)
        first.close()  # the collector goes away: connection closed, port refused

        assert dispatcher.emit(decision(1))
        await sink.wait_health(False, timeout=5)
        assert not dispatcher.emit(decision(2))

        second = TcpListener(port)
        await sink.wait_health(True, timeout=10)
        assert dispatcher.emit(decision(3))
        await second.messages.wait(
            lambda items: 3 in seq_numbers([json.dumps(parse_rfc5424(m)["event"]).encode() for m in items])
        )
        await dispatcher.aclose()

    try:
        run(scenario)
        assert second is not None
        got = seq_numbers([json.dumps(parse_rfc5424(m)["event"]).encode() for m in second.messages.items])
        assert got == [1, 3]
    finally:
        first.close()
        if second is not None:
            second.close()


def test_tls_listener_receives_frames_over_a_verified_connection(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    listener = TcpListener(tls=server_context)

    async def scenario() -> None:
        sink = SyslogSink("syslog", f"127.0.0.1:{listener.port}", protocol="tls", tls_ca=str(cert))
        dispatcher = AuditDispatcher([sink], worker_id=1)
        await dispatcher.start()
        assert sink.healthy
        for n in range(10):
            assert dispatcher.emit(decision(n))
        await listener.messages.wait(lambda items: len(items) == 10)
        await dispatcher.aclose()

    try:
        run(scenario)
    finally:
        listener.close()
    events = [json.dumps(parse_rfc5424(m)["event"]).encode() for m in listener.messages.items]
    assert seq_numbers(events) == list(range(10))


def test_tls_with_an_untrusted_certificate_is_down(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    listener = TcpListener(tls=server_context)

    async def scenario() -> None:
        sink = SyslogSink("syslog", f"127.0.0.1:{listener.port}", protocol="tls")  # system trust store only
        dispatcher = AuditDispatcher([sink], worker_id=1, close_timeout=0.5)
        await dispatcher.start()
        assert not sink.healthy and "SSL" in sink.last_error
        assert not dispatcher.emit(decision(0))
        await dispatcher.aclose()

    try:
        run(scenario)
    finally:
        listener.close()
    assert listener.messages.items == [] and listener.handshake_failures >= 1
