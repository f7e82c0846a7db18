"""The real gateway as processes: worker crash under load, graceful SIGTERM drain, SIGHUP reloads."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from gateway.protocols.kafka import codec
from tests.helpers.gateway import ROOT, start_gateway
from tests.integration.kafka_helpers import create_topic, unique_topic
from tests.integration.test_address_rewriting import RawClient

pytestmark = pytest.mark.integration


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def worker_of_connection(worker_pids: list[int], gateway_port: int, client_port: int) -> int | None:
    """Which worker process holds the accepted socket gateway_port <- client_port (from /proc/net/tcp)."""
    wanted = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == gateway_port and remote_port == client_port:
            wanted = fields[9]
    if wanted is None:
        return None
    for pid in worker_pids:
        if wanted in _socket_inodes(pid):
            return pid
    return None


def metadata_ok(client: RawClient) -> bool:
    body, _ = client.call(3, 1, codec.request_class(3)(topics=[]))
    return bool(body.brokers)


def test_kill_9_worker_under_load_is_replaced_and_others_unaffected(tansu, tmp_path):
    gw = start_gateway(tansu.address, tmp_path, workers=2)
    try:
        topic = unique_topic("crash")
        create_topic(gw.bootstrap, topic, partitions=1)
        workers = gw.worker_pids()
        assert len(workers) == 2
        # spread raw connections until both workers hold some
        clients: dict[int, list[RawClient]] = {pid: [] for pid in workers}
        for _ in range(64):
            c = RawClient(gw.bootstrap)
            assert metadata_ok(c)
            pid = worker_of_connection(workers, gw.port, c.sock.getsockname()[1])
            assert pid in clients
            clients[pid].append(c)
            if all(len(v) >= 2 for v in clients.values()):
                break
        assert all(clients.values()), "SO_REUSEPORT did not shard connections over both workers"
        victim, survivor = workers

        # client load during the crash: an idempotent producer that must deliver everything exactly once
        delivered: list[bytes] = []
        errors: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            p = Producer({"bootstrap.servers": gw.bootstrap, "enable.idempotence": True, "linger.ms": 2,
                          "message.timeout.ms": 30000})
            i = 0
            while not stop.is_set():
                p.produce(topic, value=f"m{i}".encode(),
                          on_delivery=lambda err, msg: errors.append(str(err)) if err else delivered.append(msg.value()))
                p.poll(0.002)
                i += 1
            assert p.flush(30) == 0
            produced.append(i)

        produced: list[int] = []
        t = threading.Thread(target=produce)
        t.start()
        while len(delivered) < 200:
            assert t.is_alive() and not errors, errors
            time.sleep(0.01)
        offset = len(gw.log_text())
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gw.wait_for_log(r"worker \d started \(pid \d+, generation 2\)", timeout=10, start=offset)
        replaced_after = time.monotonic() - killed_at
        # the survivor's clients never noticed
        for c in clients[survivor]:
            assert metadata_ok(c)
        # the victim's clients were disconnected
        for c in clients[victim]:
            with pytest.raises((ConnectionError, OSError)):
                metadata_ok(c)
        new_workers = gw.worker_pids()
        assert victim not in new_workers and survivor in new_workers and len(new_workers) == 2
        count_at_kill = len(delivered)
        while len(delivered) < count_at_kill + 200:
            assert t.is_alive() and not errors, errors
            time.sleep(0.01)
        stop.set()
        t.join(60)
        assert not errors, errors
        assert len(delivered) == produced[0]
        # every record is in the topic exactly once, in order
        c = Consumer({"bootstrap.servers": gw.bootstrap, "group.id": unique_topic("g")})
        c.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(values) < produced[0] and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                values.append(m.value())
        c.close()
        assert values == [f"m{i}".encode() for i in range(produced[0])]
        print(f"worker replaced {replaced_after:.3f}s after kill -9")
        for cs in clients.values():
            for cl in cs:
                cl.close()
    finally:
        assert gw.stop() == 0


def test_sigterm_drains_in_flight_requests_and_exits_0(tansu, tmp_path):
    gw = start_gateway(tansu.address, tmp_path, workers=1)
    topic = unique_topic("drain")
    create_topic(gw.bootstrap, topic, partitions=1)
    client = RawClient(gw.bootstrap)
    from gateway.protocols.kafka.generated.fetch import FetchRequestFetchPartition, FetchRequestFetchTopic
    from gateway.protocols.kafka.generated.metadata import MetadataRequestTopic

    md, _ = client.call(3, 12, codec.request_class(3)(topics=[MetadataRequestTopic(name=topic)]))
    fetch = codec.request_class(1)(max_wait_ms=2500, min_bytes=1, max_bytes=1 << 20, topics=[
        FetchRequestFetchTopic(topic_id=md.topics[0].topic_id, partitions=[FetchRequestFetchPartition(
            partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])])
    result: dict[str, object] = {}

    def long_poll() -> None:
        try:
            result["body"], _ = client.call(1, 13, fetch)  # the broker holds this for max_wait_ms
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=long_poll)
    offset = len(gw.log_text())
    t.start()
    time.sleep(0.3)  # the fetch must be in flight at the broker before we signal; nothing to await on here
    gw.proc.send_signal(signal.SIGTERM)
    gw.wait_for_log("draining", start=offset)
    t.join(15)
    assert "error" not in result, result
    assert result["body"].responses[0].partitions[0].error_code == 0
    assert gw.proc.wait(20) == 0
    with pytest.raises(OSError):
        RawClient(gw.bootstrap)
    client.close()


def test_sighup_with_broken_config_keeps_serving_old_then_applies_good(tansu, tmp_path):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text((ROOT / "examples" / "passthrough.yaml").read_text())
    gw = start_gateway(tansu.address, tmp_path, workers=2, config=cfg)
    try:
        offset = len(gw.log_text())
        # (bootstrap and ports come from STREAMGATE__ env overrides in this test; break a file-only key)
        cfg.write_text(cfg.read_text().replace("  advertised_host: 127.0.0.1", "  advertised_hots: 127.0.0.1"))
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_for_log(r"config reload failed, keeping the current config: kafka\.advertised_hots: unknown key",
                        start=offset)
        client = RawClient(gw.bootstrap)
        assert metadata_ok(client), "still serving with the old config"
        client.close()
        # a good config is applied to new connections
        offset = len(gw.log_text())
        cfg.write_text((ROOT / "examples" / "passthrough.yaml").read_text().replace(
            "log_level: info", "log_level: info\n  heartbeat_timeout: 31"))
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_for_log(r"config reloaded", start=offset)
        gw.wait_for_log(r"configuration reloaded; new connections use it", start=offset)
        client = RawClient(gw.bootstrap)
        assert metadata_ok(client)
        client.close()
        assert gw.proc.poll() is None
    finally:
        assert gw.stop() == 0


def test_sigttin_sigttou_change_worker_count(tansu, tmp_path):
    gw = start_gateway(tansu.address, tmp_path, workers=1)
    try:
        gw.proc.send_signal(signal.SIGTTIN)
        deadline = time.monotonic() + 10
        while len(gw.worker_pids()) != 2:
            assert time.monotonic() < deadline, gw.log_text()[-2000:]
            time.sleep(0.05)
        gw.proc.send_signal(signal.SIGTTOU)
        while len(gw.worker_pids()) != 1:
            assert time.monotonic() < deadline + 10, gw.log_text()[-2000:]
            time.sleep(0.05)
        client = RawClient(gw.bootstrap)
        assert metadata_ok(client)
        client.close()
    finally:
        assert gw.stop() == 0


def test_node_ports_are_bound_at_worker_start(tansu, tmp_path):
    """A client with cached metadata can reach a node port before it ever asks this gateway for metadata."""
    gw = start_gateway(tansu.address, tmp_path, workers=2)
    try:
        # both workers learn the broker's nodes on their own at start
        deadline = time.monotonic() + 20
        while gw.log_text().count("serving broker node 111") < 2:
            assert time.monotonic() < deadline, gw.log_text()[-2000:]
            time.sleep(0.05)
        client = RawClient(f"127.0.0.1:{gw.node_port_base + 111}")
        assert metadata_ok(client)
        client.close()
    finally:
        assert gw.stop() == 0
