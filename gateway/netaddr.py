"""Host:port parsing shared by the config and the sinks (no imports from the rest of the package)."""

from __future__ import annotations

import ipaddress
import re


def parse_host_port(value: str, *, default_host: str | None = None) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port"); raise ValueError with the expected form otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value or "")
    if m is None:
        raise ValueError(f'expected "host:port", got "{value}"')
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f'port must be 1-65535, got "{value}"')
    return host, port


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
