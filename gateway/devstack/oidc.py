"""Start the development OpenID Connect provider (`dev_idp.py`) as a real child process.

Tests, the bench suite and `make run` use this to get an issuer URL with discovery, JWKS and a token endpoint
that librdkafka's `sasl.oauthbearer.method=oidc`, kafkajs and our own JWKS client talk to over HTTP(S).

The rule it keeps: secrets (user passwords, client secrets) reach the child through a 0600 config file in a
private temporary directory that is deleted as soon as the provider reports it is listening, never through
argv or the environment; readiness is an observed event (the ready file plus an accepting port), not a
sleep; and the provider exits by itself when the process that started it dies (a test run killed by a timeout
leaves no provider behind).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.devstack.processes import ComponentError, ManagedProcess, _spawn, wait_for_port

DEV_IDP_SCRIPT = Path(__file__).with_name("dev_idp.py")

# The demo identities of `make run`, matching the demo policy's groups. Development-only credentials.
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-dev-password", "groups": ["analysts"], "email": "alice@example.com"},
    "bob": {"password": "bob-dev-password", "groups": ["payments-svc"], "email": "bob@example.com"},
    "carol": {"password": "carol-dev-password", "groups": ["security-oncall"], "email": "carol@example.com"},
    "dave": {
        "password": "dave-dev-password",
        "groups": ["analysts", "payments-svc"],
        "email": "dave@example.com",
    },
}
DEMO_CLIENTS: dict[str, dict[str, Any]] = {
    "payments-svc": {"secret": "payments-svc-dev-secret", "groups": ["payments-svc"]},
    "analytics-svc": {"secret": "analytics-svc-dev-secret", "groups": ["analysts"]},
    # A public client for the password grant from CLIs and the examples `make run` prints.
    "streamgate-cli": {"groups": []},
}


def start_dev_idp(
    users: dict[str, dict[str, Any]],
    clients: dict[str, dict[str, Any]],
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    audience: str = "streamgate",
    groups_claim: str = "groups",
    token_ttl_s: int = 300,
    issuer_path: str = "",
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    test_endpoints: bool = True,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """Start the provider and wait until it serves; `.extra` carries issuer, endpoints and audience.

    `users`: {name: {"password", "groups", "email"?, "claims"?, "sub"?}};
    `clients`: {client_id: {"secret"?, "groups", "sub"?, "email"?, "claims"?, "audience"?}}.
    `issuer_path` (e.g. "/realms/demo") puts the issuer below a path, as Keycloak does.
    `test_endpoints` enables /test/mint, /test/rotate and /test/stats (tests only; off for `make run`).
    """
    config = {
        "users": users,
        "clients": clients,
        "audience": audience,
        "groups_claim": groups_claim,
        "token_ttl_s": token_ttl_s,
        "issuer_path": issuer_path,
        "test_endpoints": test_endpoints,
    }
    workdir = Path(tempfile.mkdtemp(prefix="streamgate-idp-"))  # mkdtemp makes it 0700
    try:
        config_path = workdir / "config.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        ready_path = workdir / "ready.json"
        argv = [
            sys.executable,
            str(DEV_IDP_SCRIPT),
            "--config",
            str(config_path),
            "--host",
            host,
            "--port",
            str(port or 0),
            "--ready-file",
            str(ready_path),
            "--parent-pid",
            str(os.getpid()),
        ]
        if tls_cert is not None:
            if tls_key is None:
                raise ComponentError("dev IdP: tls_cert given without tls_key")
            argv += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        proc = _spawn("dev-idp", argv, log_path, None)
        handle = ManagedProcess("dev-idp", proc, host, port or 0, log_path)
        try:
            ready = _wait_ready(ready_path, handle, timeout)
            handle.port = int(ready["port"])
            wait_for_port(host, handle.port, timeout, proc)
        except ComponentError:
            handle.stop()
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    issuer = str(ready["issuer"])
    handle.extra.update(
        issuer=issuer,
        discovery_url=f"{issuer}/.well-known/openid-configuration",
        jwks_uri=f"{issuer}/jwks",
        token_endpoint=f"{issuer}/token",
        audience=audience,
        groups_claim=groups_claim,
        test_endpoints=test_endpoints,
    )
    return handle


def _wait_ready(ready_path: Path, handle: ManagedProcess, timeout: float) -> dict[str, Any]:
    """Poll (with a deadline) for the ready file the provider writes once its socket is bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_path.exists():
            return dict(json.loads(ready_path.read_text(encoding="utf-8")))
        if handle.proc.poll() is not None:
            tail = handle.log_text()[-2000:]
            raise ComponentError(
                f"dev IdP exited with {handle.proc.returncode} before listening. {tail}".strip()
            )
        time.sleep(0.05)
    raise ComponentError(f"dev IdP did not report ready within {timeout:.0f}s")
