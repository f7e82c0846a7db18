"""The control channel codec: one JSON object per line, robust to any chunking, loud on malformed lines."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.supervisor.control import (
    ControlProtocolError,
    ControlReader,
    drain_message,
    encode_message,
    reload_message,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)
messages = st.fixed_dictionaries({"type": st.text(min_size=1)}, optional={"config": json_values})


def test_encoded_message_is_one_compact_json_line() -> None:
    encoded = encode_message(reload_message({"note": "line one\nline two"}))

    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert json.loads(encoded) == {"type": "reload", "config": {"note": "line one\nline two"}}


def test_message_without_string_type_cannot_be_encoded() -> None:
    with pytest.raises(ControlProtocolError):
        encode_message({"config": {}})
    with pytest.raises(ControlProtocolError):
        encode_message({"type": 7})


def test_messages_split_across_feeds_come_out_whole_and_in_order() -> None:
    stream = encode_message({"type": "ready"}) + encode_message(drain_message(2.5))
    reader = ControlReader()

    first = list(reader.feed(stream[:5]))
    second = list(reader.feed(stream[5:-3]))
    third = list(reader.feed(stream[-3:]))

    assert first == []
    assert second == [{"type": "ready"}]
    assert third == [{"type": "drain", "timeout": 2.5}]
    assert reader.buffered_bytes == 0


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(messages, max_size=5), cut_points=st.lists(st.integers(min_value=0), max_size=6))
def test_any_chunking_yields_the_same_messages(batch: list[dict], cut_points: list[int]) -> None:
    stream = b"".join(encode_message(message) for message in batch)
    cuts = sorted({point % (len(stream) + 1) for point in cut_points} | {0, len(stream)})
    reader = ControlReader()

    decoded = [
        message for start, end in itertools.pairwise(cuts) for message in reader.feed(stream[start:end])
    ]

    assert decoded == batch


def test_malformed_line_raises_and_the_lines_after_it_survive() -> None:
    reader = ControlReader()
    decoded = reader.feed(b'{"type":"ready"}\n{oops\n{"type":"heartbeat"}\n')

    assert next(decoded) == {"type": "ready"}
    with pytest.raises(ControlProtocolError, match="not JSON"):
        next(decoded)
    assert list(reader.feed(b"")) == [{"type": "heartbeat"}]


@pytest.mark.parametrize("line", [b"[1, 2]\n", b'{"kind": "ready"}\n', b'{"type": 3}\n', b"\xff\xfe\n"])
def test_lines_that_are_not_typed_objects_are_rejected(line: bytes) -> None:
    with pytest.raises(ControlProtocolError):
        list(ControlReader().feed(line))


def test_blank_lines_are_ignored() -> None:
    assert list(ControlReader().feed(b'\n  \n{"type":"ready"}\n')) == [{"type": "ready"}]


def test_overlong_unterminated_line_is_refused_and_dropped() -> None:
    reader = ControlReader(max_line_bytes=16)
    assert list(reader.feed(b'{"type":"ready"}\n{"type":')) == [{"type": "ready"}]

    with pytest.raises(ControlProtocolError, match="longer than 16 bytes"):
        reader.feed(b'"heartbeat", "padding": "xxxxxxxxxxxxxxxx"')
    assert reader.buffered_bytes == 0


def test_error_messages_do_not_echo_the_line() -> None:
    with pytest.raises(ControlProtocolError) as caught:
        list(ControlReader().feed(b'{"type": "reload", "config": {"password": "hunter2"\n'))
    assert "hunter2" not in str(caught.value)
