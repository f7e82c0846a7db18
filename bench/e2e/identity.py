"""The identity side of the bench: one development OIDC provider per run and the bench principal's credentials.

The "identity" mode measures what identity + policy + audit cost, so its clients must authenticate the way
real ones do: librdkafka's own OIDC client-credentials flow (`sasl.oauthbearer.method=oidc`) for the
confluent-kafka workloads, and, for the raw sockets of the connection-scaling scenario, SASL PLAIN with an
access token from the provider's token endpoint as password. The provider is started once per run and only
when a mode needs it. The client secret is random per run and reaches client processes through their
environment (`bench.e2e.harness.ClientProcess`), never through argv, logs or the result file.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess

BENCH_CLIENT_ID = "streamgate-bench"
BENCH_GROUP = "bench-clients"  # the group examples/bench-identity.yaml's policy allows
AUDIENCE = "streamgate"
# Longer than any run: a bench client must never measure a token refresh or a KIP-368 re-authentication.
TOKEN_TTL_S = 4 * 3600
TOKEN_TIMEOUT_S = 10.0


class BenchIdentity:
    """A running development IdP with one confidential client, the bench principal."""

    def __init__(self, provider: ManagedProcess, client_secret: str) -> None:
        self._provider = provider
        self._client_secret = client_secret

    @classmethod
    def start(cls, log_dir: Path | None = None) -> BenchIdentity:
        client_secret = secrets.token_urlsafe(24)
        provider = start_dev_idp(
            {},
            {BENCH_CLIENT_ID: {"secret": client_secret, "groups": [BENCH_GROUP]}},
            audience=AUDIENCE,
            token_ttl_s=TOKEN_TTL_S,
            test_endpoints=False,
            log_path=log_dir / "idp.log" if log_dir else None,
        )
        return cls(provider, client_secret)

    def stop(self) -> None:
        self._provider.stop()

    def alive(self) -> bool:
        return self._provider.proc.poll() is None

    @property
    def issuer(self) -> str:
        return str(self._provider.extra["issuer"])

    @property
    def token_endpoint(self) -> str:
        return str(self._provider.extra["token_endpoint"])

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings of a client that authenticates with its own OIDC method (standard config only)."""
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": BENCH_CLIENT_ID,
            "sasl.oauthbearer.client.secret": self._client_secret,
            "sasl.oauthbearer.token.endpoint.url": self.token_endpoint,
        }

    def fetch_token(self) -> str:
        """An access token from the token endpoint (client_credentials grant, client_secret_basic)."""
        credentials = base64.b64encode(f"{BENCH_CLIENT_ID}:{self._client_secret}".encode()).decode()
        request = urllib.request.Request(
            self.token_endpoint,
            data=b"grant_type=client_credentials",
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_S) as response:
            return str(json.loads(response.read())["access_token"])

    def raw_sasl(self) -> dict[str, str]:
        """SASL PLAIN credentials for hand-encoded connections: the token is the password (docs/identity.md)."""
        return {"mechanism": "PLAIN", "username": BENCH_CLIENT_ID, "password": self.fetch_token()}
