"""Listening sockets: one set per worker slot, all bound to the same addresses with SO_REUSEPORT.

Rule kept here: every worker gets its own listening socket per listener, so the kernel's SO_REUSEPORT hashing
spreads new connections across workers (no shared accept queue, no thundering herd). The master holds each
slot's sockets while the slot exists, so connections queued for a crashed worker wait for its replacement
instead of being reset; when a slot goes away its sockets are closed and the kernel stops routing to it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class ListenerSpec:
    """A named address every worker listens on, e.g. ("kafka", "127.0.0.1", 9092). Port 0: kernel picks."""

    name: str
    host: str
    port: int


def bind_listener(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to (host, port) with SO_REUSEADDR + SO_REUSEPORT, listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" should mean IPv6 only; an IPv4 listener is its own spec.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ListenerSet:
    """Binds one socket set per slot for fixed specs; remembers the port the kernel chose for port 0."""

    def __init__(self, specs: list[ListenerSpec]) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"listener names must be unique, got {names}")
        self._specs = list(specs)
        self._resolved_ports: dict[str, int] = {spec.name: spec.port for spec in specs}

    @property
    def specs(self) -> list[ListenerSpec]:
        return list(self._specs)

    def port_of(self, name: str) -> int:
        return self._resolved_ports[name]

    def bind_slot(self) -> dict[str, socket.socket]:
        """One bound socket per listener; on failure nothing stays open and the OSError propagates."""
        bound: dict[str, socket.socket] = {}
        try:
            for spec in self._specs:
                sock = bind_listener(spec.host, self._resolved_ports[spec.name])
                # Later slots must join the port the kernel picked for the first one, not pick another.
                self._resolved_ports[spec.name] = sock.getsockname()[1]
                bound[spec.name] = sock
        except BaseException:
            close_sockets(bound)
            raise
        return bound


def close_sockets(sockets: dict[str, socket.socket]) -> None:
    for sock in sockets.values():
        sock.close()
    sockets.clear()
