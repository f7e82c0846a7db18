"""The `admin` section of the gateway YAML: the admin HTTP process, the approval store and the webhook.

Shape (every key optional)::

    admin:
      listen: 127.0.0.1:8080            # approvals API, reviewer page, /healthz, /readyz
      public_url: https://gw-admin.example.com   # links in webhook messages (default: none)
      store: {type: sqlite, path: /var/lib/streamgate/approvals.sqlite3, busy_timeout: 5}
      webhook: {url: "${env:SLACK_WEBHOOK_URL}", format: slack, timeout: 5, max_attempts: 6}
      pending_ttl: 24h                  # a request nobody decided expires after this
      deny_cooldown: 5m                 # retries within this after a denial are refused without a new request
      hold_poll_interval: 150ms         # how often a worker holding a request looks for a decision
      sweep_interval: 5s                # how often expiries are applied (and audited) by the admin process
      retention: 30d                    # decided requests and store events older than this are deleted

Rules kept here: unknown keys are errors; errors follow `gateway/config.py`'s `"<field>: <problem>"`
convention; the webhook URL and headers are secrets (a Slack incoming-webhook URL is a bearer credential), so
they never appear in a repr, a log line or an error message. This module imports nothing from
`gateway.config`, so that module can embed `AdminConfig` without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from gateway.enforcement.policy import parse_duration
from gateway.netaddr import parse_host_port


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where approval state lives; every worker and the admin process open the same store."""

    type: Literal["sqlite"] = "sqlite"
    path: str | None = None  # default: <server.state_dir>/approvals.sqlite3 (see approval_store_path)
    busy_timeout: float = 5.0  # seconds a write waits for another process's transaction

    def __post_init__(self) -> None:
        if self.path is not None and not self.path:
            raise ValueError("path: must not be empty")
        if not 0 < self.busy_timeout <= 60:
            raise ValueError("busy_timeout: must be between 0 and 60 seconds")


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An HTTP(S) endpoint that receives a POST for every new approval request and every decision."""

    url: str
    format: Literal["slack", "json"] = "json"
    timeout: float = 5.0  # seconds per delivery attempt
    max_attempts: int = (
        6  # attempts per message (backoff 0.5s, 1s, 2s, ... capped at 30s) before it is dropped
    )
    headers: dict[str, str] = {}  # extra request headers, e.g. Authorization for a generic JSON receiver
    ca_file: str | None = None  # CA bundle for an https URL (default: the system trust store)
    queue_size: int = 1000  # messages waiting for delivery; beyond this new ones are dropped (and logged)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is never echoed: it usually carries a secret.
            raise ValueError("url: must be an http(s) URL with a host")
        if not 0 < self.timeout <= 120:
            raise ValueError("timeout: must be between 0 and 120 seconds")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts: must be between 1 and 100")
        if not 1 <= self.queue_size <= 1_000_000:
            raise ValueError("queue_size: must be between 1 and 1000000")
        for name, value in self.headers.items():
            if not name or any(ch in name for ch in ":\r\n \t") or "\r" in value or "\n" in value:
                raise ValueError("headers: header names must be tokens and values must be single lines")

    def __repr__(self) -> str:
        host = urlsplit(self.url).hostname
        return f"WebhookConfig(host={host!r}, format={self.format!r})"

    @property
    def destination(self) -> str:
        """Scheme and host only: what logs may say about where webhooks go."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}"


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    webhook: WebhookConfig | None = None
    pending_ttl: str | float = "24h"
    deny_cooldown: str | float = "5m"
    hold_poll_interval: str | float = "150ms"
    sweep_interval: str | float = "5s"
    retention: str | float = "30d"

    def __post_init__(self) -> None:
        try:
            parse_host_port(self.listen)
        except ValueError as exc:
            raise ValueError(f"listen: {exc}") from None
        if self.public_url is not None and urlsplit(self.public_url).scheme not in ("http", "https"):
            raise ValueError("public_url: must be an http(s) URL")
        for name in ("pending_ttl", "deny_cooldown", "hold_poll_interval", "sweep_interval", "retention"):
            try:
                parse_duration(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if not 0.01 <= self.hold_poll_interval_s <= 5:
            raise ValueError("hold_poll_interval: must be between 10ms and 5s")

    @property
    def listen_host(self) -> str:
        return parse_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_host_port(self.listen)[1]

    @property
    def pending_ttl_s(self) -> float:
        return parse_duration(self.pending_ttl)

    @property
    def deny_cooldown_s(self) -> float:
        return parse_duration(self.deny_cooldown)

    @property
    def hold_poll_interval_s(self) -> float:
        return parse_duration(self.hold_poll_interval)

    @property
    def sweep_interval_s(self) -> float:
        return parse_duration(self.sweep_interval)

    @property
    def retention_s(self) -> float:
        return parse_duration(self.retention)


def admin_config_from_plain(config: dict[str, Any]) -> AdminConfig:
    """The `admin` section of a resolved (plain) gateway config; defaults when it has none.

    Raises ValueError naming the key path (`admin.webhook.url: ...`).
    """
    section = config.get("admin") or {}
    try:
        return msgspec.convert(section, AdminConfig)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        path = "admin" + where.rstrip("`")
        # Checks in __post_init__ say "field: problem"; fold the field into the key path.
        field, sep, rest = message.partition(": ")
        if sep and field.isidentifier():
            path, message = f"{path}.{field}", rest
        raise ValueError(f"{path}: {message}") from None


DEFAULT_STORE_FILE = "approvals.sqlite3"
DEFAULT_STATE_DIR = ".streamgate-state"


def approval_store_path(admin: AdminConfig, state_dir: str | None) -> str:
    """Where the approval store lives: `admin.store.path`, else `approvals.sqlite3` in `server.state_dir`.

    Workers and the admin process must call this with the same config so they open the same file.
    """
    if admin.store.path:
        return admin.store.path
    return str(Path(state_dir or DEFAULT_STATE_DIR) / DEFAULT_STORE_FILE)
