"""`make run`: a local broker, a development identity provider and the gateway with a demo policy.

Starts Tansu and the development OIDC provider on loopback, writes a gateway config with a demo policy and a
file audit trail, starts `streamgate run`, creates the demo topics as the platform admin, checks that a demo
user can reach the broker through the gateway, and prints client commands that work as printed: an allowed
write, an allowed read, a denied write, a topic invisible to a user. Ctrl-C (or SIGTERM) stops everything.

Demo credentials are development-only values (gateway/devstack/oidc.py) and the provider runs without its
test endpoints.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gateway.devstack.oidc import DEMO_CLIENTS, DEMO_USERS, start_dev_idp
from gateway.devstack.processes import ComponentError, ManagedProcess, free_port, start_tansu, wait_for_port

STATE_DIR = Path(os.environ.get("STREAMGATE_DEVSTACK_DIR", ".run/devstack"))

ADMIN_CLIENT = "platform-admin"
DEMO_POLICY = """\
masking:
  profiles:
    pii:
      detectors: [credit_card, us_ssn, email, aws_access_key, private_key]
      fields: {"$.customer.ssn": redact, "$.card.number": {keep_last: 4}}
      operator: redact
policy:
  rules:
    - name: payments-writers
      groups: [payments-svc]
      topics: ["payments.*", "customers.*"]
      allow: [produce, describe]
    - name: analysts-read-masked
      groups: [analysts]
      topics: ["payments.*"]
      consumer_groups: ["analytics-*"]
      allow: [consume, describe]
      mask: pii
    - name: customer-pii-needs-approval
      groups: [analysts]
      topics: ["customers.pii.*"]
      consumer_groups: ["analytics-*"]
      allow: [consume, describe]
      approval: {reviewers: [security-oncall], grant_ttl: 1h, hold: 5s}
    - name: no-secrets-for-analysts
      groups: [analysts]
      topics: ["payments.secret*"]
      deny: [consume, describe]
    - name: platform-admins
      groups: [platform-admins]
      topics: ["*"]
      consumer_groups: ["*"]
      allow: [create, delete, alter, describe, describe_configs, alter_configs, produce, consume]
"""
DEMO_TOPICS = ("payments.orders", "payments.secret-keys", "customers.pii.profiles")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_config(path: Path, *, listen_port: int, node_port_base: int, broker: str, issuer: str,
                 audit_dir: Path, workers: int | None, admin_port: int, state_dir: Path) -> None:
    workers_line = f"  workers: {workers}\n" if workers else ""
    path.write_text(
        "# Written by `streamgate devstack` (make run): identity from the development OIDC provider,\n"
        "# the demo policy below, and a hash-chained audit trail (verify with `streamgate audit verify`).\n"
        "kafka:\n"
        f"  listen: 127.0.0.1:{listen_port}\n"
        "  advertised_host: 127.0.0.1\n"
        f"  node_port_base: {node_port_base}\n"
        "  upstream:\n"
        f"    bootstrap: {broker}\n"
        "identity:\n"
        f"  oidc: {{issuer: \"{issuer}\", audience: streamgate, groups_claim: groups}}\n"
        f"{DEMO_POLICY}"
        "audit:\n"
        "  sinks:\n"
        f"    - {{type: file, path: {audit_dir}/audit.jsonl}}\n"
        "admin:\n"
        f"  listen: 127.0.0.1:{admin_port}\n"
        "server:\n"
        f"{workers_line}"
        f"  state_dir: {state_dir}\n"
        "  drain_timeout: 5\n"
    )


TOKEN_TTL_S = 8 * 3600
TOKEN_REFRESH_S = 3600


def fetch_token(token_endpoint: str, client: str, secret: str) -> str:
    """A client-credentials access token from the development provider."""
    import json
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client,
                                   "client_secret": secret}).encode()
    with urllib.request.urlopen(urllib.request.Request(token_endpoint, data=body), timeout=10) as resp:
        return str(json.loads(resp.read())["access_token"])


def fetch_user_token(token_endpoint: str, user: str, password: str) -> str:
    """A password-grant token for a demo person (e.g. the reviewer), via the public CLI client."""
    import json
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"grant_type": "password", "username": user, "password": password,
                                   "client_id": "streamgate-cli"}).encode()
    with urllib.request.urlopen(urllib.request.Request(token_endpoint, data=body), timeout=10) as resp:
        return str(json.loads(resp.read())["access_token"])


def write_client_tokens(tokens: dict[str, Path], clients: dict[str, dict[str, Any]], token_endpoint: str) -> None:
    """A current access token per demo principal, in a 0600 file the printed commands read."""
    for name, path in tokens.items():
        if name in clients:
            path.write_text(fetch_token(token_endpoint, name, clients[name]["secret"]))
        else:
            path.write_text(fetch_user_token(token_endpoint, name, DEMO_USERS[name]["password"]))
        path.chmod(0o600)


def kcat_auth(client: str, token_file: Path) -> str:
    """kcat options for a demo principal. Debian's kcat is built without librdkafka's OIDC support, so the
    token goes in as the SASL/PLAIN password (the gateway accepts that as well as OAUTHBEARER)."""
    return (f"-X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=PLAIN -X sasl.username={client} "
            f"-X sasl.password=$(cat {token_file})")


def _create_topics(bootstrap: str, admin_token: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": "PLAIN", "sasl.username": ADMIN_CLIENT, "sasl.password": admin_token})
    futures = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in DEMO_TOPICS])
    for future in futures.values():
        future.result(30)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": "PLAIN", "sasl.username": ADMIN_CLIENT, "sasl.password": admin_token})
    producer.produce("customers.pii.profiles", key=b"cust-1",
                     value=b'{"name":"Ann Example","ssn":"123-45-6789","email":"ann@example.com"}')
    producer.flush(30)
    md = admin.list_topics(timeout=15)
    return ", ".join(f"node {b.id} at {b.host}:{b.port}" for b in md.brokers.values())


def run_devstack(port: int = 9092, workers: int | None = None, node_port_base: int | None = None) -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        print(f"error: port {port} on 127.0.0.1 is in use; stop what uses it or run "
              f"`streamgate devstack --port N`", file=sys.stderr)
        return 1
    if node_port_base is None:
        node_port_base = port + 8  # Tansu's node id is 111 -> 9092 + 8 + 111 = 9211
    broker_port = 19092 if _port_free(19092) else free_port()
    idp_port = 18080 if _port_free(18080) else free_port()
    admin_port = 8080 if _port_free(8080) else free_port()
    audit_dir = STATE_DIR / "audit"
    audit_dir.mkdir(exist_ok=True)
    clients = {**DEMO_CLIENTS, ADMIN_CLIENT: {"secret": "platform-admin-dev-secret", "groups": ["platform-admins"]}}
    started: list[ManagedProcess] = []
    gateway: subprocess.Popen[bytes] | None = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        broker = start_tansu(broker_port, log_path=STATE_DIR / "tansu.log")
        started.append(broker)
        idp = start_dev_idp(DEMO_USERS, clients, idp_port, test_endpoints=False, token_ttl_s=TOKEN_TTL_S,
                            log_path=STATE_DIR / "idp.log")
        started.append(idp)
        token_endpoint = str(idp.extra["token_endpoint"])
        config_path = STATE_DIR / "streamgate.yaml"
        write_config(config_path, listen_port=port, node_port_base=node_port_base, broker=broker.address,
                     issuer=str(idp.extra["issuer"]), audit_dir=audit_dir.resolve(), workers=workers,
                     admin_port=admin_port, state_dir=(STATE_DIR / "state").resolve())
        tokens = {client: STATE_DIR / f"{client}.token" for client, info in clients.items() if "secret" in info}
        tokens["carol"] = STATE_DIR / "carol.token"  # the demo reviewer (group security-oncall)
        write_client_tokens(tokens, clients, token_endpoint)
        refreshed_at = time.monotonic()
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config_path)])
        wait_for_port("127.0.0.1", port, 30, gateway)  # type: ignore[arg-type]
        seen = _create_topics(f"127.0.0.1:{port}", tokens[ADMIN_CLIENT].read_text())
        kcat = "kcat" if shutil.which("kcat") else "kcat (apt-get install kcat)"
        b = f"127.0.0.1:{port}"
        pay, ana = kcat_auth("payments-svc", tokens["payments-svc"]), kcat_auth("analytics-svc", tokens["analytics-svc"])
        admin = f"http://127.0.0.1:{admin_port}"
        reviewer = f"--admin {admin} --token $(cat {tokens['carol']})"
        print(f"""
Streamgate is running ({workers or os.cpu_count()} workers) with identity, a demo policy and an audit trail.
  broker (Tansu):      {broker.address}      <- only the gateway talks to it
  identity provider:   {idp.extra['issuer']}  (development only; principals below)
  gateway:             {b}      <- point clients here
  clients see:         {seen}
  reviewer page:       {admin}/  (sign in with the token in {tokens['carol']})
  config:              {config_path}
  audit trail:         {audit_dir}/  (verify: .venv/bin/streamgate audit verify {audit_dir})

Demo principals (a current access token for each is kept in {STATE_DIR}/<name>.token, refreshed hourly):
  payments-svc    group payments-svc    may write payments.* and customers.*
  analytics-svc   group analysts        reads payments.* with card numbers, SSNs, emails masked; never
                                        payments.secret*; customers.pii.* only after a reviewer approves
  carol           group security-oncall reviews approval requests
  {ADMIN_CLIENT}  group platform-admins administers every topic

Try it (copy and paste):
  # an allowed write, as payments-svc
  printf 'order-1:{{"card":{{"number":"4111111111111111"}},"customer":{{"ssn":"123-45-6789"}},"note":"paid by ann@example.com"}}\\n' | {kcat} {pay} -b {b} -t payments.orders -K: -P
  # an allowed read with masked fields, as analytics-svc
  {kcat} {ana} -b {b} -t payments.orders -C -e -f '%k => %s (offset %o)\\n'
  # a denied write: analysts may only read (expect "Topic authorization failed")
  printf 'x\\n' | {kcat} {ana} -b {b} -t payments.orders -P
  # topics an analyst may not describe are invisible to it
  {kcat} {ana} -b {b} -L
  # why? ask the policy
  .venv/bin/streamgate policy explain --config {config_path} --sub analytics-svc --groups analysts --action consume --topic payments.secret-keys
  # a held request: reading customer PII waits 5 s for a reviewer, then fails with "approval pending"
  timeout 15 {kcat} {ana} -b {b} -t customers.pii.profiles -C -e
  # the reviewer approves it (or use the reviewer page); then run the read above again
  .venv/bin/streamgate approvals list {reviewer}
  .venv/bin/streamgate approvals approve {reviewer} --reason "ticket SEC-42" $(.venv/bin/streamgate approvals list {reviewer} --ids-only | head -1)

Ctrl-C stops everything.
""", flush=True)
        while not stopping and gateway.poll() is None:
            time.sleep(0.2)
            if time.monotonic() - refreshed_at > TOKEN_REFRESH_S:
                write_client_tokens(tokens, clients, token_endpoint)
                refreshed_at = time.monotonic()
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        for proc in reversed(started):
            proc.stop()
    return 0 if stopping else ((gateway.returncode if gateway else 1) or 1)
