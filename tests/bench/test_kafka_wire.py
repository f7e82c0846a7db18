"""The hand-encoded ApiVersions v0 / Metadata v1 requests and the response reader, byte for byte."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from bench.e2e import kafka_wire


def test_api_versions_v0_request_bytes() -> None:
    client_id = b"streamgate-bench"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id  # header v1, empty body
    assert kafka_wire.api_versions_v0(7) == struct.pack(">i", len(body)) + body


def test_metadata_v1_with_no_topics_sends_an_empty_array_not_null() -> None:
    frame = kafka_wire.metadata_v1(9)
    assert struct.unpack_from(">hhi", frame, 4) == (3, 1, 9)
    assert frame[-4:] == struct.pack(">i", 0)


def test_metadata_v1_topic_names_are_length_prefixed() -> None:
    frame = kafka_wire.metadata_v1(1, ["ab", "c"])
    assert frame.endswith(struct.pack(">i", 2) + b"\x00\x02ab" + b"\x00\x01c")
    assert struct.unpack_from(">i", frame, 0)[0] == len(frame) - 4


def _serve(server: socket.socket, frames: list[bytes]) -> None:
    for frame in frames:
        server.sendall(struct.pack(">i", len(frame)) + frame)


def test_handshake_reads_both_responses() -> None:
    client, server = socket.socketpair()
    with client, server:
        api_versions = struct.pack(">ih", 1, 0) + struct.pack(">i", 0)  # corr 1, no error, no keys
        metadata = struct.pack(">i", 2) + b"\x00" * 12
        sender = threading.Thread(target=_serve, args=(server, [api_versions, metadata]))
        sender.start()
        kafka_wire.handshake(client, first_correlation_id=1)
        sender.join()
        request = server.recv(4096)
        assert struct.unpack_from(">hhi", request, 4) == (18, 0, 1)


def test_wrong_correlation_id_and_error_code_are_rejected() -> None:
    client, server = socket.socketpair()
    with client, server:
        _serve(server, [struct.pack(">ih", 5, 0)])
        with pytest.raises(kafka_wire.WireError, match="correlation id 5"):
            kafka_wire.read_response(client, 1)
    client, server = socket.socketpair()
    with client, server:
        _serve(server, [struct.pack(">ih", 1, 35)])
        with pytest.raises(kafka_wire.WireError, match="error code 35"):
            kafka_wire.handshake(client, first_correlation_id=1)


def test_peer_closing_mid_frame_is_an_error() -> None:
    client, server = socket.socketpair()
    with client:
        server.sendall(struct.pack(">i", 100) + b"xx")
        server.close()
        with pytest.raises(kafka_wire.WireError, match="closed after 2 of 100"):
            kafka_wire.read_response(client, 1)


def test_sasl_requests_bytes() -> None:
    handshake = kafka_wire.sasl_handshake_v1(3, "PLAIN")
    assert struct.unpack_from(">hhi", handshake, 4) == (17, 1, 3)
    assert handshake.endswith(b"\x00\x05PLAIN")
    auth = kafka_wire.sasl_authenticate_v1(4, kafka_wire.plain_message("bench", "tok.en"))
    assert struct.unpack_from(">hhi", auth, 4) == (36, 1, 4)
    assert auth.endswith(struct.pack(">i", 13) + b"\x00bench\x00tok.en")
    assert struct.unpack_from(">i", auth, 0)[0] == len(auth) - 4


def _read_request(sock: socket.socket) -> tuple[int, int, int, bytes]:
    """(api key, version, correlation id, body) of one request with header v1 and our client id."""
    (size,) = struct.unpack(">i", kafka_wire.read_exact(sock, 4))
    frame = kafka_wire.read_exact(sock, size)
    api_key, version, correlation_id, client_id_length = struct.unpack_from(">hhih", frame, 0)
    return api_key, version, correlation_id, frame[10 + client_id_length :]


def _fake_sasl_gateway(server: socket.socket, auth_error: int, seen: list[tuple[int, bytes]]) -> None:
    """Answer ApiVersions, SaslHandshake, SaslAuthenticate (with `auth_error`) and, if authenticated, Metadata."""
    for _ in range(4 if auth_error == 0 else 3):
        api_key, _version, correlation_id, body = _read_request(server)
        seen.append((api_key, body))
        if api_key == 18:
            response = struct.pack(">hi", 0, 0)
        elif api_key == 17:
            response = struct.pack(">hi", 0, 1) + b"\x00\x05PLAIN"
        elif api_key == 36:
            message = b"" if auth_error == 0 else b"token expired"
            text = struct.pack(">h", len(message)) + message if message else struct.pack(">h", -1)
            response = (
                struct.pack(">h", auth_error) + text + struct.pack(">i", 0) + struct.pack(">q", 299_000)
            )
        else:
            response = b"\x00" * 12
        _serve(server, [struct.pack(">i", correlation_id) + response])


def test_authenticated_handshake_walks_the_sasl_exchange_before_metadata() -> None:
    client, server = socket.socketpair()
    seen: list[tuple[int, bytes]] = []
    with client, server:
        gateway = threading.Thread(target=_fake_sasl_gateway, args=(server, 0, seen))
        gateway.start()
        lifetime = kafka_wire.authenticated_handshake(client, "bench", "the-token")
        gateway.join()
    assert lifetime == 299_000
    assert [api for api, _ in seen] == [18, 17, 36, 3]
    assert seen[2][1] == struct.pack(">i", 16) + b"\x00bench\x00the-token"


def test_authenticated_handshake_reports_a_refused_token() -> None:
    client, server = socket.socketpair()
    seen: list[tuple[int, bytes]] = []
    with client, server:
        gateway = threading.Thread(target=_fake_sasl_gateway, args=(server, 58, seen))
        gateway.start()
        with pytest.raises(kafka_wire.WireError, match="SaslAuthenticate error code 58: token expired"):
            kafka_wire.authenticated_handshake(client, "bench", "old-token")
        gateway.join()
    assert [api for api, _ in seen] == [18, 17, 36]  # no Metadata after a failed login
