"""Per-slot SO_REUSEPORT sockets and resolving the worker entry point."""

from __future__ import annotations

import collections
import json
import socket

import pytest

from gateway.supervisor.child import resolve_entry
from gateway.supervisor.listeners import ListenerSet, ListenerSpec, close_sockets


def test_every_slot_gets_its_own_socket_on_the_same_port() -> None:
    listener_set = ListenerSet([ListenerSpec("echo", "127.0.0.1", 0), ListenerSpec("admin", "127.0.0.1", 0)])
    first = listener_set.bind_slot()
    second = listener_set.bind_slot()
    try:
        for name in ("echo", "admin"):
            assert first[name] is not second[name]
            assert first[name].getsockname() == second[name].getsockname()
            assert listener_set.port_of(name) == first[name].getsockname()[1] != 0
            assert first[name].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert first[name].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            assert first[name].getblocking() is False
        assert listener_set.port_of("echo") != listener_set.port_of("admin")
    finally:
        close_sockets(first)
        close_sockets(second)


def test_closing_one_slot_leaves_the_port_served_by_the_other() -> None:
    listener_set = ListenerSet([ListenerSpec("echo", "127.0.0.1", 0)])
    kept, retired = listener_set.bind_slot(), listener_set.bind_slot()
    close_sockets(retired)
    kept["echo"].setblocking(True)
    kept["echo"].settimeout(5)
    try:
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", listener_set.port_of("echo")), timeout=5):
                accepted, _ = kept["echo"].accept()
                accepted.close()
    finally:
        close_sockets(kept)


def test_a_failed_bind_leaves_nothing_open() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    listener_set = ListenerSet(
        [ListenerSpec("ok", "127.0.0.1", 0), ListenerSpec("taken", "127.0.0.1", blocker.getsockname()[1])]
    )
    try:
        with pytest.raises(OSError):
            listener_set.bind_slot()
    finally:
        blocker.close()


def test_listener_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ListenerSet([ListenerSpec("kafka", "127.0.0.1", 0), ListenerSpec("kafka", "127.0.0.1", 1)])


def test_entry_point_is_resolved_from_module_and_attribute_path() -> None:
    assert resolve_entry("json:dumps") is json.dumps
    assert resolve_entry("collections:OrderedDict.fromkeys") == collections.OrderedDict.fromkeys


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("json", ValueError),
        (":dumps", ValueError),
        ("streamgate_no_such_module:main", ImportError),
        ("json:no_such_function", AttributeError),
        ("json:__doc__", TypeError),
    ],
)
def test_bad_entry_points_raise(entry: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_entry(entry)
