"""Syslog sink: RFC 5424 messages over UDP (RFC 5426) or TCP/TLS with octet-counting framing (RFC 6587).

Each event becomes one message:
`<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID kind=.. decision=.. sub=.. ...] {event JSON}`
- PRI = facility * 8 + severity; severity follows the outcome (denied/blocked: warning, held/throttled/
  masked: notice, error and lost-audit notices: error, the rest: informational);
- TIMESTAMP is the event's own `ts`, MSGID its `kind`, PROCID the worker's pid;
- the structured-data element carries the fields a SIEM filters on; MSG carries the complete event as JSON
  (optionally behind a UTF-8 BOM, as RFC 5424 asks; off by default because many collectors keep the BOM).

Delivery guarantees differ by transport, and are documented rather than papered over:
- UDP is fire-and-forget: a datagram to a port nobody listens on is lost, and the ICMP error that may come
  back cannot say which one; such errors are counted (`stats()["udp_errors"]`) and logged, the sink stays up.
  Use TCP for a complete record.
- TCP has no application acknowledgement: the sink checks that the peer has not closed the connection
  before each batch and reconnects (or goes down) if it has, but bytes handed to the kernel just before the
  peer died can still be lost. The file sink is the complete, verifiable record; syslog is the forwarder.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from typing import Unpack

import msgspec

from gateway.audit.sinks import AuditSink, SinkOptions, SinkUnavailable, describe_error
from gateway.netaddr import parse_host_port

log = logging.getLogger("streamgate.audit")

SEVERITY_ERROR = 3
SEVERITY_WARNING = 4
SEVERITY_NOTICE = 5
SEVERITY_INFO = 6

_DECISION_SEVERITY = {
    "error": SEVERITY_ERROR,
    "denied": SEVERITY_WARNING,
    "blocked": SEVERITY_WARNING,
    "held": SEVERITY_NOTICE,
    "throttled": SEVERITY_NOTICE,
    "masked": SEVERITY_NOTICE,
}
_KIND_SEVERITY = {
    "protocol_error": SEVERITY_WARNING,
    "audit_sink_state": SEVERITY_WARNING,
    "audit_spool_overflow": SEVERITY_ERROR,
    "audit_events_dropped": SEVERITY_ERROR,
}

_BOM = b"\xef\xbb\xbf"


class _PrincipalView(msgspec.Struct):
    sub: str | None = None


class _ResourceView(msgspec.Struct):
    topic: str | None = None
    partition: int | None = None


class _SyslogView(msgspec.Struct):
    """The few event fields the header and structured data need (the rest is skipped while decoding)."""

    ts: str = ""
    kind: str = ""
    decision: str | None = None
    rule: str | None = None
    api: str | None = None
    connection_id: str | None = None
    principal: _PrincipalView | None = None
    resource: _ResourceView | None = None


_view_decoder = msgspec.json.Decoder(_SyslogView)


def _header_token(value: str, limit: int) -> bytes:
    """A header field: printable US-ASCII without spaces (RFC 5424 PRINTUSASCII), NILVALUE when empty."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned.encode("ascii") if cleaned else b"-"


def _sd_value(value: str) -> bytes:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]").encode("utf-8")


def severity_of(kind: str, decision: str | None) -> int:
    if decision is not None and decision in _DECISION_SEVERITY:
        return _DECISION_SEVERITY[decision]
    return _KIND_SEVERITY.get(kind, SEVERITY_INFO)


def format_rfc5424(
    event_json: bytes,
    *,
    facility: int,
    hostname: str,
    app_name: str,
    procid: str,
    sd_id: str = "streamgate@32473",
    utf8_bom: bool = False,
) -> bytes:
    """One RFC 5424 message for an encoded event (no framing)."""
    view = _view_decoder.decode(event_json)
    pri = facility * 8 + severity_of(view.kind, view.decision)
    params: list[tuple[str, str]] = [("kind", view.kind)]
    if view.decision:
        params.append(("decision", view.decision))
    if view.principal is not None and view.principal.sub:
        params.append(("sub", view.principal.sub))
    if view.resource is not None:
        if view.resource.topic is not None:
            params.append(("topic", view.resource.topic))
        if view.resource.partition is not None:
            params.append(("partition", str(view.resource.partition)))
    if view.api:
        params.append(("api", view.api))
    if view.rule:
        params.append(("rule", view.rule))
    if view.connection_id:
        params.append(("conn", view.connection_id))
    sd = (
        b"["
        + _header_token(sd_id, 32)
        + b"".join(b' %s="%s"' % (name.encode("ascii"), _sd_value(value)) for name, value in params)
        + b"]"
    )
    header = b"<%d>1 %s %s %s %s %s " % (
        pri,
        _header_token(view.ts, 64),
        _header_token(hostname, 255),
        _header_token(app_name, 48),
        _header_token(procid, 128),
        _header_token(view.kind, 32),
    )
    return header + sd + b" " + (_BOM if utf8_bom else b"") + event_json


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: `<length> <message>`."""
    return b"%d %s" % (len(message), message)


class _StreamProtocol(asyncio.Protocol):
    """A write-only stream connection that notices the peer closing it and supports flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        pass  # syslog receivers do not answer; anything they send is ignored

    def eof_received(self) -> bool:
        self.lost = True
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.closed.done():
            self.closed.set_result(None)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("syslog connection lost"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        if self.lost:
            raise ConnectionResetError("syslog connection lost")
        if not self._paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.errors = 0
        self.last_error = ""

    def error_received(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = describe_error(exc)


class SyslogSink(AuditSink):
    type_name = "syslog"

    def __init__(
        self,
        name: str,
        address: str,
        *,
        protocol: str = "tcp",
        facility: int = 16,
        app_name: str = "streamgate",
        hostname: str = "-",
        procid: str = "-",
        sd_id: str = "streamgate@32473",
        utf8_bom: bool = False,
        tls_ca: str | None = None,
        tls_verify: bool = True,
        connect_timeout: float = 5.0,
        **options: Unpack[SinkOptions],
    ) -> None:
        super().__init__(name, **options)
        self.host, self.port = parse_host_port(address)
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self._format = functools.partial(
            format_rfc5424,
            facility=facility,
            hostname=hostname,
            app_name=app_name,
            procid=procid,
            sd_id=sd_id,
            utf8_bom=utf8_bom,
        )
        self._ssl: ssl.SSLContext | None = None
        if protocol == "tls":
            self._ssl = ssl.create_default_context(cafile=tls_ca)
            if not tls_verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._stream: _StreamProtocol | None = None
        self._datagram: asyncio.DatagramTransport | None = None
        self._datagram_protocol: _DatagramProtocol | None = None
        self._reported_udp_errors = 0

    def stats(self) -> dict[str, object]:
        stats = super().stats()
        stats["udp_errors"] = self._datagram_protocol.errors if self._datagram_protocol else 0
        return stats

    def format(self, event_json: bytes) -> bytes:
        return self._format(event_json)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.protocol == "udp":
            if self._datagram is None or self._datagram.is_closing():
                transport, protocol = await loop.create_datagram_endpoint(
                    _DatagramProtocol, remote_addr=(self.host, self.port)
                )
                self._datagram, self._datagram_protocol = transport, protocol
            return
        if self._stream is not None and not self._stream.lost:
            return
        await self._close()
        try:
            _, stream = await asyncio.wait_for(
                loop.create_connection(
                    _StreamProtocol,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise SinkUnavailable(
                f"cannot connect to syslog {self.host}:{self.port} over {self.protocol}: "
                f"{describe_error(exc)}"
            ) from None
        self._stream = stream

    async def _deliver(self, batch: list[bytes]) -> None:
        await self._open()
        messages = [self.format(event) for event in batch]
        if self.protocol == "udp":
            assert self._datagram is not None and self._datagram_protocol is not None
            for message in messages:
                self._datagram.sendto(message)
            errors = self._datagram_protocol.errors
            if errors != self._reported_udp_errors:
                log.warning(
                    "audit sink %s: %d UDP send errors so far (last: %s); UDP cannot confirm delivery",
                    self.name,
                    errors,
                    self._datagram_protocol.last_error,
                )
                self._reported_udp_errors = errors
            return
        stream = self._stream
        assert stream is not None and stream.transport is not None
        stream.transport.write(b"".join(octet_frame(m) for m in messages))
        try:
            await asyncio.wait_for(stream.drain(), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            await self._close()
            raise SinkUnavailable(f"syslog {self.host}:{self.port}: {describe_error(exc)}") from None

    async def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            stream.transport.close()
            try:
                # A TLS close waits for the peer's close_notify, which many collectors never send.
                await asyncio.wait_for(asyncio.shield(stream.closed), 1.0)
            except TimeoutError:
                stream.transport.abort()
        if self._datagram is not None:
            self._datagram.close()
            self._datagram = None
        await asyncio.sleep(0)  # let the transports run their close callbacks
