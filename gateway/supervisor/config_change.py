"""Describing a configuration change without revealing it.

Rule kept here: configuration may hold secrets (broker passwords, signing keys), so what a reload logs is
only which top-level keys were added, removed or changed - never a value, never a nested key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConfigChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self) -> str:
        if self.is_empty:
            return "no top-level changes"
        parts = []
        for label, keys in (("added", self.added), ("removed", self.removed), ("changed", self.changed)):
            if keys:
                parts.append(f"{label}: {', '.join(keys)}")
        return "; ".join(parts)


def top_level_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> ConfigChange:
    return ConfigChange(
        added=tuple(sorted(str(key) for key in new.keys() - old.keys())),
        removed=tuple(sorted(str(key) for key in old.keys() - new.keys())),
        changed=tuple(sorted(str(key) for key in old.keys() & new.keys() if old[key] != new[key])),
    )
