"""JwksClient and RefreshingTokenValidator against a real OIDC provider process (and real failing endpoints)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.devstack.oidc import start_dev_idp
from gateway.devstack.processes import ManagedProcess, free_port
from gateway.enforcement.identity import TokenError, TokenValidator
from gateway.worker.jwks import JwksClient, JwksFetchError, RefreshingTokenValidator

pytestmark = pytest.mark.integration
DISCOVERY = "/.well-known/openid-configuration"


class Clock:
    """Real time plus an offset the test moves forward (tokens carry real timestamps)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="module")
def private_idp() -> Iterator[ManagedProcess]:
    """A provider of our own: these tests rotate its keys, which must not disturb other modules."""
    with start_dev_idp({}, {"svc": {"secret": "svc-secret-77aa", "groups": ["g"]}}) as idp:
        yield idp


def mint_on(idp: ManagedProcess, http: Callable[..., Any], **spec: Any) -> str:
    status, answer = http(f"{idp.extra['issuer']}/test/mint", body=spec)
    assert status == 200
    return str(answer["token"])


def jwks_served(idp: ManagedProcess, stats: Callable[[ManagedProcess], dict[str, int]]) -> int:
    return stats(idp)["jwks"]


def test_discovery_and_jwks(dev_idp: ManagedProcess, http: Callable[..., Any]) -> None:
    client = JwksClient(str(dev_idp.extra["issuer"]))
    discovery = asyncio.run(client.discover())
    assert discovery["jwks_uri"] == dev_idp.extra["jwks_uri"]
    assert discovery["token_endpoint"] == dev_idp.extra["token_endpoint"]
    assert "client_credentials" in discovery["grant_types_supported"]
    jwks = asyncio.run(client.fetch_jwks())
    status, direct = http(str(dev_idp.extra["jwks_uri"]))
    assert status == 200
    assert [k["kid"] for k in jwks["keys"]] == [k["kid"] for k in direct["keys"]]
    assert {k["kty"] for k in jwks["keys"]} == {"RSA", "EC", "OKP"}
    assert all("d" not in k for k in jwks["keys"])  # only public parameters are published


def test_proxy_variables_are_ignored(dev_idp: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # Signing keys are fetched from the IdP directly; a stray proxy setting must neither reroute nor break it.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: a proxy here would fail every request
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    jwks = asyncio.run(JwksClient(str(dev_idp.extra["issuer"])).fetch_jwks())
    assert len(jwks["keys"]) == 3


def test_issuer_mismatch_in_discovery_is_an_error(dev_idp: ManagedProcess) -> None:
    issuer = str(dev_idp.extra["issuer"]) + "/"  # the same server, but not the issuer it claims to be
    with pytest.raises(JwksFetchError) as info:
        asyncio.run(JwksClient(issuer).fetch_jwks())
    message = str(info.value)
    assert "/.well-known/openid-configuration" in message
    assert f"expected {issuer!r}" in message


def test_connection_refused_names_the_url() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(JwksFetchError) as info:
        asyncio.run(JwksClient(issuer).fetch_jwks())
    assert f"from {issuer}/.well-known/openid-configuration failed" in str(info.value)
    assert "refused" in str(info.value).lower()


def test_http_error_status_is_reported(dev_idp: ManagedProcess) -> None:
    issuer = str(dev_idp.extra["issuer"]) + "/no/such/realm"
    with pytest.raises(JwksFetchError, match="HTTP status 404"):
        asyncio.run(JwksClient(issuer).discover())


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever answers
        issuer = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(JwksFetchError) as info:
            asyncio.run(JwksClient(issuer, timeout_s=0.5).discover())
        assert time.monotonic() - started < 5
    assert issuer in str(info.value)
    assert "timed out" in str(info.value) or "no answer within" in str(info.value)


def _write_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamgate test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


def test_https_issuer_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = _write_ca_and_server_cert(tmp_path)
    with start_dev_idp({}, {}, tls_cert=cert, tls_key=key) as idp:
        issuer = str(idp.extra["issuer"])
        assert issuer.startswith("https://127.0.0.1:")
        jwks = asyncio.run(JwksClient(issuer, ca_file=str(ca)).fetch_jwks())
        assert len(jwks["keys"]) == 3
        with pytest.raises(JwksFetchError) as info:
            asyncio.run(JwksClient(issuer).discover())  # system trust store does not know our CA
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) and issuer in str(info.value)


def test_key_rotation_refetch_is_shared_and_rate_limited(
    private_idp: ManagedProcess, http: Callable[..., Any], stats: Callable[[ManagedProcess], dict[str, int]]
) -> None:
    issuer = str(private_idp.extra["issuer"])

    async def scenario() -> None:
        clock = Clock()
        validator = TokenValidator(
            issuer=issuer,
            audience="streamgate",
            unknown_kid_refetch_interval_s=30,
            jwks_refresh_interval_s=300,
            now=clock,
        )
        refreshing = RefreshingTokenValidator(validator, JwksClient(issuer), clock=clock)
        served = jwks_served(private_idp, stats)

        assert (await refreshing.validate(mint_on(private_idp, http, claims={"sub": "first"}))).sub == "first"
        assert jwks_served(private_idp, stats) == served + 1  # keys fetched before the first validation

        status, rotated = http(f"{issuer}/test/rotate", body={})
        assert status == 200
        new_key_token = mint_on(private_idp, http, claims={"sub": "after-rotation"})
        results = await asyncio.gather(*(refreshing.validate(new_key_token) for _ in range(20)))
        assert {p.sub for p in results} == {"after-rotation"}
        assert jwks_served(private_idp, stats) == served + 2  # twenty sessions, one refetch
        assert rotated["kid"] in validator.status().key_ids

        unknown = mint_on(private_idp, http, sign="unpublished")
        for _ in range(5):
            with pytest.raises(TokenError) as info:
                await refreshing.validate(unknown)
            assert info.value.reason == "unknown_kid"
        assert jwks_served(private_idp, stats) == served + 2  # rate limit: no refetch within 30s

        clock.advance(31)
        with pytest.raises(TokenError):
            await refreshing.validate(unknown)
        assert jwks_served(private_idp, stats) == served + 3  # one refetch once the interval passed

    asyncio.run(scenario())


def test_scheduled_refresh_runs_behind_validation(
    private_idp: ManagedProcess, http: Callable[..., Any], stats: Callable[[ManagedProcess], dict[str, int]]
) -> None:
    issuer = str(private_idp.extra["issuer"])

    async def scenario() -> None:
        clock = Clock()
        validator = TokenValidator(
            issuer=issuer, audience="streamgate", jwks_refresh_interval_s=300, now=clock
        )
        refreshing = RefreshingTokenValidator(validator, JwksClient(issuer), clock=clock)
        await refreshing.refresh()
        served = jwks_served(private_idp, stats)
        token = mint_on(private_idp, http, ttl_s=3600)

        await refreshing.validate(token)
        assert refreshing.pending_refresh is None  # fresh keys: no fetch
        clock.advance(301)
        assert (await refreshing.validate(token)).sub == "test-user"  # served from the stale keys...
        pending = refreshing.pending_refresh
        assert pending is not None  # ...while the refresh runs behind it
        assert await pending is True
        assert jwks_served(private_idp, stats) == served + 1
        assert not validator.needs_refresh(clock())

    asyncio.run(scenario())


def test_failed_refresh_keeps_the_old_keys(http: Callable[..., Any]) -> None:
    idp = start_dev_idp({}, {})
    try:
        issuer = str(idp.extra["issuer"])
        token = mint_on(idp, http, ttl_s=3600)

        async def scenario() -> None:
            clock = Clock()
            validator = TokenValidator(
                issuer=issuer, audience="streamgate", jwks_refresh_interval_s=60, now=clock
            )
            refreshing = RefreshingTokenValidator(validator, JwksClient(issuer, timeout_s=2), clock=clock)
            assert await refreshing.refresh()
            idp.stop()  # the identity provider goes away
            clock.advance(61)
            assert (await refreshing.validate(token)).sub == "test-user"
            pending = refreshing.pending_refresh
            assert pending is not None and await pending is False
            assert refreshing.last_error is not None and issuer in refreshing.last_error
            # Still served from the old keys, and no new attempt before the retry delay.
            assert (await refreshing.validate(token)).sub == "test-user"
            assert refreshing.pending_refresh is None and refreshing.fetch_count == 2

        asyncio.run(scenario())
    finally:
        idp.stop()


def test_unreachable_issuer_is_reported_as_jwks_unavailable() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    # Well-formed enough to reach key selection: {"alg":"RS256","kid":"k1"} . {} . signature
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA"

    async def scenario() -> None:
        clock = Clock()
        validator = TokenValidator(issuer=issuer, audience="streamgate", now=clock)
        refreshing = RefreshingTokenValidator(
            validator, JwksClient(issuer), retry_after_failure_s=5, clock=clock
        )
        for _ in range(3):
            with pytest.raises(TokenError) as info:
                await refreshing.validate(token)
            assert info.value.reason == "jwks_unavailable"
            assert f"{issuer}/.well-known/openid-configuration" in str(info.value)
        assert refreshing.fetch_count == 1  # no retry storm before retry_after_failure_s
        clock.advance(6)
        with pytest.raises(TokenError):
            await refreshing.validate(token)
        assert refreshing.fetch_count == 2

    asyncio.run(scenario())


# ---- HTTP framing, against a scripted server on a real socket ------------------------------------------

DOC = b'{"issuer": "ISSUER", "jwks_uri": "ISSUER/jwks"}'


def _chunked(body: bytes, size: int = 7) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: y\r\n\r\n"


async def _serve_script(responses: dict[str, Callable[[str], bytes]]) -> tuple[asyncio.Server, str]:
    """A server that answers each request path with responses[path](issuer) and closes the connection."""
    issuer_box: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        writer.write(
            responses.get(path, lambda _i: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")(
                issuer_box[0]
            )
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    issuer = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    issuer_box.append(issuer)
    return server, issuer


def _ok(body: Callable[[str], bytes], framing: str = "length") -> Callable[[str], bytes]:
    def respond(issuer: str) -> bytes:
        data = body(issuer)
        if framing == "chunked":
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(data)
        if framing == "close":
            return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + data
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)

    return respond


def _doc(issuer: str) -> bytes:
    return DOC.replace(b"ISSUER", issuer.encode())


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_body_framings(framing: str) -> None:
    async def scenario() -> None:
        server, issuer = await _serve_script(
            {
                DISCOVERY: _ok(_doc, framing),
                "/jwks": _ok(lambda _i: b'{"keys": [{"kty": "oct"}]}', framing),
            }
        )
        async with server:
            assert (await JwksClient(issuer).fetch_jwks()) == {"keys": [{"kty": "oct"}]}

    asyncio.run(scenario())


def test_redirects_are_followed_a_few_times_only() -> None:
    def redirect(location: str) -> Callable[[str], bytes]:
        return lambda _i: f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()

    async def scenario() -> None:
        server, issuer = await _serve_script(
            {
                DISCOVERY: _ok(_doc),
                "/jwks": redirect("/keys/v2"),
                "/keys/v2": redirect("/keys/v3"),
                "/keys/v3": _ok(lambda _i: b'{"keys": []}'),
                "/loop": redirect("/loop"),
            }
        )
        async with server:
            assert (await JwksClient(issuer).fetch_jwks()) == {"keys": []}
            with pytest.raises(JwksFetchError, match="more than 3 redirects"):
                await JwksClient(issuer)._get_json(f"{issuer}/loop", "JWKS")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda _i: b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x response"),
        (lambda _i: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "closed in the middle of the body"),
        (lambda _i: b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "larger than"),
        (lambda _i: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (lambda _i: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "not a JSON object"),
        (lambda _i: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{{{", "not JSON"),
        (lambda _i: b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "HTTP status 500"),
        (lambda _i: b"", "connection closed before a complete response"),
        (lambda _i: b"HTTP/1.0 200 OK\r\n\r\n" + b" " * (70_000), "larger than"),
    ],
)
def test_broken_answers_are_named(reply: Callable[[str], bytes], message: str) -> None:
    async def scenario() -> None:
        server, issuer = await _serve_script({DISCOVERY: reply})
        async with server:
            with pytest.raises(JwksFetchError) as info:
                await JwksClient(issuer, max_bytes=65536).discover()
            assert message in str(info.value)
            assert f"{issuer}{DISCOVERY}" in str(info.value)

    asyncio.run(scenario())
