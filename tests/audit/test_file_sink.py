"""The file sink on real files: per-worker chains, rotation that keeps the chain, resume, and `verify_files`
catching each kind of tampering (edit, drop, insert, reorder, truncate, a missing rotated file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.audit.dispatcher import AuditDispatcher
from gateway.audit.sinks import FileSink
from gateway.audit.verify import verify_files
from gateway.enforcement.audit import line_hash
from tests.audit.helpers import decision, run

ROOT = Path(__file__).resolve().parents[2]


def write_events(
    directory: Path,
    count: int,
    *,
    worker: int = 1,
    max_bytes: int = 4000,
    backups: int = 5,
    start: int = 0,
    **options: object,
) -> FileSink:
    async def scenario() -> FileSink:
        sink = FileSink(
            "file", directory / "audit.jsonl", worker, max_bytes=max_bytes, backups=backups, **options
        )  # type: ignore[arg-type]
        dispatcher = AuditDispatcher([sink], worker)
        await dispatcher.start()
        for n in range(start, start + count):
            assert dispatcher.emit(decision(n))
            if n % 10 == 9:
                await __import__("asyncio").sleep(0)  # several loop iterations, several write batches
        await dispatcher.aclose()
        return sink

    return run(scenario)


def chain_lines(directory: Path, worker: int = 1) -> list[dict[str, object]]:
    live = directory / f"audit.w{worker}.jsonl"
    files = sorted(directory.glob(f"audit.w{worker}.jsonl.*[0-9]"), key=lambda p: -int(p.suffix[1:])) + [live]
    return [json.loads(line) for f in files for line in f.read_bytes().splitlines()]


@pytest.fixture
def rotated(tmp_path: Path) -> Path:
    """A chain of 60 events across the live file and 3 backups (none deleted yet)."""
    write_events(tmp_path, 60, max_bytes=6000, backups=10)
    backups = sorted(tmp_path.glob("audit.w1.jsonl.*[0-9]"))
    assert len(backups) >= 3, backups
    return tmp_path


def test_events_land_in_the_worker_chain_and_verify(tmp_path: Path) -> None:
    write_events(tmp_path, 25, max_bytes=1 << 20)
    lines = chain_lines(tmp_path)
    assert [line["seq"] for line in lines] == list(range(1, 26))
    assert [line["connection_id"] for line in lines] == [f"c{n}" for n in range(25)]
    result = verify_files([tmp_path / "audit.w1.jsonl"])
    assert result.ok and result.lines == 25


def test_rotation_keeps_one_chain_across_files(rotated: Path) -> None:
    lines = chain_lines(rotated)
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    decisions = [line["connection_id"] for line in lines if line["kind"] == "decision"]
    assert decisions == [f"c{n}" for n in range(60)]
    live_first = json.loads((rotated / "audit.w1.jsonl").read_bytes().splitlines()[0])
    newest_backup_last = (rotated / "audit.w1.jsonl.1").read_bytes().splitlines()[-1]
    assert live_first["kind"] == "audit_file_rotated" and live_first["prev"] == line_hash(newest_backup_last)
    assert all(os.path.getsize(p) <= 6000 for p in rotated.glob("audit.w1.jsonl*"))
    for argument in (str(rotated), str(rotated / "audit.w1.jsonl*")):
        result = verify_files([argument])
        assert result.ok, result.problems
        assert result.lines == len(lines)


def test_rotation_deletes_old_backups_and_verify_accepts_the_retained_set(tmp_path: Path) -> None:
    write_events(tmp_path, 120, max_bytes=3000, backups=2)
    assert sorted(p.name for p in tmp_path.glob("audit.w1.jsonl*")) == [
        "audit.w1.jsonl",
        "audit.w1.jsonl.1",
        "audit.w1.jsonl.2",
    ]
    assert chain_lines(tmp_path)[0]["seq"] > 1  # the head was rotated away, by design
    result = verify_files([tmp_path])
    assert result.ok, result.problems


def test_missing_middle_rotated_file_is_detected(rotated: Path) -> None:
    (rotated / "audit.w1.jsonl.2").unlink()
    result = verify_files([rotated])
    assert not result.ok
    assert any(p.startswith("audit.w1.jsonl.1:1:") and "missing" in p for p in result.problems), (
        result.problems
    )


def test_missing_oldest_rotated_file_is_detected(rotated: Path) -> None:
    oldest = max(rotated.glob("audit.w1.jsonl.*[0-9]"), key=lambda p: int(p.suffix[1:]))
    oldest.unlink()
    result = verify_files([rotated])
    assert not result.ok and any("missing" in p for p in result.problems), result.problems


def _rewrite(path: Path, change: object) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    change(lines)  # type: ignore[operator]
    path.write_bytes(b"".join(lines))


def test_edited_line_in_a_backup_is_named(rotated: Path) -> None:
    def edit(lines: list[bytes]) -> None:
        lines[2] = lines[2].replace(b'"alice"', b'"mallory"')

    _rewrite(rotated / "audit.w1.jsonl.2", edit)
    result = verify_files([rotated])
    assert [p.split(":")[:2] for p in result.problems] == [["audit.w1.jsonl.2", "3"]]


def test_dropped_line_is_named(rotated: Path) -> None:
    _rewrite(rotated / "audit.w1.jsonl.1", lambda lines: lines.pop(3))
    result = verify_files([rotated])
    assert len(result.problems) == 1 and result.problems[0].startswith("audit.w1.jsonl.1:4:")


def test_inserted_line_is_named(rotated: Path) -> None:
    _rewrite(rotated / "audit.w1.jsonl.1", lambda lines: lines.insert(2, lines[5]))
    result = verify_files([rotated])
    assert not result.ok and any(p.startswith("audit.w1.jsonl.1:3:") for p in result.problems), (
        result.problems
    )


def test_reordered_lines_are_named(rotated: Path) -> None:
    def swap(lines: list[bytes]) -> None:
        lines[1], lines[2] = lines[2], lines[1]

    _rewrite(rotated / "audit.w1.jsonl.3", swap)
    result = verify_files([rotated])
    assert not result.ok and result.problems[0].startswith("audit.w1.jsonl.3:2:"), result.problems


def test_truncated_live_file_is_detected(rotated: Path) -> None:
    live = rotated / "audit.w1.jsonl"
    with live.open("rb+") as f:
        f.truncate(live.stat().st_size - 17)
    result = verify_files([rotated])
    assert not result.ok and "incomplete last line" in result.problems[0]


def test_lines_cut_from_the_end_are_detected_with_the_recorded_head(rotated: Path) -> None:
    head = verify_files([rotated]).heads["audit.w1.jsonl"]
    _rewrite(rotated / "audit.w1.jsonl", lambda lines: lines.pop())
    anchors = {"audit.w1.jsonl": {head.seq: head.hash}}
    result = verify_files([rotated], anchors=anchors)
    assert not result.ok and "lines were removed from the end" in result.problems[0]


def test_a_writer_restart_continues_the_chain(tmp_path: Path) -> None:
    write_events(tmp_path, 30, max_bytes=5000)
    write_events(tmp_path, 30, max_bytes=5000, start=30)
    lines = chain_lines(tmp_path)
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert verify_files([tmp_path]).ok


def test_a_line_cut_by_a_crash_is_closed_reported_once_and_the_chain_goes_on(tmp_path: Path) -> None:
    write_events(tmp_path, 10, max_bytes=1 << 20)
    live = tmp_path / "audit.w1.jsonl"
    with live.open("ab") as f:
        f.write(b'{"seq":11,"prev":"0123')  # what a write cut short by a crash leaves behind
    write_events(tmp_path, 5, max_bytes=1 << 20, start=10)
    result = verify_files([live])
    assert result.problems == [
        "audit.w1.jsonl:11: not a chained audit line (not JSON with integer seq and hex prev)"
    ]
    assert json.loads(live.read_bytes().splitlines()[-1])["seq"] == 15


def test_a_second_writer_with_the_same_worker_id_gets_its_own_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = FileSink("file", tmp_path / "audit.jsonl", 1)
        second = FileSink("file", tmp_path / "audit.jsonl", 1)
        a, b = AuditDispatcher([first], 1), AuditDispatcher([second], 1)
        await a.start()
        await b.start()
        for n in range(5):
            a.emit(decision(n))
            b.emit(decision(100 + n))
        await a.aclose()
        await b.aclose()
        assert first.chain_path.name == "audit.w1.jsonl"
        assert second.chain_path.name == f"audit.w1.p{os.getpid()}.jsonl"

    run(scenario)
    result = verify_files([tmp_path])
    assert result.ok and set(result.heads) == {"audit.w1.jsonl", f"audit.w1.p{os.getpid()}.jsonl"}


def test_write_through_writes_inside_emit(tmp_path: Path) -> None:
    async def scenario() -> None:
        sink = FileSink("file", tmp_path / "audit.jsonl", 1, write_through=True, fsync_interval=0)
        dispatcher = AuditDispatcher([sink], 1)
        await dispatcher.start()
        assert dispatcher.emit(decision(0))
        # No loop iteration has run since emit(): the line must already be in the file.
        assert (tmp_path / "audit.w1.jsonl").read_bytes().count(b"\n") == 1
        await dispatcher.aclose()

    run(scenario)


@pytest.mark.integration
def test_concurrent_worker_processes_each_keep_a_verifiable_chain(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from gateway.audit.dispatcher import AuditDispatcher
        from gateway.audit.sinks import FileSink
        from tests.audit.helpers import decision
        async def main(worker):
            sink = FileSink("file", {str(tmp_path / "audit.jsonl")!r}, worker, max_bytes=20000, backups=50)
            d = AuditDispatcher([sink], worker)
            await d.start()
            for n in range(400):
                assert d.emit(decision(n))
                if n % 7 == 0:
                    await asyncio.sleep(0)
            await d.aclose()
        asyncio.run(main(int(sys.argv[1])))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in (1, 2, 3)]
    try:
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    result = verify_files([tmp_path])
    assert result.ok, result.problems
    assert set(result.heads) == {"audit.w1.jsonl", "audit.w2.jsonl", "audit.w3.jsonl"}
    for worker in (1, 2, 3):
        lines = chain_lines(tmp_path, worker)
        assert [int(str(x["connection_id"])[1:]) for x in lines if x["kind"] == "decision"] == list(
            range(400)
        )


@pytest.mark.integration
def test_a_disk_write_failure_blocks_then_recovers_with_one_reported_cut_line(tmp_path: Path) -> None:
    """Real write errors: the child lowers RLIMIT_FSIZE so the audit file cannot grow (a full disk), first
    cutting a batch in the middle of a line, then refusing writes; raising the limit again is the recovery."""
    script = textwrap.dedent(f"""
        import asyncio, json, os, resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from gateway.audit.dispatcher import AuditDispatcher
        from gateway.audit.sinks import FileSink
        from tests.audit.helpers import decision
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        async def main():
            sink = FileSink("file", {str(tmp_path / "audit.jsonl")!r}, 1, retry_initial=0.02, retry_max=0.05)
            d = AuditDispatcher([sink], 1)
            await d.start()
            for n in range(10):
                assert d.emit(decision(n))
            await asyncio.sleep(0); await asyncio.sleep(0)
            size = os.path.getsize(sink.chain_path)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 500, hard))
            accepted = [n for n in range(10, 14) if d.emit(decision(n))]
            await sink.wait_health(False, timeout=5)
            refused = [n for n in range(14, 18) if not d.emit(decision(n))]
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            await sink.wait_health(True, timeout=5)
            after = [n for n in range(18, 20) if d.emit(decision(n))]
            await d.aclose()
            print(json.dumps({{"accepted": accepted, "refused": refused, "after": after}}))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
    outcome = json.loads(out.stdout)
    assert outcome == {"accepted": [10, 11, 12, 13], "refused": [14, 15, 16, 17], "after": [18, 19]}
    live = tmp_path / "audit.w1.jsonl"
    decisions = [
        json.loads(x)["connection_id"]
        for x in live.read_bytes().splitlines()
        if x.startswith(b'{"seq"') and x.endswith(b"}") and b'"decision"' in x
    ]
    assert decisions == [f"c{n}" for n in (*range(14), 18, 19)]  # every accepted event, in order
    result = verify_files([live])
    assert len(result.problems) == 1 and "not a chained audit line" in result.problems[0], result.problems
