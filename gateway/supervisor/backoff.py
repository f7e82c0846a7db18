"""Restart delays for a worker slot that keeps crashing.

Rule kept here: the first crash is replaced almost at once, each further crash in a row doubles the delay up
to a ceiling, and a worker that stayed up long enough wipes the slate clean.
"""

from __future__ import annotations


class RestartBackoff:
    def __init__(self, initial: float = 0.1, maximum: float = 5.0, reset_after: float = 10.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self._reset_after = reset_after
        self._crashes_in_a_row = 0

    @property
    def crashes_in_a_row(self) -> int:
        return self._crashes_in_a_row

    def delay_after_exit(self, uptime: float) -> float:
        """Seconds to wait before replacing a worker that exited after `uptime` seconds."""
        if uptime >= self._reset_after:
            self._crashes_in_a_row = 0
        self._crashes_in_a_row += 1
        # Cap the exponent too, so a slot that crashed thousands of times cannot overflow the float.
        exponent = min(self._crashes_in_a_row - 1, 64)
        return min(self._initial * 2.0**exponent, self._maximum)
