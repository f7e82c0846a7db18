"""The development OIDC provider as its clients see it: discovery, token endpoint, errors, hygiene, librdkafka."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from gateway.devstack.oidc import DEMO_CLIENTS, DEMO_USERS, start_dev_idp
from gateway.devstack.processes import ComponentError, ManagedProcess, free_port

pytestmark = pytest.mark.integration

CLIENT_SECRET = "svc-secret-c0ffee-1234"
USER_PASSWORD = "pw-for-alice-5678"
USERS = {"alice": {"password": USER_PASSWORD, "groups": ["analysts"], "email": "alice@example.com"}}
CLIENTS = {
    "svc": {"secret": CLIENT_SECRET, "groups": ["payments-svc", "auditors"], "claims": {"tenant": "t1"}},
    "public-cli": {"groups": []},
}


def request(
    url: str, *, form: dict[str, str] | None = None, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    data = None
    all_headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=all_headers), timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    log_path = tmp_path_factory.mktemp("dev-idp") / "idp.log"
    with start_dev_idp(USERS, CLIENTS, log_path=log_path, token_ttl_s=120) as handle:
        yield handle


def test_discovery_document(idp: ManagedProcess) -> None:
    status, _, doc = request(str(idp.extra["discovery_url"]))
    assert status == 200
    assert doc["issuer"] == idp.extra["issuer"] == f"http://127.0.0.1:{idp.port}"
    assert doc["token_endpoint"] == idp.extra["token_endpoint"]
    assert doc["jwks_uri"] == idp.extra["jwks_uri"]
    assert set(doc["grant_types_supported"]) == {"client_credentials", "password"}


def test_client_credentials_basic_and_post(idp: ManagedProcess) -> None:
    endpoint = str(idp.extra["token_endpoint"])
    status, headers, answer = request(
        endpoint,
        form={"grant_type": "client_credentials", "scope": "kafka"},
        headers=basic("svc", CLIENT_SECRET),
    )
    assert status == 200 and answer["token_type"] == "Bearer" and answer["scope"] == "kafka"
    assert headers["Cache-Control"] == "no-store"
    claims = claims_of(answer["access_token"])
    assert claims["sub"] == "svc" and claims["client_id"] == "svc"
    assert claims["aud"] == "streamgate" and claims["iss"] == idp.extra["issuer"]
    assert claims["groups"] == ["payments-svc", "auditors"] and claims["tenant"] == "t1"
    assert claims["exp"] - claims["iat"] == 120 and claims["scope"] == "kafka"
    header = json.loads(base64.urlsafe_b64decode(answer["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]

    status, _, posted = request(
        endpoint,
        form={"grant_type": "client_credentials", "client_id": "svc", "client_secret": CLIENT_SECRET},
    )
    assert status == 200
    assert claims_of(posted["access_token"])["jti"] != claims["jti"]  # every token is distinct


@pytest.mark.parametrize(
    ("form", "headers", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, basic("svc", "wrong"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, basic("nobody", "x"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, {}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "public-cli"}, {}, 401, "invalid_client"),
        (
            {"grant_type": "authorization_code", "code": "x"},
            basic("svc", CLIENT_SECRET),
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "password", "username": "alice", "password": "nope"}, {}, 400, "invalid_grant"),
        ({"grant_type": "password", "username": "mallory", "password": "x"}, {}, 400, "invalid_grant"),
        (
            {"grant_type": "password", "username": "alice", "password": USER_PASSWORD, "client_id": "svc"},
            {},
            401,
            "invalid_client",
        ),
    ],
)
def test_token_endpoint_errors(
    idp: ManagedProcess, form: dict[str, str], headers: dict[str, str], status: int, error: str
) -> None:
    got_status, got_headers, answer = request(str(idp.extra["token_endpoint"]), form=form, headers=headers)
    assert (got_status, answer["error"]) == (status, error)
    assert answer["error_description"]
    if status == 401:
        assert got_headers.get("WWW-Authenticate", "").startswith("Basic")


def test_password_grant(idp: ManagedProcess) -> None:
    status, _, answer = request(
        str(idp.extra["token_endpoint"]),
        form={
            "grant_type": "password",
            "username": "alice",
            "password": USER_PASSWORD,
            "client_id": "public-cli",
        },
    )
    assert status == 200
    claims = claims_of(answer["access_token"])
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.com"
    assert claims["groups"] == ["analysts"] and claims["preferred_username"] == "alice"


def test_secrets_never_reach_argv_disk_or_log(idp: ManagedProcess) -> None:
    status, _, answer = request(
        str(idp.extra["token_endpoint"]),
        form={"grant_type": "client_credentials"},
        headers=basic("svc", CLIENT_SECRET),
    )
    assert status == 200
    argv = Path(f"/proc/{idp.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert not any(CLIENT_SECRET.encode() in part or USER_PASSWORD.encode() in part for part in argv)
    config_path = Path(argv[argv.index(b"--config") + 1].decode())
    assert not config_path.exists() and not config_path.parent.exists()  # removed once the provider was up
    log = idp.log_text()
    assert "POST /token" in log  # the log is written...
    for secret in (
        CLIENT_SECRET,
        USER_PASSWORD,
        answer["access_token"],
        answer["access_token"].split(".")[2],
    ):
        assert secret not in log  # ...but holds no secret and no token


def test_test_endpoints_are_off_unless_asked_for() -> None:
    with start_dev_idp(DEMO_USERS, DEMO_CLIENTS, test_endpoints=False) as plain:
        status, _, _ = request(f"{plain.extra['issuer']}/test/mint", body={})
        assert status == 404
        status, _, _ = request(f"{plain.extra['issuer']}/test/stats")
        assert status == 404
        status, _, answer = request(
            str(plain.extra["token_endpoint"]),
            form={
                "grant_type": "password",
                "username": "alice",
                "password": DEMO_USERS["alice"]["password"],
                "client_id": "streamgate-cli",
            },
        )
        assert status == 200 and claims_of(answer["access_token"])["groups"] == ["analysts"]


def test_sigterm_stops_it_cleanly() -> None:
    handle = start_dev_idp({}, {})
    assert handle.stop(timeout=5) == 0


def test_fixed_port_and_startup_failure_is_reported() -> None:
    port = free_port()
    with start_dev_idp({}, {}, port=port) as first:
        assert first.port == port
        with pytest.raises(ComponentError, match="exited"):
            start_dev_idp({}, {}, port=port, timeout=10)  # address in use: the child exits, we say so


def _librdkafka_token_fetch(idp: ManagedProcess, secret: str, seconds: float) -> list[str]:
    errors: list[str] = []
    logger = logging.getLogger(f"librdkafka-{secret}")
    logger.propagate = False  # librdkafka logs "broker down" lines for the unused bootstrap port
    producer = confluent_kafka.Producer(
        {
            # Nothing listens here: librdkafka fetches its OIDC token before it needs a broker.
            "bootstrap.servers": f"127.0.0.1:{free_port()}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "svc",
            "sasl.oauthbearer.client.secret": secret,
            "sasl.oauthbearer.token.endpoint.url": idp.extra["token_endpoint"],
            "sasl.oauthbearer.scope": "kafka",
            "error_cb": lambda err: errors.append(str(err)),
        },
        logger=logger,
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        producer.poll(0.1)
        if any("OAUTHBEARER" in e for e in errors):
            break
    producer.flush(0)
    return errors


def test_librdkafka_oidc_method_gets_and_accepts_a_token(idp: ManagedProcess) -> None:
    before = request(f"{idp.extra['issuer']}/test/stats")[2]["token"]
    errors = _librdkafka_token_fetch(idp, CLIENT_SECRET, seconds=3)
    after = request(f"{idp.extra['issuer']}/test/stats")[2]["token"]
    assert after == before + 1  # librdkafka asked our token endpoint exactly once
    assert not [e for e in errors if "OAUTHBEARER" in e or "_AUTHENTICATION" in e]
    assert any("_TRANSPORT" in e or "brokers are down" in e for e in errors)  # it moved on to the broker


def test_librdkafka_reports_a_refused_client_secret(idp: ManagedProcess) -> None:
    errors = _librdkafka_token_fetch(idp, "not-the-secret", seconds=15)
    failures = [e for e in errors if "Failed to acquire SASL OAUTHBEARER token" in e]
    assert failures and "invalid_client" in failures[0]
    assert "not-the-secret" not in " ".join(errors)


LAUNCHER = """
import time
from gateway.devstack.oidc import start_dev_idp
idp = start_dev_idp({}, {})
print(idp.proc.pid, flush=True)
time.sleep(120)
"""


def test_provider_exits_when_its_launcher_is_killed() -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert launcher.stdout is not None
        idp_pid = int(launcher.stdout.readline())
        assert Path(f"/proc/{idp_pid}").exists()
        launcher.kill()  # SIGKILL: no cleanup code in the launcher runs
        launcher.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(idp_pid):
            time.sleep(0.1)
        assert not _alive(idp_pid)
    finally:
        launcher.kill()
        launcher.wait(10)
        if launcher.stdout is not None:
            launcher.stdout.close()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
