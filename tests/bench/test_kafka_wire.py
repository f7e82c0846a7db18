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
