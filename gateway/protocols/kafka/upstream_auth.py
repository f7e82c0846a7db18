"""The gateway's own SASL login towards the broker: a sans-IO client for PLAIN and SCRAM-SHA-256/512.

Clients never see the broker's credentials: every upstream connection the gateway opens authenticates with
the gateway's own identity before any client request is forwarded on it. This module is that login as a
state machine. It builds the SaslHandshake/SaslAuthenticate requests and reads their responses; the caller
(the Kafka session driver) owns framing, correlation ids and the socket.

    client = UpstreamSaslClient("SCRAM-SHA-512", "gateway", secret)
    request = client.first_request()                 # (17, 1, SaslHandshakeRequest)
    while request is not None:
        send(request); request = client.on_response(api_key, decoded_response)
    client.session_lifetime_ms                       # re-authenticate (KIP-368) before this runs out

Rules it keeps:
- The password and everything derived from it (salted password, keys, proof, signatures) never appear in an
  exception, a ``repr`` or a log line. Errors name the mechanism and the user; text that comes from the broker
  is quoted with any occurrence of the password masked, in case a broker ever echoes it.
- SCRAM follows RFC 5802 / RFC 7677 as Kafka uses them: no channel binding (gs2 header ``n,,``), no
  authorization identity, the user name escaped as a saslname (``=`` -> ``=3D``, ``,`` -> ``=2C``) and the
  password used as its UTF-8 bytes (Kafka and librdkafka apply no SASLprep). The broker's nonce must extend
  ours, its iteration count must be at least 4096 (Kafka's own client minimum, so a man in the middle cannot
  make the proof cheap to brute-force) and at most ``MAX_SCRAM_ITERATIONS``, and its final signature is
  checked in constant time: a broker that cannot prove it knows the credential is refused.
- One object is one login. It fails closed: after an error every further call raises. Re-authentication
  uses a fresh object; a shared ``ScramKeyCache`` keeps that from re-running PBKDF2 (tens of milliseconds
  of CPU for SCRAM-SHA-512 at 8192 iterations) on every upstream connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from typing import Final, Literal

import msgspec

from gateway.protocols.kafka.generated.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from gateway.protocols.kafka.generated.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "MIN_SCRAM_ITERATIONS",
    "SASL_AUTHENTICATE",
    "SASL_HANDSHAKE",
    "SUPPORTED_MECHANISMS",
    "Mechanism",
    "ScramKeyCache",
    "UpstreamAuthError",
    "UpstreamSaslClient",
]

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SUPPORTED_MECHANISMS: Final[tuple[str, ...]] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

SASL_HANDSHAKE: Final = 17
SASL_AUTHENTICATE: Final = 36
HANDSHAKE_VERSION: Final = 1  # v0 means "raw SASL frames follow", which only the very oldest brokers need

MIN_SCRAM_ITERATIONS: Final = 4096
# PBKDF2 runs on the worker's event loop; a broker (or impostor) asking for millions of rounds would stall it.
MAX_SCRAM_ITERATIONS: Final = 100_000

_UNSUPPORTED_SASL_MECHANISM: Final = 33
_ILLEGAL_SASL_STATE: Final = 34
_SASL_AUTHENTICATION_FAILED: Final = 58

_HASHES: Final[dict[str, str]] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_GS2_HEADER: Final = b"n,,"  # no channel binding, no authorization identity
_CLIENT_KEY_LABEL: Final = b"Client Key"
_SERVER_KEY_LABEL: Final = b"Server Key"


class UpstreamAuthError(Exception):
    """The gateway could not log in to the broker. The message never contains the password or a derived secret."""


def _secure_nonce() -> str:
    # 24 random bytes -> 32 URL-safe base64 characters: printable and free of ',' as RFC 5802 requires.
    return secrets.token_urlsafe(24)


class _State(Enum):
    START = "not started"
    HANDSHAKE_SENT = "waiting for the SaslHandshake response"
    PLAIN_SENT = "waiting for the PLAIN SaslAuthenticate response"
    CLIENT_FIRST_SENT = "waiting for the SCRAM server-first message"
    CLIENT_FINAL_SENT = "waiting for the SCRAM server-final message"
    DONE = "authenticated"
    FAILED = "failed"


class ScramKeyCache:
    """Remembers the SCRAM keys derived from a password for a (salt, iteration count) the broker handed out.

    A broker stores one salt per user, so every upstream connection of a gateway worker sees the same salt:
    deriving ClientKey/ServerKey once instead of running PBKDF2 per connection keeps the event loop free.
    Entries are keyed by mechanism, user, password, salt and iterations, so one cache may safely serve several
    credentials; it is bounded (least recently used entries go first) and never shows its contents.
    """

    def __init__(self, max_entries: int = 16) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str, bytes, int], tuple[bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<ScramKeyCache {len(self._entries)}/{self._max_entries} entries>"

    def keys_for(
        self, mechanism: str, username: str, password: str, salt: bytes, iterations: int
    ) -> tuple[bytes, bytes]:
        """(ClientKey, ServerKey) for this credential and salt, derived on first use."""
        key = (mechanism, username, password, salt, iterations)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        derived = _derive_keys(_HASHES[mechanism], password, salt, iterations)
        self._entries[key] = derived
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return derived


def _derive_keys(hash_name: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    return (
        hmac.digest(salted, _CLIENT_KEY_LABEL, hash_name),
        hmac.digest(salted, _SERVER_KEY_LABEL, hash_name),
    )


def _saslname(username: str) -> str:
    # RFC 5802 section 5.1: '=' and ',' cannot appear raw in a saslname.
    return username.replace("=", "=3D").replace(",", "=2C")


def _parse_attributes(message: str) -> list[tuple[str, str]]:
    """Split a SCRAM message into (attribute, value) pairs; a malformed part raises ValueError."""
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ValueError("malformed SCRAM attribute")
        pairs.append((part[0], part[2:]))
    return pairs


class UpstreamSaslClient:
    """One SASL login of the gateway to the broker, as requests out and decoded responses in.

    ``authenticate_version`` picks SaslAuthenticate v1 (Kafka 1.1+) or v2 (flexible, Kafka 2.5+); both carry
    ``session_lifetime_ms``. Pass ``key_cache`` to share SCRAM key derivation across logins.
    """

    def __init__(
        self,
        mechanism: Mechanism,
        username: str,
        password: str,
        *,
        nonce: Callable[[], str] = _secure_nonce,
        authenticate_version: Literal[1, 2] = 1,
        key_cache: ScramKeyCache | None = None,
    ) -> None:
        if mechanism not in SUPPORTED_MECHANISMS:
            raise UpstreamAuthError(
                f"upstream SASL mechanism {mechanism!r} is not supported; use one of {', '.join(SUPPORTED_MECHANISMS)}"
            )
        if authenticate_version not in (1, 2):
            raise UpstreamAuthError(
                f"SaslAuthenticate v{authenticate_version} is not supported; use v1 or v2"
            )
        if not username:
            raise UpstreamAuthError(f"upstream SASL {mechanism}: the user name is empty")
        if not password:
            raise UpstreamAuthError(f"upstream SASL {mechanism} for user {username!r}: the password is empty")
        if mechanism == "PLAIN" and ("\x00" in username or "\x00" in password):
            raise UpstreamAuthError(
                f"upstream SASL PLAIN for user {username!r}: credentials must not contain NUL"
            )
        self.mechanism: Mechanism = mechanism
        self.username = username
        self.session_lifetime_ms = 0
        self._password: str | None = password
        self._nonce_factory = nonce
        self._version = authenticate_version
        self._key_cache = key_cache
        self._state = _State.START
        # SCRAM conversation state, kept between the two round trips.
        self._client_nonce = ""
        self._client_first_bare = ""
        self._expected_server_signature = b""

    def __repr__(self) -> str:
        return f"<UpstreamSaslClient {self.mechanism} user={self.username!r} {self._state.value}>"

    @property
    def done(self) -> bool:
        """True once the broker accepted the credentials (and, for SCRAM, proved it knows them)."""
        return self._state is _State.DONE

    # ------------------------------------------------------------------------------------------ steps

    def first_request(self) -> tuple[int, int, msgspec.Struct]:
        """The SaslHandshake v1 request that opens the login."""
        self._expect(_State.START, "first_request()")
        self._state = _State.HANDSHAKE_SENT
        return SASL_HANDSHAKE, HANDSHAKE_VERSION, SaslHandshakeRequest(mechanism=self.mechanism)

    def on_response(self, api_key: int, msg: object) -> tuple[int, int, msgspec.Struct] | None:
        """Consume the broker's decoded response; return the next request, or None once authenticated."""
        state = self._state
        if state in (_State.START, _State.DONE, _State.FAILED):
            self._expect(_State.HANDSHAKE_SENT, "on_response()")  # always raises here
        try:
            if state is _State.HANDSHAKE_SENT:
                return self._on_handshake(api_key, msg)
            if state is _State.PLAIN_SENT:
                self._authenticate_response(api_key, msg)
            elif state is _State.CLIENT_FIRST_SENT:
                return self._on_server_first(api_key, msg)
            else:
                self._on_server_final(api_key, msg)
        except UpstreamAuthError:
            self._fail()
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed on anything, see below
            # Whatever went wrong, the caller sees one error type and no text that could carry a secret.
            error = self._error(f"internal error while reading the broker's answer ({type(exc).__name__})")
            self._fail()
            raise error from None
        self._state = _State.DONE
        self._forget_secrets()
        return None

    # ------------------------------------------------------------------------------------------ handshake

    def _on_handshake(self, api_key: int, msg: object) -> tuple[int, int, msgspec.Struct]:
        if api_key != SASL_HANDSHAKE or not isinstance(msg, SaslHandshakeResponse):
            raise self._error(f"expected a SaslHandshake response, got {_describe(api_key, msg)}")
        enabled = ", ".join(self._quote(name) for name in msg.mechanisms) or "none"
        if msg.error_code == _UNSUPPORTED_SASL_MECHANISM:
            if self.mechanism in msg.mechanisms:
                # Seen from Tansu without --authentication: it refuses and echoes the requested mechanism.
                raise self._error(
                    f"the broker refused this mechanism although it lists {enabled}; "
                    "is SASL authentication enabled on that listener?"
                )
            raise self._error(f"the broker does not enable this mechanism; it enables: {enabled}")
        if msg.error_code != 0:
            raise self._error(
                f"SaslHandshake failed with error code {msg.error_code}; broker mechanisms: {enabled}"
            )
        if self.mechanism == "PLAIN":
            self._state = _State.PLAIN_SENT
            password = self._secret()
            return self._authenticate(b"\x00" + self.username.encode() + b"\x00" + password.encode())
        self._client_nonce = self._nonce_factory()
        if not self._client_nonce or any(c == "," or not "\x21" <= c <= "\x7e" for c in self._client_nonce):
            raise self._error(
                "the nonce generator returned an empty value or one with characters SCRAM forbids"
            )
        self._client_first_bare = f"n={_saslname(self.username)},r={self._client_nonce}"
        self._state = _State.CLIENT_FIRST_SENT
        return self._authenticate(_GS2_HEADER + self._client_first_bare.encode())

    # ------------------------------------------------------------------------------------------ SCRAM

    def _on_server_first(self, api_key: int, msg: object) -> tuple[int, int, msgspec.Struct]:
        server_first = self._authenticate_response(api_key, msg)
        try:
            text = server_first.decode()
            attributes = _parse_attributes(text)
        except (UnicodeDecodeError, ValueError):
            raise self._error("the broker sent a malformed SCRAM server-first message") from None
        if attributes and attributes[0][0] == "e":
            raise self._error(f"the broker refused the login: {self._quote(attributes[0][1])}")
        if attributes and attributes[0][0] == "m":
            raise self._error("the broker requires a SCRAM extension this client does not implement")
        fields = dict(attributes[:3])
        if [name for name, _ in attributes[:3]] != ["r", "s", "i"]:
            raise self._error("the broker's SCRAM server-first message lacks r=, s= or i=")
        server_nonce = fields["r"]
        if not server_nonce.startswith(self._client_nonce) or len(server_nonce) <= len(self._client_nonce):
            raise self._error("the broker's SCRAM nonce does not extend the client nonce (possible replay)")
        try:
            salt = base64.b64decode(fields["s"], validate=True)
            iterations = int(fields["i"])
        except ValueError:
            raise self._error("the broker sent an unreadable SCRAM salt or iteration count") from None
        if not salt:
            raise self._error("the broker sent an empty SCRAM salt")
        if not MIN_SCRAM_ITERATIONS <= iterations <= MAX_SCRAM_ITERATIONS:
            raise self._error(
                f"the broker asked for {iterations} SCRAM iterations; accepted range is "
                f"{MIN_SCRAM_ITERATIONS}..{MAX_SCRAM_ITERATIONS}"
            )

        hash_name = _HASHES[self.mechanism]
        password = self._secret()
        if self._key_cache is not None:
            client_key, server_key = self._key_cache.keys_for(
                self.mechanism, self.username, password, salt, iterations
            )
        else:
            client_key, server_key = _derive_keys(hash_name, password, salt, iterations)
        without_proof = f"c={base64.b64encode(_GS2_HEADER).decode()},r={server_nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        stored_key = hashlib.new(hash_name, client_key).digest()
        client_signature = hmac.digest(stored_key, auth_message, hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        self._expected_server_signature = hmac.digest(server_key, auth_message, hash_name)
        self._state = _State.CLIENT_FINAL_SENT
        return self._authenticate(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())

    def _on_server_final(self, api_key: int, msg: object) -> None:
        server_final = self._authenticate_response(api_key, msg)
        try:
            attributes = _parse_attributes(server_final.decode())
        except (UnicodeDecodeError, ValueError):
            raise self._error("the broker sent a malformed SCRAM server-final message") from None
        name, value = attributes[0]
        if name == "e":
            raise self._error(f"the broker refused the login: {self._quote(value)}")
        if name != "v":
            raise self._error("the broker's SCRAM server-final message carries no server signature")
        try:
            signature = base64.b64decode(value, validate=True)
        except ValueError:
            raise self._error("the broker sent an unreadable SCRAM server signature") from None
        if not hmac.compare_digest(signature, self._expected_server_signature):
            raise self._error(
                "the broker's SCRAM server signature does not match: it does not hold this user's credential "
                "(wrong broker or a man in the middle)"
            )

    # ------------------------------------------------------------------------------------------ helpers

    def _authenticate(self, auth_bytes: bytes) -> tuple[int, int, msgspec.Struct]:
        return SASL_AUTHENTICATE, self._version, SaslAuthenticateRequest(auth_bytes=auth_bytes)

    def _authenticate_response(self, api_key: int, msg: object) -> bytes:
        """Check a SaslAuthenticate response for errors; return its auth_bytes and keep its session lifetime."""
        if api_key != SASL_AUTHENTICATE or not isinstance(msg, SaslAuthenticateResponse):
            raise self._error(f"expected a SaslAuthenticate response, got {_describe(api_key, msg)}")
        if msg.error_code != 0:
            detail = f": {self._quote(msg.error_message)}" if msg.error_message else ""
            if msg.error_code == _SASL_AUTHENTICATION_FAILED:
                raise self._error(f"the broker rejected the credentials (error code 58){detail}")
            if msg.error_code == _ILLEGAL_SASL_STATE:
                raise self._error(f"the broker reports an illegal SASL state (error code 34){detail}")
            raise self._error(f"SaslAuthenticate failed with error code {msg.error_code}{detail}")
        self.session_lifetime_ms = max(0, msg.session_lifetime_ms)
        return msg.auth_bytes

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._forget_secrets()

    def _forget_secrets(self) -> None:
        # Drop our references so nothing derived outlives the login (a later repr or heap walk finds nothing).
        self._password = None
        self._expected_server_signature = b""

    def _secret(self) -> str:
        if self._password is None:  # only reachable through a state bug; fail closed
            raise self._error("the credentials were already discarded")
        return self._password

    def _expect(self, state: _State, call: str) -> None:
        if self._state is not state:
            raise UpstreamAuthError(
                f"upstream SASL {self.mechanism} for user {self.username!r}: {call} is not valid while "
                f"{self._state.value}; use a new UpstreamSaslClient for each login"
            )

    def _quote(self, broker_text: str | None) -> str:
        """Broker-provided text, quoted, with the password masked in case the broker echoes it."""
        text = broker_text or ""
        password = self._password
        if password:
            text = text.replace(password, "***")
        return repr(text)

    def _error(self, reason: str) -> UpstreamAuthError:
        return UpstreamAuthError(
            f"upstream SASL {self.mechanism} login as user {self.username!r} failed: {reason}"
        )


def _describe(api_key: int, msg: object) -> str:
    return f"api key {api_key} ({type(msg).__name__})"
