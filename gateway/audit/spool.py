"""A bounded, append-only, on-disk queue of encoded audit events for one sink of one worker.

Rules kept here:
- order: events come out in the order they went in, across restarts;
- bounded: `append` stores events only while the segment files stay within `max_bytes` of disk, and says how
  many it stored, so the caller can refuse traffic instead of losing events silently;
- at-least-once: a batch is removed (`commit`) only after the sink confirmed delivery; the read position is a
  small cursor file replaced atomically, so a crash between delivery and commit replays that batch (a
  duplicate), never skips one.

Layout: `<dir>/<n>.seg` segment files of newline-terminated JSON lines (the newest one is appended to) and
`<dir>/cursor` holding `"<segment> <offset>"` of the first undelivered line. A partial last line left by a
crash mid-append is cut off when the spool is opened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

_SEGMENT_SUFFIX = ".seg"
_READ_CHUNK = 1 << 20


class Spool:
    def __init__(
        self, directory: str | Path, max_bytes: int, segment_bytes: int, fsync: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self.fsync = fsync
        self._sizes: dict[int, int] = {}  # segment number -> size in bytes, oldest first
        self._read_segment = 0
        self._read_offset = 0
        self._write_fd: int | None = None
        self._write_segment = -1
        self._count = 0  # undelivered lines (known exactly: counted on open, then maintained)
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory or recover an existing spool (cursor, partial last line)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(
            int(p.name[: -len(_SEGMENT_SUFFIX)])
            for p in self.directory.glob(f"*{_SEGMENT_SUFFIX}")
            if p.name[: -len(_SEGMENT_SUFFIX)].isdigit()
        )
        cursor_segment, cursor_offset = self._read_cursor()
        for number in segments:
            path = self._segment_path(number)
            if number < cursor_segment:
                path.unlink(missing_ok=True)  # fully delivered before the last shutdown
                continue
            self._sizes[number] = path.stat().st_size
        if self._sizes:
            last = max(self._sizes)
            self._sizes[last] = self._cut_partial_line(self._segment_path(last), self._sizes[last])
            first = min(self._sizes)
            if cursor_segment == first:
                self._read_segment, self._read_offset = first, min(cursor_offset, self._sizes[first])
            else:
                self._read_segment, self._read_offset = first, 0
            self._count = self._count_lines()
        self._opened = True

    def close(self) -> None:
        if self._write_fd is not None:
            if self.fsync:
                os.fsync(self._write_fd)
            os.close(self._write_fd)
            self._write_fd = None

    # -- state -----------------------------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def pending_count(self) -> int:
        return self._count

    def is_empty(self) -> bool:
        return self._count == 0

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> int:
        """Append encoded events (no newlines inside) in order; return how many fit within `max_bytes`."""
        used = self.disk_bytes
        stored = 0
        chunk: list[bytes] = []
        chunk_bytes = 0
        for line in lines:
            size = len(line) + 1
            if used + size > self.max_bytes:
                break
            if (
                self._write_fd is None
                or self._sizes[self._write_segment] + chunk_bytes + size > self.segment_bytes
            ):
                self._write(chunk)
                chunk, chunk_bytes = [], 0
                self._start_segment()
            chunk.append(line)
            chunk_bytes += size
            used += size
            stored += 1
        self._write(chunk)
        self._count += stored
        return stored

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self._write_fd is not None
        data = b"\n".join(lines) + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            self._sizes[self._write_segment] += written
            view = view[written:]
        if self.fsync:
            os.fsync(self._write_fd)

    def _start_segment(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        number = (max(self._sizes) + 1) if self._sizes else self._read_segment + 1
        self._write_segment = number
        self._write_fd = os.open(self._segment_path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sizes[number] = os.fstat(self._write_fd).st_size
        if len(self._sizes) == 1:
            self._read_segment, self._read_offset = number, 0

    # -- reading ---------------------------------------------------------------------------------------

    def peek(self, max_items: int) -> tuple[list[bytes], tuple[int, int]]:
        """Up to `max_items` of the oldest undelivered events and the position to `commit` after delivering."""
        self._skip_consumed_segments()
        if self._count == 0 or self._read_segment not in self._sizes:
            return [], (self._read_segment, self._read_offset)
        with self._segment_path(self._read_segment).open("rb") as f:
            f.seek(self._read_offset)
            data = f.read(min(_READ_CHUNK, self._sizes[self._read_segment] - self._read_offset))
        end = data.rfind(b"\n")
        if end < 0:
            return [], (self._read_segment, self._read_offset)
        lines = data[:end].split(b"\n")[:max_items]
        consumed = sum(len(line) + 1 for line in lines)
        return lines, (self._read_segment, self._read_offset + consumed)

    def commit(self, position: tuple[int, int], count: int) -> None:
        """Forget the events returned by the `peek` that gave `position` (they were delivered)."""
        self._read_segment, self._read_offset = position
        self._count = max(0, self._count - count)
        self._skip_consumed_segments()
        if self._count == 0:
            self._reset()
        else:
            self._write_cursor()

    def _skip_consumed_segments(self) -> None:
        while (
            self._read_segment in self._sizes
            and self._read_offset >= self._sizes[self._read_segment]
            and self._read_segment != self._write_segment
            and len(self._sizes) > 1
        ):
            self._segment_path(self._read_segment).unlink(missing_ok=True)
            del self._sizes[self._read_segment]
            self._read_segment, self._read_offset = min(self._sizes), 0

    def _reset(self) -> None:
        """Everything delivered: drop all segments so the spool takes no disk space."""
        self.close()
        for number in list(self._sizes):
            self._segment_path(number).unlink(missing_ok=True)
        next_number = (max(self._sizes) + 1) if self._sizes else self._read_segment + 1
        self._sizes.clear()
        self._write_segment = -1
        self._read_segment, self._read_offset = next_number, 0
        self._write_cursor()

    # -- files -----------------------------------------------------------------------------------------

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{_SEGMENT_SUFFIX}"

    def _read_cursor(self) -> tuple[int, int]:
        try:
            segment, offset = (self.directory / "cursor").read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            return 0, 0

    def _write_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        with tmp.open("w") as f:
            f.write(f"{self._read_segment} {self._read_offset}\n")
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")

    @staticmethod
    def _cut_partial_line(path: Path, size: int) -> int:
        if size == 0:
            return 0
        with path.open("rb+") as f:
            f.seek(max(0, size - _READ_CHUNK))
            tail = f.read()
            if tail.endswith(b"\n"):
                return size
            keep = size - len(tail) + tail.rfind(b"\n") + 1
            f.truncate(keep)
            return keep

    def _count_lines(self) -> int:
        total = 0
        for number in self._sizes:
            with self._segment_path(number).open("rb") as f:
                if number == self._read_segment:
                    f.seek(self._read_offset)
                while chunk := f.read(_READ_CHUNK):
                    total += chunk.count(b"\n")
        return total
