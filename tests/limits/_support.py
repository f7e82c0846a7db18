"""Shared helpers for the limits tests: an injectable clock, principals, and a config builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.enforcement.limits import LimitsConfig, parse_limits

START = 1_700_000_000.0  # a whole number of seconds: bucket boundaries of 1m windows fall on whole seconds


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Who:
    sub: str
    groups: tuple[str, ...] = ()


ALICE = Who("alice", ("analysts",))
BOB = Who("bob", ("analysts",))
BACKUP = Who("backup-svc", ("backup",))
OUTSIDER = Who("eve", ("contractors",))


def limits(**sections: Any) -> LimitsConfig:
    return parse_limits(sections)
