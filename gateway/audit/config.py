"""Configuration of the audit sinks (`audit.sinks` in the gateway YAML), as msgspec Structs.

Each sink is one entry of a list, selected by `type` (file, syslog, http, kafka). Every sink says what happens
when it is down: `on_failure: block` (the default: fail closed, requests that would produce an event are
refused) or `on_failure: spool` (events go to a bounded on-disk spool and are replayed in order when the sink
returns; a full spool flips the sink to block). Secrets (`token`, Kafka `options`) arrive already resolved from
`${env:...}`/`${file:...}` by the config loader and are never part of a repr, log line or error message.

Errors raised here follow `gateway/config.py`'s convention: `"<field>: <problem>"`, so the loader can prefix the
key path.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.netaddr import parse_host_port

MIB = 1024 * 1024

FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}


class SpoolConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where a sink spools while it is down. Each worker and sink gets its own sub-directory of `path`
    (`<path>/w<worker>/<sink name>`), so one setting serves every worker process."""

    path: str
    max_bytes: int = 256 * MIB
    segment_bytes: int = 16 * MIB
    # Route every event through the spool, even while the sink is up: events not yet acknowledged by the
    # receiver then survive a kill -9 of the worker and are replayed by its successor (at-least-once).
    write_ahead: bool = False
    fsync: bool = False  # fsync spool appends (survives power loss, costs a disk flush per batch)

    def __post_init__(self) -> None:
        if self.max_bytes < 4096:
            raise ValueError("max_bytes: must be at least 4096")
        if not 4096 <= self.segment_bytes:
            raise ValueError("segment_bytes: must be at least 4096")


class SinkConfigBase(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    name: str | None = None  # default: "<type><index>", e.g. "http1"; used in spool paths, stats and events
    on_failure: Literal["block", "spool"] = "block"
    spool: SpoolConfig | None = None
    queue_max: int = 10_000  # events held in memory per sink before back-pressure (block) or spilling (spool)
    retry_initial: float = 0.2  # seconds before the first retry of a failed delivery; doubles up to ...
    retry_max: float = 5.0

    def __post_init__(self) -> None:
        if self.on_failure == "spool" and self.spool is None:
            raise ValueError("spool: required when on_failure is spool")
        if self.spool is not None and self.spool.write_ahead and self.on_failure != "spool":
            raise ValueError("spool: write_ahead needs on_failure: spool")
        if self.queue_max < 1:
            raise ValueError("queue_max: must be >= 1")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ValueError("retry_initial: must be > 0 and <= retry_max")
        if self.name is not None and not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("name: letters, digits, '-' and '_' only (it names a spool directory)")


class FileSinkConfig(SinkConfigBase, tag="file"):
    """Hash-chained JSONL. `path` is a template: worker N writes `<stem>.wN<suffix>` (audit.jsonl ->
    audit.w1.jsonl), rotated by size to `.1` (newest) ... `.<backups>` (oldest)."""

    path: str
    max_bytes: int = 100 * MIB
    backups: int = 10
    write_through: bool = False  # write each event inside emit() instead of once per loop iteration
    fsync_interval: float | None = None  # seconds between fsyncs; None: never (page cache only)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_bytes < 1024:
            raise ValueError("max_bytes: must be at least 1024")
        if self.backups < 0:
            raise ValueError("backups: must be >= 0")
        if self.fsync_interval is not None and self.fsync_interval < 0:
            raise ValueError("fsync_interval: must be >= 0 (0 = fsync after every write)")


class SyslogSinkConfig(SinkConfigBase, tag="syslog"):
    """RFC 5424 messages (structured data + the event as JSON in MSG) over UDP (RFC 5426, one message per
    datagram) or TCP/TLS (RFC 6587 octet counting)."""

    address: str
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    facility: str | int = "local0"
    app_name: str = "streamgate"
    hostname: str | None = None  # default: this machine's host name
    sd_id: str = "streamgate@32473"  # 32473 is the documentation enterprise number (RFC 5612); set your own
    utf8_bom: bool = False  # prefix MSG with a BOM as RFC 5424 asks for UTF-8; many collectors mis-handle it
    tls_ca: str | None = None
    tls_verify: bool = True
    connect_timeout: float = 5.0
    batch_size: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_host_port(self.address)
        except ValueError as exc:
            raise ValueError(f"address: {exc}") from None
        if isinstance(self.facility, str) and self.facility not in FACILITIES:
            raise ValueError(f"facility: unknown facility {self.facility!r} (use a name like local0 or 0-23)")
        if isinstance(self.facility, int) and not 0 <= self.facility <= 23:
            raise ValueError("facility: must be 0-23")
        if not (1 <= len(self.app_name) <= 48 and self.app_name.isascii() and " " not in self.app_name):
            raise ValueError("app_name: 1-48 printable ASCII characters without spaces")

    @property
    def facility_code(self) -> int:
        return FACILITIES[self.facility] if isinstance(self.facility, str) else self.facility


class HttpSinkConfig(SinkConfigBase, tag="http"):
    """Batched POSTs: Splunk HEC (`Authorization: Splunk <token>`, concatenated event objects) or a generic
    JSON array (`Authorization: Bearer <token>` when a token is set)."""

    url: str
    format: Literal["splunk_hec", "json"] = "json"
    token: str | None = None
    batch_size: int = 100
    flush_interval: float = 1.0  # seconds a partial batch may wait for more events
    timeout: float = 10.0
    sourcetype: str = "streamgate:audit"
    source: str = "streamgate"
    index: str | None = None
    tls_ca: str | None = None
    tls_verify: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be >= 1")
        if self.flush_interval < 0 or self.timeout <= 0:
            raise ValueError("flush_interval: must be >= 0 (and timeout > 0)")

    def __repr__(self) -> str:
        return (
            f"HttpSinkConfig(name={self.name!r}, url={self.url!r}, format={self.format!r}, token=<redacted>)"
        )


class KafkaSinkConfig(SinkConfigBase, tag="kafka"):
    """Produce events to a topic of the gateway's own cluster (key `w<worker>`: per-worker order)."""

    bootstrap: str
    topic: str
    client_id: str = "streamgate-audit"
    batch_size: int = 500
    delivery_timeout: float = 10.0  # seconds before an unacknowledged batch counts as a failure
    idempotent: bool = True
    options: dict[str, str | int | float | bool] = {}  # extra librdkafka settings (security.protocol, sasl.*)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.topic:
            raise ValueError("topic: must not be empty")
        if self.delivery_timeout <= 0:
            raise ValueError("delivery_timeout: must be > 0")

    def __repr__(self) -> str:
        return f"KafkaSinkConfig(name={self.name!r}, bootstrap={self.bootstrap!r}, topic={self.topic!r})"


SinkConfig = FileSinkConfig | SyslogSinkConfig | HttpSinkConfig | KafkaSinkConfig


class AuditConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sinks: list[SinkConfig] = []
    close_timeout: float = 5.0  # seconds aclose() waits for sinks to deliver what they hold

    def __post_init__(self) -> None:
        names = [sink_name(s, i) for i, s in enumerate(self.sinks)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sinks: duplicate sink names {duplicates} (set distinct `name`s)")


def sink_name(config: SinkConfigBase, index: int) -> str:
    return config.name or f"{config.__struct_config__.tag}{index + 1}"
