"""Fixtures for identity tests: a real development OIDC provider process and small HTTP helpers to talk to it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess

USERS = {
    "alice": {"password": "alice-pw-7f3a", "groups": ["analysts"], "email": "alice@example.com"},
    "dave": {"password": "dave-pw-91c2", "groups": ["analysts", "payments-svc"]},
}
CLIENTS = {
    "payments-svc": {
        "secret": "payments-secret-4b1e",
        "groups": ["payments-svc"],
        "email": "payments@example.com",
    },
    "cli": {"groups": []},
}


def http_json(
    url: str, *, form: dict[str, str] | None = None, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One HTTP request to the provider; returns (status, parsed JSON body) for errors too."""
    data = None
    all_headers = dict(headers or {})
    if form is not None:
        data = "&".join(
            f"{urllib.request.quote(k)}={urllib.request.quote(v)}" for k, v in form.items()
        ).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=all_headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture(scope="session")
def dev_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    log_path = tmp_path_factory.mktemp("idp") / "dev-idp.log"
    idp = start_dev_idp(USERS, CLIENTS, log_path=log_path)
    try:
        yield idp
    finally:
        idp.stop()


@pytest.fixture(scope="session")
def mint(dev_idp: ManagedProcess) -> Callable[..., str]:
    """mint(claims={...}, header={...}, sign="current"|"unpublished"|"es256"|"eddsa"|"none"|"hs256-public-key")."""

    def _mint(**spec: Any) -> str:
        status, answer = http_json(f"{dev_idp.extra['issuer']}/test/mint", body=spec)
        assert status == 200, answer
        return str(answer["token"])

    return _mint


def idp_stats(idp: ManagedProcess) -> dict[str, int]:
    status, answer = http_json(f"{idp.extra['issuer']}/test/stats")
    assert status == 200
    return dict(answer)


@pytest.fixture(scope="session")
def http() -> Callable[..., tuple[int, Any]]:
    return http_json


@pytest.fixture(scope="session")
def stats() -> Callable[[ManagedProcess], dict[str, int]]:
    return idp_stats


@pytest.fixture(scope="session")
def basic_auth() -> Callable[[str, str], dict[str, str]]:
    return basic


@pytest.fixture(scope="session")
def idp_users() -> dict[str, dict[str, Any]]:
    return USERS


@pytest.fixture(scope="session")
def idp_clients() -> dict[str, dict[str, Any]]:
    return CLIENTS
