"""A minimal server side of SCRAM (RFC 5802), written for the tests independently of the gateway's client.

It plays the broker in transcript tests: it hands out a fixed salt and nonce, checks the client proof and
returns the server signature, so a test can compute a full SCRAM-SHA-512 conversation without a broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class ScramRefused(Exception):
    """The reference server rejected the client's message (the text says why)."""


class ReferenceScramServer:
    """One SCRAM login as the server sees it: ``first(client_first)`` then ``final(client_final)``."""

    def __init__(
        self, hash_name: str, users: dict[str, str], *, salt: bytes, iterations: int, server_nonce: str
    ) -> None:
        self.hash_name = hash_name
        self.users = users
        self.salt = salt
        self.iterations = iterations
        self.server_nonce = server_nonce
        self.user = ""
        self._auth_prefix = ""
        self._nonce = ""

    def first(self, client_first: bytes) -> bytes:
        text = client_first.decode()
        if not text.startswith("n,,"):
            raise ScramRefused("expected gs2 header n,,")
        bare = text[3:]
        fields = dict(part.split("=", 1) for part in bare.split(","))
        self.user = fields["n"].replace("=2C", ",").replace("=3D", "=")
        if self.user not in self.users:
            raise ScramRefused("unknown-user")
        self._nonce = fields["r"] + self.server_nonce
        server_first = f"r={self._nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
        self._auth_prefix = f"{bare},{server_first}"
        return server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode()
        without_proof, _, proof_b64 = text.rpartition(",p=")
        fields = dict(part.split("=", 1) for part in without_proof.split(","))
        if fields.get("c") != base64.b64encode(b"n,,").decode() or fields.get("r") != self._nonce:
            raise ScramRefused("channel binding or nonce mismatch")
        salted = hashlib.pbkdf2_hmac(
            self.hash_name, self.users[self.user].encode(), self.salt, self.iterations
        )
        client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        client_signature = hmac.new(stored_key, auth_message, self.hash_name).digest()
        recovered_key = bytes(
            a ^ b for a, b in zip(base64.b64decode(proof_b64), client_signature, strict=True)
        )
        if hashlib.new(self.hash_name, recovered_key).digest() != stored_key:
            raise ScramRefused("invalid-proof")
        server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
        signature = hmac.new(server_key, auth_message, self.hash_name).digest()
        return b"v=" + base64.b64encode(signature)
