"""The admin server's sans-IO HTTP/1.1 subset."""

from __future__ import annotations

import pytest

from gateway.admin.http import MAX_BODY_BYTES, HttpError, Response, body_length, parse_head, render


def test_parse_request_head() -> None:
    request = parse_head(
        b"POST /api/approvals/abc/approve?x=1&x=2 HTTP/1.1\r\nHost: h\r\n"
        b"Content-Type: application/json\r\nContent-Length: 17\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    )
    assert request.method == "POST" and request.path == "/api/approvals/abc/approve"
    assert request.query == {"x": ["1", "2"]}
    assert request.headers["x-a"] == "1, 2"
    assert body_length(request) == 17 and request.keep_alive


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        (b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", 400),
    ],
)
def test_malformed_heads_are_refused(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as refused:
        parse_head(head)
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", 501),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 1, 2\r\n", 400),
        (f"Content-Length: {MAX_BODY_BYTES + 1}\r\n".encode(), 413),
    ],
)
def test_bodies_need_a_sane_content_length(headers: bytes, status: int) -> None:
    request = parse_head(b"POST /x HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n")
    with pytest.raises(HttpError) as refused:
        body_length(request)
    assert refused.value.status == status


def test_keep_alive_rules() -> None:
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive
    assert not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive


def test_json_body_checks() -> None:
    request = parse_head(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\r\n")
    request.body = b"{}"
    with pytest.raises(HttpError) as refused:
        request.json()
    assert refused.value.status == 415
    request.headers["content-type"] = "application/json; charset=utf-8"
    request.body = b"{nope"
    with pytest.raises(HttpError) as refused:
        request.json()
    assert refused.value.status == 400
    request.body = b'{"reason": "ok"}'
    assert request.json() == {"reason": "ok"}


def test_render_response() -> None:
    data = render(Response.json(409, {"a": "é"}, [("X-Test", "1")]), keep_alive=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 409 Conflict\r\n")
    assert b"Content-Length: %d" % len(body) in head and b"Connection: keep-alive" in head
    assert b"Cache-Control: no-store" in head and b"X-Content-Type-Options: nosniff" in head
    assert body.decode() == '{"a":"é"}'
    head_only = render(Response.json(200, {"a": 1}), keep_alive=False, head_only=True)
    assert head_only.endswith(b"Connection: close\r\n\r\n")
    with pytest.raises(ValueError):
        render(Response(200, headers=[("X", "a\r\nSet-Cookie: x")]), keep_alive=False)
