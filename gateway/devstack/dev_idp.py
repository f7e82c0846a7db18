"""A small but real OpenID Connect provider for development, tests and `make run`.

It runs as its own process (`python dev_idp.py --config FILE`) and speaks plain HTTP(S) like any IdP:

* `GET  {issuer}/.well-known/openid-configuration`  discovery document
* `GET  {issuer}/jwks`                                the public signing keys (RSA, EC P-256, Ed25519)
* `POST {issuer}/token`                               `client_credentials` (client_secret_basic or _post) and
                                                      `password` grants; answers an RS256 JWT access token
                                                      with `sub`, `aud`, `exp`, `iat`, `nbf` and the
                                                      configured groups at the configured claim path
* `POST {issuer}/test/mint`, `/test/rotate`, `GET /test/stats`  (only with `"test_endpoints": true`)
                                                      mint tokens with arbitrary claims and headers, signed by
                                                      a published key, an unpublished one, `alg: none` or
                                                      HS256 keyed with the RSA public key; rotate the signing
                                                      key; count requests served

The rule it keeps: it is standalone (stdlib + `cryptography`, no gateway imports) so that the gateway's token
code is tested against an independent implementation, and it never writes a secret or a token to its log.
The config file is JSON: {"audience", "groups_claim", "token_ttl_s", "issuer_path", "test_endpoints",
"users": {name: {"password", "groups", "email", "claims"}}, "clients": {id: {"secret", "groups", "sub",
"email", "claims", "audience"}}}.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

MAX_BODY_BYTES = 65536


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


class SigningKey:
    """One private key with its kid; `public_jwk` is what the JWKS publishes."""

    def __init__(self, kid: str, alg: str, private: Any) -> None:
        self.kid, self.alg, self.private = kid, alg, private

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> SigningKey:
        kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:12]}"
        if alg == "RS256":
            return cls(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        if alg == "ES256":
            return cls(kid, alg, ec.generate_private_key(ec.SECP256R1()))
        if alg == "EdDSA":
            return cls(kid, alg, ed25519.Ed25519PrivateKey.generate())
        raise ValueError(f"unsupported signing algorithm {alg}")

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if self.alg == "RS256":
            numbers = public.public_numbers()
            return {
                "kty": "RSA",
                "kid": self.kid,
                "use": "sig",
                "alg": "RS256",
                "n": _uint(numbers.n),
                "e": _uint(numbers.e),
            }
        if self.alg == "ES256":
            numbers = public.public_numbers()
            return {
                "kty": "EC",
                "kid": self.kid,
                "use": "sig",
                "alg": "ES256",
                "crv": "P-256",
                "x": _uint(numbers.x, 32),
                "y": _uint(numbers.y, 32),
            }
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "crv": "Ed25519",
            "x": b64url(raw),
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg == "RS256":
            return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private.sign(signing_input)


def encode_jws(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def _set_path(claims: dict[str, Any], dotted: str, value: Any) -> None:
    """Put `value` at a dotted claim path, creating nested objects (`realm_access.roles`)."""
    parts = dotted.split(".")
    node = claims
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


class Provider:
    """The provider's state: configuration, keys and request counters. Thread-safe for the handler threads."""

    def __init__(self, config: dict[str, Any], base_url: str) -> None:
        self.issuer = base_url + str(config.get("issuer_path", "")).rstrip("/")
        self.path_prefix = urlsplit(self.issuer).path
        self.audience: str = config.get("audience", "streamgate")
        self.groups_claim: str = config.get("groups_claim", "groups")
        self.token_ttl_s = int(config.get("token_ttl_s", 300))
        self.users: dict[str, dict[str, Any]] = config.get("users", {})
        self.clients: dict[str, dict[str, Any]] = config.get("clients", {})
        self.test_endpoints = bool(config.get("test_endpoints", False))
        self.lock = threading.Lock()
        self.current = SigningKey.generate("RS256")
        self.published: list[SigningKey] = [
            self.current,
            SigningKey.generate("ES256"),
            SigningKey.generate("EdDSA"),
        ]
        # Signs tokens whose kid no JWKS ever lists (the "unknown kid" case).
        self.unpublished = SigningKey.generate("RS256", kid="unpublished-" + uuid.uuid4().hex[:8])
        self.stats = {"discovery": 0, "jwks": 0, "token": 0, "mint": 0}

    def count(self, what: str) -> None:
        with self.lock:
            self.stats[what] += 1

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": ["client_credentials", "password"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email"],
            "claims_supported": [
                "sub",
                "aud",
                "exp",
                "iat",
                "nbf",
                "iss",
                "email",
                self.groups_claim.split(".")[0],
            ],
        }

    def jwks(self) -> dict[str, Any]:
        with self.lock:
            return {"keys": [key.public_jwk() for key in self.published]}

    def access_token(
        self,
        sub: str,
        groups: list[str],
        extra: dict[str, Any],
        audience: str | None,
        scope: str | None,
        client_id: str | None,
    ) -> tuple[str, int]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience or self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.token_ttl_s,
            "jti": uuid.uuid4().hex,
        }
        if client_id:
            claims["client_id"] = client_id
        if scope:
            claims["scope"] = scope
        _set_path(claims, self.groups_claim, list(groups))
        claims.update(extra)
        with self.lock:
            key = self.current
        header = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
        return encode_jws(header, claims, key.sign), self.token_ttl_s

    def mint(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Test helper: a token with caller-chosen claims/header, signed as `spec["sign"]` says."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "test-user",
            "aud": self.audience,
            "iat": now,
            "exp": now + int(spec.get("ttl_s", self.token_ttl_s)),
            "jti": uuid.uuid4().hex,
        }
        groups = spec.get("groups")
        if groups is not None:
            _set_path(claims, self.groups_claim, groups)
        for name, value in dict(spec.get("claims", {})).items():
            if value is None:
                claims.pop(name, None)  # null means "leave this claim out"
            else:
                claims[name] = value
        sign_as = spec.get("sign", "current")
        with self.lock:
            by_name = {
                "current": self.current,
                "unpublished": self.unpublished,
                "es256": self.published[1],
                "eddsa": self.published[2],
            }
            current = self.current
        if sign_as in by_name:
            key = by_name[sign_as]
            header: dict[str, Any] = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
            signer = key.sign
        elif sign_as == "none":
            header = {"alg": "none", "typ": "JWT", "kid": current.kid}
            signer = lambda _data: b""  # an unsigned token has an empty signature
        elif sign_as == "hs256-public-key":
            # The algorithm-confusion forgery: HMAC keyed with the published RSA public key.
            secret = current.public_pem()
            header = {"alg": "HS256", "typ": "JWT", "kid": current.kid}
            signer = lambda data: hmac.new(secret, data, hashlib.sha256).digest()
        else:
            raise ValueError(f"unknown sign mode {sign_as!r}")
        for name, value in dict(spec.get("header", {})).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        self.count("mint")
        return {"token": encode_jws(header, claims, signer), "kid": header.get("kid")}

    def rotate(self, retire_old: bool) -> dict[str, Any]:
        fresh = SigningKey.generate("RS256")
        with self.lock:
            if retire_old:
                self.published = [k for k in self.published if k.alg != "RS256"]
            self.published.insert(0, fresh)
            self.current = fresh
        return {"kid": fresh.kid}


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _secret_matches(expected: Any, given: str | None) -> bool:
    return (
        isinstance(expected, str)
        and given is not None
        and hmac.compare_digest(expected.encode(), given.encode())
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "streamgate-dev-idp/1"
    provider: Provider  # set on the subclass built in main()

    # ---- plumbing --------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line only; Authorization headers and bodies never reach the log.
        sys.stderr.write(f"dev-idp {self.address_string()} {format % args}\n")

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise OAuthError(413, "invalid_request", "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self) -> str | None:
        path = urlsplit(self.path).path
        prefix = self.provider.path_prefix
        if prefix and not path.startswith(prefix + "/"):
            return None
        return path[len(prefix) :]

    # ---- endpoints -------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # http.server's naming
        route = self._route()
        provider = self.provider
        if route == "/.well-known/openid-configuration":
            provider.count("discovery")
            self._send_json(200, provider.discovery())
        elif route == "/jwks":
            provider.count("jwks")
            self._send_json(200, provider.jwks())
        elif route == "/test/stats" and provider.test_endpoints:
            with provider.lock:
                self._send_json(200, dict(provider.stats))
        else:
            self._send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        route = self._route()
        provider = self.provider
        try:
            body = self._body()
            if route == "/token":
                provider.count("token")
                self._send_json(200, self._token(body))
            elif route == "/test/mint" and provider.test_endpoints:
                self._send_json(200, provider.mint(json.loads(body or b"{}")))
            elif route == "/test/rotate" and provider.test_endpoints:
                spec = json.loads(body or b"{}")
                self._send_json(200, provider.rotate(bool(spec.get("retire_old", False))))
            else:
                self._send_json(404, {"error": "not_found"})
        except OAuthError as exc:
            extra = {"WWW-Authenticate": 'Basic realm="dev-idp"'} if exc.status == 401 else None
            self._send_json(exc.status, {"error": exc.error, "error_description": exc.description}, extra)
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": "invalid_request", "error_description": str(exc)})

    def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "malformed Basic authorization header") from None
            client_id, _, secret = decoded.partition(":")
            # RFC 6749 section 2.3.1: both parts are form-urlencoded before base64.
            return unquote_plus(client_id), unquote_plus(secret)
        return form.get("client_id"), form.get("client_secret")

    def _token(self, body: bytes) -> dict[str, Any]:
        provider = self.provider
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise OAuthError(
                400, "invalid_request", "body is not application/x-www-form-urlencoded"
            ) from None
        form = {name: values[0] for name, values in parsed.items()}
        grant = form.get("grant_type")
        client_id, secret = self._client_credentials(form)
        client = provider.clients.get(client_id) if client_id else None
        scope = form.get("scope") or None

        if grant == "client_credentials":
            if client is None or not _secret_matches(client.get("secret"), secret):
                raise OAuthError(401, "invalid_client", "unknown client or wrong client secret")
            extra = dict(client.get("claims", {}))
            if client.get("email"):
                extra["email"] = client["email"]
            token, ttl = provider.access_token(
                client.get("sub", client_id),
                client.get("groups", []),
                extra,
                client.get("audience"),
                scope,
                client_id,
            )
        elif grant == "password":
            # Clients are optional for the password grant (a CLI is a public client), but a named client
            # that has a secret must present it.
            if client_id is not None and (
                client is None or ("secret" in client and not _secret_matches(client["secret"], secret))
            ):
                raise OAuthError(401, "invalid_client", "unknown client or wrong client secret")
            username = form.get("username", "")
            user = provider.users.get(username)
            if user is None or not _secret_matches(user.get("password"), form.get("password")):
                raise OAuthError(400, "invalid_grant", "unknown user or wrong password")
            extra = dict(user.get("claims", {}))
            if user.get("email"):
                extra["email"] = user["email"]
            extra.setdefault("preferred_username", username)
            token, ttl = provider.access_token(
                user.get("sub", username), user.get("groups", []), extra, None, scope, client_id
            )
        else:
            raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")
        response: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
        if scope:
            response["scope"] = scope
        return response


def _exit_with_parent(parent_pid: int, server: ThreadingHTTPServer) -> None:
    """Shut the server down once we are re-parented, i.e. the launching process has died."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    sys.stderr.write(f"dev-idp: launcher {parent_pid} is gone, shutting down\n")
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Development OpenID Connect provider")
    parser.add_argument("--config", required=True, help="JSON config file (users, clients, audience ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help="write {port, issuer} here once listening")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the launcher) is gone")
    args = parser.parse_args(argv)

    with open(args.config, encoding="utf-8") as fh:
        config = json.load(fh)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    scheme = "http"
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    provider = Provider(config, f"{scheme}://{args.host}:{port}")
    handler = type("BoundHandler", (Handler,), {"provider": provider})
    server.RequestHandlerClass = handler

    def stop(_signum: int, _frame: Any) -> None:
        # serve_forever must be stopped from another thread than the one running it.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.parent_pid:
        # The launcher starts us in our own session, so a killed test run would otherwise leave us behind.
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid, server), daemon=True).start()
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"port": port, "issuer": provider.issuer}, fh)
        os.replace(tmp, args.ready_file)
    sys.stderr.write(f"dev-idp listening, issuer {provider.issuer}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
