"""HTTP/1.1 for the admin process, without I/O: parse a request head, frame a response.

The admin API is small and sits on a management port, so this is deliberately a strict subset of HTTP/1.1:
requests carry a body only with `Content-Length` (a `Transfer-Encoding` on a request is refused with 501
rather than half-supported, which is what request-smuggling bugs are made of); heads and bodies have fixed
size limits; responses always have a `Content-Length`. The server (`server.py`) does the socket I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 64 * 1024

REASONS: Final[dict[int, str]] = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpError(Exception):
    """The request cannot be served; `status` is the response code, str() the explanation for the client."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def json(self) -> Any:
        """The body as JSON (an empty body is an empty object); HttpError 400/415 when it is not."""
        if not self.body:
            return {}
        content_type = self.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, "the body must be application/json")
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, "the body is not valid JSON") from None


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (everything up to and including the blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(400, "only HTTP/1.0 and HTTP/1.1 are served")
    if method not in _METHODS:
        raise HttpError(501, f"method {method[:20]!r} is not supported")
    if not target.startswith("/"):
        raise HttpError(400, "the request target must be an absolute path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(400, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if version == "HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 requests need a Host header")
    parsed = urlsplit(target)
    return Request(
        method=method,
        target=target,
        version=version,
        headers=headers,
        path=unquote(parsed.path),
        query=parse_qs(parsed.query, keep_blank_values=True),
    )


def body_length(request: Request) -> int:
    """How many body bytes follow the head (0 when none); HttpError for what this server refuses."""
    if "transfer-encoding" in request.headers:
        raise HttpError(501, "Transfer-Encoding on requests is not supported; send Content-Length")
    value = request.headers.get("content-length")
    if value is None:
        return 0
    if not value.isdigit():
        raise HttpError(400, "malformed Content-Length")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    return length


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, "application/json", list(headers))

    @classmethod
    def error(
        cls, status: int, message: str, headers: Iterable[tuple[str, str]] = (), **extra: Any
    ) -> Response:
        return cls.json(
            status,
            {"error": REASONS.get(status, "Error").lower().replace(" ", "_"), "message": message, **extra},
            headers,
        )


# Every response: no caching of API answers (they carry who asked for what), no MIME sniffing, no framing.
_COMMON_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def render(response: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    """The bytes of a complete response (status line, headers, body)."""
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    names = {name.lower() for name, _ in response.headers}
    if response.status not in (204,) and "content-type" not in names:
        lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    for name, value in _COMMON_HEADERS:
        if name.lower() not in names:
            lines.append(f"{name}: {value}")
    for name, value in response.headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break")
        lines.append(f"{name}: {value}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def continue_line() -> bytes:
    return b"HTTP/1.1 100 Continue\r\n\r\n"
