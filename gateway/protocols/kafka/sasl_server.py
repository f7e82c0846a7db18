"""The gateway's side of client SASL: extract the bearer token from OAUTHBEARER and PLAIN exchanges.

OAUTHBEARER (RFC 7628, as Kafka frames it in SaslAuthenticate): the client's first message is
`gs2-header %x01 "auth=Bearer " token %x01 [key=value %x01]* %x01`, where the gs2 header is `n,,` or
`n,a=<authzid>,`. Channel binding (`p=`) is not supported. PLAIN (RFC 4616): `authzid NUL authcid NUL password`,
where the password is the token. The PLAIN username (authcid) is not an identity: the token's subject is; the
username is only recorded in the audit trail (docs/identity.md).

These functions never log or return anything but the token itself to the caller; error messages describe the
shape of the problem, never the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

OAUTHBEARER = "OAUTHBEARER"
PLAIN = "PLAIN"
MECHANISMS = (OAUTHBEARER, PLAIN)


class SaslFormatError(ValueError):
    """The client's SASL message is malformed; the message says how, without quoting secrets."""


@dataclass(frozen=True, slots=True)
class SaslCredentials:
    mechanism: str
    token: str
    username: str | None  # PLAIN authcid / OAUTHBEARER authzid, for the audit trail only
    extensions: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"SaslCredentials(mechanism={self.mechanism!r}, username={self.username!r}, token=<redacted>)"


def parse_oauthbearer(data: bytes) -> SaslCredentials:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFormatError("OAUTHBEARER message is not valid UTF-8") from None
    gs2, sep, rest = text.partition("\x01")
    if not sep:
        raise SaslFormatError("OAUTHBEARER message has no key/value section (expected RFC 7628 framing)")
    if not gs2.endswith(","):
        raise SaslFormatError("OAUTHBEARER GS2 header must end with ','")
    flag, _, authz_part = gs2[:-1].partition(",")
    if flag.startswith("p="):
        raise SaslFormatError("OAUTHBEARER channel binding is not supported")
    if flag not in ("n", "y"):
        raise SaslFormatError("OAUTHBEARER GS2 header must start with 'n,' or 'y,'")
    authzid = None
    if authz_part:
        if not authz_part.startswith("a="):
            raise SaslFormatError("OAUTHBEARER GS2 authzid must be 'a=<name>'")
        authzid = authz_part[2:].replace("=2C", ",").replace("=3D", "=")
    if not rest.endswith("\x01\x01") and rest != "\x01":
        raise SaslFormatError("OAUTHBEARER message must end with two 0x01 separators")
    token = None
    extensions: list[tuple[str, str]] = []
    for pair in rest.split("\x01"):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not eq:
            raise SaslFormatError("OAUTHBEARER key/value pair without '='")
        if key == "auth":
            scheme, _, credential = value.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise SaslFormatError("OAUTHBEARER auth value must be 'Bearer <token>'")
            token = credential.strip()
        else:
            extensions.append((key, value))
    if token is None:
        raise SaslFormatError("OAUTHBEARER message carries no 'auth=Bearer <token>'")
    return SaslCredentials(OAUTHBEARER, token, authzid, tuple(extensions))


def parse_plain(data: bytes) -> SaslCredentials:
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise SaslFormatError("PLAIN message must be 'authzid NUL username NUL password'")
    try:
        _authzid, username, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslFormatError("PLAIN message is not valid UTF-8") from None
    if not password:
        raise SaslFormatError("PLAIN password (the token) is empty")
    return SaslCredentials(PLAIN, password, username or None)


def parse_client_message(mechanism: str, data: bytes) -> SaslCredentials:
    if mechanism == OAUTHBEARER:
        return parse_oauthbearer(data)
    if mechanism == PLAIN:
        return parse_plain(data)
    raise SaslFormatError(f"mechanism {mechanism} is not enabled")


def oauthbearer_error_challenge(status: str = "invalid_token") -> bytes:
    """The server's RFC 7628 error message (JSON), sent before failing the exchange."""
    return ('{"status":"' + status + '"}').encode()
