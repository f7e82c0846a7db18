"""The supervisor as a real process tree: workers, crashes, drain, reload, scaling, boot failure, heartbeats.

Every scenario runs `python -m tests.supervisor.run_echo` (the real Supervisor with the echo worker) and
waits on its JSON log events and on client round trips, each with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # fixtures come from conftest.py; import it only for the type checker
    from tests.supervisor.conftest import StartSupervisor


def test_workers_start_and_connections_are_spread_over_them(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(workers=2)
    ready = supervisor.wait_until_ready(2)
    started = {record["worker_pid"]: record["worker_id"] for record in supervisor.events("worker_started")}

    identities = [supervisor.connect().whoami() for _ in range(30)]

    assert {record["worker_id"] for record in ready} == {1, 2}
    assert {identity["pid"] for identity in identities} == set(started), "both workers should get connections"
    for identity in identities:
        assert started[identity["pid"]] == identity["worker_id"]
        assert identity["generation"] == 1
        assert identity["incarnation"] == 1
    # Master lines are tagged worker 0 with the master's pid.
    assert all(record["worker"] == 0 and record["pid"] == supervisor.proc.pid for record in ready)


def test_killed_worker_is_replaced_with_same_id_while_others_keep_serving(
    start_supervisor: StartSupervisor,
) -> None:
    supervisor = start_supervisor(workers=2)
    supervisor.wait_until_ready(2)
    survivor, survivor_identity = supervisor.client_of_worker(2)
    _, victim_identity = supervisor.client_of_worker(1)

    mark = supervisor.mark()
    killed_at = time.monotonic()
    os.kill(victim_identity["pid"], signal.SIGKILL)
    echoes = 0
    while not supervisor.events("worker_started", since=mark, worker_id=1):
        assert survivor.request(f"ping {echoes}") == f"ping {echoes}"
        echoes += 1
        assert time.monotonic() - killed_at < 5, supervisor.log_tail()
    replaced_after = time.monotonic() - killed_at

    died = supervisor.wait_for_event("worker_died", since=mark, worker_id=1)
    assert died["exit"] == "signal SIGKILL"
    assert replaced_after < 1.0, f"replacement took {replaced_after:.2f}s"
    supervisor.wait_for_event("worker_ready", since=mark, worker_id=1)
    _, replacement_identity = supervisor.client_of_worker(1)
    assert replacement_identity["pid"] != victim_identity["pid"]
    assert replacement_identity["incarnation"] == 2
    assert survivor.request("still here") == "still here"
    assert survivor.whoami()["pid"] == survivor_identity["pid"]


def test_repeated_crashes_back_off_exponentially(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(workers=1)
    supervisor.wait_until_ready(1)
    delays = []
    for incarnation in (1, 2, 3):
        started = supervisor.wait_for_event("worker_started", worker_id=1, generation=incarnation)
        mark = supervisor.mark()
        os.kill(started["worker_pid"], signal.SIGKILL)
        delays.append(supervisor.wait_for_event("worker_died", since=mark, worker_id=1)["restart_in"])
    assert delays == [0.1, 0.2, 0.4]
    supervisor.wait_for_event("worker_started", worker_id=1, generation=4)


def test_sigterm_lets_in_flight_request_finish_then_exits_zero(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(workers=2, drain_timeout=10.0)
    supervisor.wait_until_ready(2)
    port = supervisor.port
    client = supervisor.connect()
    client.send_line("slow 1.5")
    supervisor.wait_for_event("echo_slow_started")

    supervisor.send_signal(signal.SIGTERM)

    assert client.read_line() == "done"
    assert supervisor.wait_exit() == 0
    assert supervisor.events("shutdown_started", reason="SIGTERM")
    assert not supervisor.events("worker_drain_timeout")
    exits = supervisor.events("worker_exited")
    assert sorted(record["worker_id"] for record in exits) == [1, 2]
    assert all(record["exit"] == "exit code 0" for record in exits)
    # Worker log lines carry their own worker id and pid.
    started = {record["worker_id"]: record["worker_pid"] for record in supervisor.events("worker_started")}
    for record in supervisor.events("echo_draining"):
        assert record["pid"] == started[record["worker"]]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_second_stop_signal_during_drain_kills_workers_and_exits_one(
    start_supervisor: StartSupervisor,
) -> None:
    supervisor = start_supervisor(workers=1, drain_timeout=30.0)
    supervisor.wait_until_ready(1)
    client = supervisor.connect()
    client.send_line("slow 30")
    supervisor.wait_for_event("echo_slow_started")
    supervisor.send_signal(signal.SIGINT)  # Ctrl-C drains like SIGTERM
    supervisor.wait_for_event("shutdown_started", reason="SIGINT")
    supervisor.wait_for_event("echo_draining")
    stopping_since = time.monotonic()

    supervisor.send_signal(signal.SIGTERM)

    assert supervisor.wait_exit(timeout=10) == 1
    assert time.monotonic() - stopping_since < 5
    assert supervisor.events("shutdown_forced")
    assert supervisor.events("worker_exited")[0]["exit"] == "signal SIGKILL"
    with pytest.raises((ConnectionError, OSError)):
        client.read_line()


def test_worker_that_outlives_drain_timeout_is_killed(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(config={"generation": 1, "stuck_drain": True}, workers=1, drain_timeout=0.5)
    supervisor.wait_until_ready(1)
    client = supervisor.connect()
    client.send_line("slow 30")
    supervisor.wait_for_event("echo_slow_started")

    supervisor.send_signal(signal.SIGTERM)

    supervisor.wait_for_event("worker_drain_timeout", timeout=10)
    assert supervisor.wait_exit() == 0
    assert supervisor.events("worker_exited")[0]["exit"] == "signal SIGKILL"


def test_sighup_with_broken_config_keeps_the_old_one(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(workers=2)
    supervisor.wait_until_ready(2)
    connected_before = supervisor.connect()
    supervisor.write_config('{"generation": 2, "password": "s3cr3t-value", ')  # truncated JSON
    mark = supervisor.mark()

    supervisor.send_signal(signal.SIGHUP)

    failure = supervisor.wait_for_event("config_reload_failed", since=mark)
    assert "not valid JSON" in failure["msg"]
    assert supervisor.config_path.name in failure["msg"]
    assert "keeping the current config" in failure["msg"]
    assert connected_before.request("hello") == "hello"
    assert {supervisor.connect().whoami()["generation"] for _ in range(10)} == {1}
    assert not supervisor.events("echo_reload_applied")
    assert "s3cr3t" not in supervisor.log_text()


def test_sighup_with_good_config_reaches_every_worker(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(config={"generation": 1, "password": "old-s3cr3t"}, workers=2)
    supervisor.wait_until_ready(2)
    supervisor.write_config(json.dumps({"generation": 2, "password": "new-s3cr3t", "extra": {"a": 1}}))
    mark = supervisor.mark()

    supervisor.send_signal(signal.SIGHUP)

    reloaded = supervisor.wait_for_event("config_reloaded", since=mark)
    assert reloaded["added"] == ["extra"]
    assert reloaded["changed"] == ["generation", "password"]
    applied = supervisor.wait_for_events("echo_reload_applied", 2, since=mark)
    assert {record["worker"] for record in applied} == {1, 2}
    identities = [supervisor.connect().whoami() for _ in range(20)]
    assert {identity["generation"] for identity in identities} == {2}
    assert len({identity["pid"] for identity in identities}) == 2
    assert "s3cr3t" not in supervisor.log_text()


def test_sigttin_and_sigttou_change_the_worker_count(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(workers=2)
    supervisor.wait_until_ready(2)

    supervisor.send_signal(signal.SIGTTIN)
    supervisor.wait_for_event("worker_ready", worker_id=3)
    supervisor.client_of_worker(3)

    mark = supervisor.mark()
    supervisor.send_signal(signal.SIGTTOU)
    supervisor.wait_for_event("worker_exited", since=mark, worker_id=3)
    supervisor.send_signal(signal.SIGTTOU)
    supervisor.wait_for_event("worker_exited", since=mark, worker_id=2)
    supervisor.send_signal(signal.SIGTTOU)
    supervisor.wait_for_event("workers_scaled", since=mark, msg="already at 1 worker; not scaling down")

    # The retired workers' sockets are closed: every new connection lands on worker 1, none stalls.
    assert {supervisor.connect().whoami()["worker_id"] for _ in range(20)} == {1}
    assert not supervisor.events("worker_died")
    assert len(supervisor.events("worker_exited", since=mark)) == 2


def test_repeated_boot_failure_halts_with_exit_code_3(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(config={"generation": 1, "boot_fail": True}, workers=2)

    assert supervisor.wait_exit() == 3
    assert len(supervisor.events("worker_boot_failed")) == 3
    halted = supervisor.events("master_halted")
    assert len(halted) == 1 and "halting" in halted[0]["msg"]
    assert not supervisor.events("worker_ready")


def test_unloadable_worker_entry_is_a_boot_failure(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(extra_args=("--worker-entry", "tests.supervisor.no_such_module:main"))

    assert supervisor.wait_exit() == 3
    assert supervisor.events("worker_entry_failed")
    assert supervisor.events("master_halted")


def test_invalid_config_at_start_exits_1_before_forking(start_supervisor: StartSupervisor) -> None:
    supervisor = start_supervisor(config={"generation": "two"})

    assert supervisor.wait_exit() == 1
    invalid = supervisor.events("config_invalid")
    assert len(invalid) == 1 and "'generation' must be an integer" in invalid[0]["msg"]
    assert not supervisor.events("worker_started")
    assert not supervisor.events("listener_bound")


def test_silent_worker_is_killed_and_replaced(start_supervisor: StartSupervisor) -> None:
    config = {"generation": 1, "heartbeat_interval": 0.2, "silent_worker_ids": [1]}
    supervisor = start_supervisor(config=config, workers=2, heartbeat_timeout=1.5)
    supervisor.wait_until_ready(2)

    killed = supervisor.wait_for_event("worker_unresponsive", worker_id=1)
    died = supervisor.wait_for_event("worker_died", worker_id=1)
    replacement = supervisor.wait_for_event("worker_started", worker_id=1, generation=2)

    assert died["exit"] == "signal SIGKILL"
    assert replacement["worker_pid"] != killed["worker_pid"]
    assert not supervisor.events("worker_unresponsive", worker_id=2)
    assert not supervisor.events("worker_died", worker_id=2)


def test_port_in_use_without_reuseport_fails_to_start(start_supervisor: StartSupervisor) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        supervisor = start_supervisor(extra_args=("--port", str(blocker.getsockname()[1])))
        assert supervisor.wait_exit() == 1
        assert "cannot listen" in supervisor.events("bind_failed")[0]["msg"]
    finally:
        blocker.close()
