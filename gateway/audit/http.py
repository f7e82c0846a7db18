"""HTTP sink: batched POSTs of audit events, Splunk HEC-compatible or a generic JSON array.

Formats:
- `splunk_hec`: `Authorization: Splunk <token>`, body = concatenated
  `{"time": <epoch seconds>, "host": .., "source": .., "sourcetype": .., ["index": ..,] "event": {...}}`
  objects (HEC's batch form), `time` taken from the event's own `ts`;
- `json`: body = `[event, event, ...]`, `Authorization: Bearer <token>` when a token is configured.

A batch counts as delivered only on a 2xx answer; anything else (connection refused, timeout, 4xx, 5xx) is a
failure and the whole batch is retried later, so a receiver that stored part of a failed batch may see
duplicates (at-least-once). The client is a small HTTP/1.1 implementation on asyncio streams with a kept-alive
connection (no extra dependency); a kept-alive connection the server closed while idle is retried once on a
fresh one before the attempt counts as failed. The token never appears in logs, errors or reprs; error
messages name the URL without its query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from datetime import datetime
from typing import Unpack

import msgspec

from gateway.audit.sinks import AuditSink, SinkOptions, SinkUnavailable, describe_error

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024 * 1024


class _TsView(msgspec.Struct):
    ts: str = ""


_ts_decoder = msgspec.json.Decoder(_TsView)


def epoch_of(ts: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (None when it does not parse)."""
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def splunk_hec_body(
    events: list[bytes], *, host: str, source: str, sourcetype: str, index: str | None
) -> bytes:
    """HEC batch: one JSON object per event, concatenated without separators."""
    meta = b'"host":%s,"source":%s,"sourcetype":%s,' % (
        msgspec.json.encode(host),
        msgspec.json.encode(source),
        msgspec.json.encode(sourcetype),
    )
    if index:
        meta += b'"index":%s,' % msgspec.json.encode(index)
    parts = []
    for event in events:
        when = epoch_of(_ts_decoder.decode(event).ts)
        time_part = b'"time":%.3f,' % when if when is not None else b""
        parts.append(b"{" + time_part + meta + b'"event":' + event + b"}")
    return b"".join(parts)


def json_array_body(events: list[bytes]) -> bytes:
    return b"[" + b",".join(events) + b"]"


class _Response(msgspec.Struct):
    status: int
    keep_alive: bool


class _HttpConnection:
    """One kept-alive HTTP/1.1 connection; `post` returns the status and reads (and discards) the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests = 0

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    async def post(self, request: bytes) -> _Response:
        self.requests += 1
        self.writer.write(request)
        await self.writer.drain()
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEADER_BYTES:
                raise SinkUnavailable("HTTP response header too large")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise SinkUnavailable("malformed HTTP response")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
            if 100 <= status < 200:
                continue  # 100 Continue and friends precede the real answer
            break
        keep_alive = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            await self._skip_chunked()
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > _MAX_BODY_BYTES:
                raise SinkUnavailable("HTTP response body too large")
            await self.reader.readexactly(length)
        elif status not in (204, 304):
            await self.reader.read(_MAX_BODY_BYTES)  # body delimited by the connection closing
            keep_alive = False
        return _Response(status, keep_alive)

    async def _skip_chunked(self) -> None:
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            if size > _MAX_BODY_BYTES:
                raise SinkUnavailable("HTTP response chunk too large")
            await self.reader.readexactly(size + 2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class HttpSink(AuditSink):
    type_name = "http"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        fmt: str = "json",
        token: str | None = None,
        timeout: float = 10.0,
        sourcetype: str = "streamgate:audit",
        source: str = "streamgate",
        index: str | None = None,
        hostname: str = "streamgate",
        tls_ca: str | None = None,
        tls_verify: bool = True,
        **options: Unpack[SinkOptions],
    ) -> None:
        super().__init__(name, **options)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"audit sink {name}: url must be http(s)://host[:port]/path")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Shown in errors and logs: no userinfo, no query string (either may carry a credential).
        self.safe_url = f"{parts.scheme}://{self.host}:{self.port}{parts.path or '/'}"
        self.format = fmt
        self.timeout = timeout
        self._hostname, self._source, self._sourcetype, self._index = hostname, source, sourcetype, index
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=tls_ca)
            if not tls_verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        host_header = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        auth = b""
        if token:
            scheme = "Splunk" if fmt == "splunk_hec" else "Bearer"
            auth = f"Authorization: {scheme} {token}\r\n".encode()
        self._request_head = (
            f"POST {self.target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: streamgate-audit\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\n"
        ).encode() + auth
        self._connection: _HttpConnection | None = None

    def __repr__(self) -> str:
        return f"HttpSink(name={self.name!r}, url={self.safe_url!r}, format={self.format!r})"

    def body(self, batch: list[bytes]) -> bytes:
        if self.format == "splunk_hec":
            return splunk_hec_body(
                batch,
                host=self._hostname,
                source=self._source,
                sourcetype=self._sourcetype,
                index=self._index,
            )
        return json_array_body(batch)

    async def _connect(self) -> _HttpConnection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self._ssl, limit=_MAX_HEADER_BYTES * 2),
                self.timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise SinkUnavailable(f"cannot connect to {self.safe_url}: {describe_error(exc)}") from None
        return _HttpConnection(reader, writer)

    async def _open(self) -> None:
        if self._connection is None or not self._connection.usable():
            await self._drop_connection()
            self._connection = await self._connect()

    async def _deliver(self, batch: list[bytes]) -> None:
        body = self.body(batch)
        request = self._request_head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for attempt in (1, 2):
            reused = self._connection is not None and self._connection.requests > 0
            await self._open()
            assert self._connection is not None
            try:
                response = await asyncio.wait_for(self._connection.post(request), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                await self._drop_connection()
                if attempt == 1 and reused:
                    continue  # the server closed an idle kept-alive connection: one fresh attempt
                raise SinkUnavailable(f"POST {self.safe_url} failed: {describe_error(exc)}") from None
            except (TimeoutError, SinkUnavailable) as exc:
                await self._drop_connection()
                raise SinkUnavailable(f"POST {self.safe_url} failed: {describe_error(exc)}") from None
            if not response.keep_alive:
                await self._drop_connection()
            if not 200 <= response.status < 300:
                raise SinkUnavailable(f"POST {self.safe_url} answered HTTP {response.status}")
            return

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def _close(self) -> None:
        await self._drop_connection()
