"""`make run`: a local Kafka-compatible broker (Tansu) with the gateway in front of it, ready to try.

Starts the broker on loopback, writes a config for the gateway, starts `streamgate run` on it, checks that a
client can reach the broker through the gateway, then prints client commands that work as printed. Ctrl-C (or
SIGTERM) stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.devstack.processes import ComponentError, free_port, start_tansu, wait_for_port

STATE_DIR = Path(os.environ.get("STREAMGATE_DEVSTACK_DIR", ".run/devstack"))


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_config(path: Path, *, listen_port: int, node_port_base: int, broker: str, workers: int | None) -> None:
    workers_line = f"  workers: {workers}\n" if workers else ""
    path.write_text(
        "# Written by `streamgate devstack` (make run). Passthrough on loopback: no identity yet.\n"
        "passthrough: true\n"
        "kafka:\n"
        f"  listen: 127.0.0.1:{listen_port}\n"
        "  advertised_host: 127.0.0.1\n"
        f"  node_port_base: {node_port_base}\n"
        "  upstream:\n"
        f"    bootstrap: {broker}\n"
        "server:\n"
        f"{workers_line}"
        "  drain_timeout: 5\n"
    )


def _smoke_check(bootstrap: str) -> str:
    """List topics through the gateway with confluent-kafka; return the broker list the client saw."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    return ", ".join(f"node {b.id} at {b.host}:{b.port}" for b in md.brokers.values())


def run_devstack(port: int = 9092, workers: int | None = None) -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        print(f"error: port {port} on 127.0.0.1 is in use; stop what uses it or run "
              f"`streamgate devstack --port N`", file=sys.stderr)
        return 1
    node_port_base = port + 8  # Tansu's node id is 111 -> 9092 + 8 + 111 = 9211
    broker_port = 19092 if _port_free(19092) else free_port()
    try:
        broker = start_tansu(broker_port, log_path=STATE_DIR / "tansu.log")
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config_path = STATE_DIR / "streamgate.yaml"
    write_config(config_path, listen_port=port, node_port_base=node_port_base, broker=broker.address,
                 workers=workers)
    gateway = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config_path)])
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        wait_for_port("127.0.0.1", port, 30, gateway)  # type: ignore[arg-type]
        seen = _smoke_check(f"127.0.0.1:{port}")
        kcat = "kcat" if shutil.which("kcat") else "kcat (apt-get install kcat)"
        print(f"""
Streamgate is running (passthrough mode, {workers or os.cpu_count()} workers).
  broker (Tansu):   {broker.address}      <- clients never see this address
  gateway:          127.0.0.1:{port}      <- point clients here
  clients see:      {seen}
  config:           {config_path}
  broker log:       {STATE_DIR / 'tansu.log'}

Try it (copy and paste):
  {kcat} -b 127.0.0.1:{port} -L
  printf 'k1:hello\\nk2:world\\n' | kcat -b 127.0.0.1:{port} -t demo -K: -P
  kcat -b 127.0.0.1:{port} -t demo -C -e -f '%k => %s (partition %p, offset %o)\\n'
  .venv/bin/python -c "from confluent_kafka import Producer; p=Producer({{'bootstrap.servers':'127.0.0.1:{port}'}}); p.produce('demo', b'from python'); p.flush()"

Identity, policy, masking and approvals arrive with the next issues; this stack then gains a development
identity provider and demo users. Ctrl-C stops everything.
""", flush=True)
        while not stopping and gateway.poll() is None:
            time.sleep(0.2)
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        broker.stop()
    return 0 if stopping else (gateway.returncode or 1)
