"""The hash chain: every line links to the previous one; verification names the line that was tampered with."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enforcement.audit import (
    GENESIS,
    AuditEvent,
    ChainWriter,
    Principal,
    Resource,
    line_hash,
    verify_lines,
)


def make_chain(count: int, start: ChainWriter | None = None) -> list[bytes]:
    writer = start or ChainWriter()
    return [
        writer.next_line(
            AuditEvent(
                ts=f"2024-05-01T12:00:{i % 60:02d}.000Z",
                kind="decision",
                decision="allowed",
                principal=Principal(sub=f"user{i % 3}"),
                resource=Resource(topic="t", partition=i),
            )
        )
        for i in range(count)
    ]


def problems_of(lines: list[bytes]) -> list[str]:
    result = verify_lines(lines)
    assert result.ok is (not result.problems)
    return result.problems


def test_lines_carry_seq_prev_and_the_event() -> None:
    lines = make_chain(3)
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert (first["seq"], first["prev"]) == (1, GENESIS)
    assert second["seq"] == 2
    assert second["prev"] == hashlib.sha256(lines[0].rstrip(b"\n")).hexdigest()
    assert first["kind"] == "decision" and first["resource"] == {"topic": "t", "partition": 0}
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def test_untouched_chain_verifies_and_reports_its_head() -> None:
    lines = make_chain(20)
    result = verify_lines(lines)
    assert result.ok and result.problems == [] and result.lines == 20
    head = result.heads["line"]
    assert (head.seq, head.hash) == (20, line_hash(lines[-1]))


def test_edited_line_is_named() -> None:
    lines = make_chain(10)
    lines[4] = lines[4].replace(b'"user1"', b'"mallory"')
    problems = problems_of(lines)
    assert len(problems) == 1
    assert problems[0].startswith("line 5:") and "modified" in problems[0]


def test_edited_line_including_its_prev_is_named() -> None:
    lines = make_chain(10)
    record = json.loads(lines[6])
    record["prev"] = "f" * 64
    record["decision"] = "denied"
    lines[6] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    problems = problems_of(lines)
    assert len(problems) == 1 and problems[0].startswith("line 7:") and "modified" in problems[0]


def test_dropped_line_is_reported_at_the_gap() -> None:
    lines = make_chain(10)
    del lines[3]  # seq 4
    problems = problems_of(lines)
    assert len(problems) == 1
    assert problems[0].startswith("line 4:") and "seq 4 absent" in problems[0]


def test_dropped_lines_range() -> None:
    lines = make_chain(10)
    del lines[2:5]  # seq 3..5
    problems = problems_of(lines)
    assert len(problems) == 1 and "seq 3..5 absent" in problems[0]


def test_inserted_forged_line_is_named() -> None:
    lines = make_chain(10)
    # A forger copies seq and prev of the line it pushes down, so the forged line itself looks fine.
    original = json.loads(lines[5])
    forged = {**original, "principal": {"sub": "nobody"}}
    lines.insert(5, json.dumps(forged, separators=(",", ":")).encode() + b"\n")
    problems = problems_of(lines)
    assert any(p.startswith("line 6:") and "inserted" in p for p in problems), problems


def test_inserted_copy_of_another_line_is_reported() -> None:
    lines = make_chain(10)
    lines.insert(7, lines[2])
    problems = problems_of(lines)
    assert any(p.startswith("line 8:") for p in problems), problems


def test_reordered_lines_are_reported() -> None:
    lines = make_chain(10)
    lines[3], lines[4] = lines[4], lines[3]
    problems = problems_of(lines)
    assert problems and problems[0].startswith("line 4:")
    assert any("reordered" in p for p in problems)


def test_truncated_mid_line_is_reported() -> None:
    lines = make_chain(10)
    lines[-1] = lines[-1][:40]  # the file was cut in the middle of its last line
    problems = problems_of(lines)
    assert problems == ["line 10: incomplete last line (the file was truncated or a write was cut short)"]


def test_cut_tail_is_detected_against_an_anchor() -> None:
    lines = make_chain(10)
    anchors = {10: line_hash(lines[9])}
    assert verify_lines(lines, anchors=anchors).ok
    result = verify_lines(lines[:7], anchors=anchors)
    assert not result.ok and "ends at seq 7" in result.problems[0]


def test_missing_head_is_detected() -> None:
    lines = make_chain(10)
    problems = problems_of(lines[3:])
    assert len(problems) == 1 and "lines seq 1..3 are missing" in problems[0]


def test_first_line_with_forged_genesis_is_detected() -> None:
    lines = make_chain(3)
    record = json.loads(lines[0])
    record["prev"] = "a" * 64
    lines[0] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    problems = problems_of(lines)
    assert problems[0].startswith("line 1:") and "genesis" in problems[0]


def test_garbage_line_is_reported_and_the_chain_goes_on_after_it() -> None:
    lines = make_chain(5)
    garbage = b"not json at all"
    rest = make_chain(3, ChainWriter(5, hashlib.sha256(garbage).hexdigest()))
    problems = problems_of([*lines, garbage + b"\n", *rest])
    assert problems == ["line 6: not a chained audit line (not JSON with integer seq and hex prev)"]


def test_resume_continues_the_chain() -> None:
    lines = make_chain(4)
    more = make_chain(3, ChainWriter.resume(lines[-1]))
    assert json.loads(more[0])["seq"] == 5
    assert verify_lines(lines + more).ok


def test_next_length_predicts_the_line() -> None:
    writer = ChainWriter(seq=998)
    event = b'{"ts":"x","kind":"y"}'
    for _ in range(4):  # crosses 999 -> 1000 (one more digit)
        assert writer.next_length(event) == len(writer.next_line_from_json(event))


TAMPERINGS = ["edit", "drop", "insert", "swap", "cut"]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=3, max_value=40),
    where=st.integers(min_value=0, max_value=10_000),
    how=st.sampled_from(TAMPERINGS),
)
def test_any_single_tampering_short_of_the_last_line_is_detected(count: int, where: int, how: str) -> None:
    lines = make_chain(count)
    index = where % (count - 1)  # the last line is only protected by an anchor (tested above)
    if how == "edit":
        lines[index] = lines[index].replace(b'"allowed"', b'"blocked"')
    elif how == "drop":
        del lines[index]
    elif how == "insert":
        lines.insert(index + 1, lines[index])
    elif how == "swap":
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    else:
        lines = lines[: index + 1] + [lines[index + 1][:-5]]
    result = verify_lines(lines)
    assert not result.ok
    assert any(p.startswith(("line ", "line")) for p in result.problems)


@pytest.mark.parametrize("stripped", [True, False])
def test_lines_with_or_without_newlines_verify(stripped: bool) -> None:
    lines = make_chain(5)
    if stripped:
        lines = [line.rstrip(b"\n") for line in lines]
    assert verify_lines(lines).ok
