"""The on-disk spool: ordered, bounded, at-least-once across reopen, tolerant of a cut last line."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.spool import Spool


def events(start: int, count: int) -> list[bytes]:
    return [b'{"kind":"decision","n":%d}' % i for i in range(start, start + count)]


def drain(spool: Spool, batch: int = 7) -> list[bytes]:
    out: list[bytes] = []
    while not spool.is_empty():
        lines, position = spool.peek(batch)
        assert lines, "a non-empty spool must yield lines"
        spool.commit(position, len(lines))
        out.extend(lines)
    return out


def test_events_come_out_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    spool.open()
    stored = events(0, 500)
    assert spool.append(stored) == 500
    assert len(list((tmp_path / "s").glob("*.seg"))) > 1
    assert drain(spool) == stored
    assert spool.disk_bytes == 0 and not list((tmp_path / "s").glob("*.seg"))
    spool.close()


def test_append_stops_at_max_bytes_and_says_how_many_fit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=4096, segment_bytes=4096)
    spool.open()
    offered = events(0, 1000)
    fitting, used = 0, 0
    while used + len(offered[fitting]) + 1 <= 4096:
        used += len(offered[fitting]) + 1
        fitting += 1
    stored = spool.append(offered)
    assert stored == fitting
    assert spool.disk_bytes <= 4096
    assert spool.append(events(1000, 1)) == 0
    assert drain(spool) == events(0, stored)
    assert spool.append(events(1000, 1)) == 1  # room again after delivery
    spool.close()


def test_uncommitted_events_are_replayed_after_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    spool.open()
    spool.append(events(0, 300))
    lines, position = spool.peek(120)
    spool.commit(position, len(lines))
    spool.peek(50)  # read but never committed: must come back
    spool.close()

    again = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=4096)
    again.open()
    assert again.pending_count == 180
    again.append(events(300, 5))
    assert drain(again) == events(120, 185)
    again.close()


def test_a_cut_last_line_is_discarded_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.open()
    spool.append(events(0, 3))
    spool.close()
    segment = next((tmp_path / "s").glob("*.seg"))
    with segment.open("ab") as f:
        f.write(b'{"kind":"decis')  # a crash in the middle of an append
    again = Spool(tmp_path / "s", max_bytes=1 << 20, segment_bytes=1 << 20)
    again.open()
    assert drain(again) == events(0, 3)
    again.close()
