"""Names of hash-chained audit files, shared by the file sink (which writes them) and `verify_files`.

Rule kept here: one chain per writer process. Worker N of a gateway configured with `path: audit.jsonl`
writes `audit.wN.jsonl`; rotation renames it to `audit.wN.jsonl.1` (newest backup) ... `.K` (oldest). So
concurrent worker processes never interleave lines in one file, and every chain can be verified on its own.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from pathlib import Path

_ROTATED = re.compile(r"^(?P<base>.+)\.(?P<index>\d+)$")
_CHAIN_MAGIC = b'{"seq":'


def worker_chain_path(template: str | Path, worker_id: int | str) -> Path:
    """`audit.jsonl` -> `audit.w3.jsonl`; a template without suffix gets `.w3` appended."""
    path = Path(template)
    if path.suffix:
        return path.with_name(f"{path.stem}.w{worker_id}{path.suffix}")
    return path.with_name(f"{path.name}.w{worker_id}")


def rotated_path(chain_path: Path, index: int) -> Path:
    """Index 0 is the live file; 1 the newest backup."""
    return chain_path if index == 0 else chain_path.with_name(f"{chain_path.name}.{index}")


def split_rotation(path: Path) -> tuple[Path, int]:
    """`audit.w1.jsonl.3` -> (`audit.w1.jsonl`, 3); a live file has index 0."""
    m = _ROTATED.match(path.name)
    if m:
        return path.with_name(m.group("base")), int(m.group("index"))
    return path, 0


def looks_like_chain_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(_CHAIN_MAGIC)) == _CHAIN_MAGIC
    except OSError:
        return False


def expand_arguments(arguments: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files named by paths, directories (their chain files, by content) and globs; plus what matched nothing."""
    found: list[Path] = []
    unmatched: list[str] = []
    for arg in arguments:
        text = str(arg)
        if any(ch in text for ch in "*?["):
            matches = [
                Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file() and not p.endswith(".lock")
            ]
        elif Path(text).is_dir():
            matches = [p for p in sorted(Path(text).iterdir()) if p.is_file() and looks_like_chain_file(p)]
        else:
            matches = [Path(text)]
        if not matches:
            unmatched.append(text)
        found.extend(m for m in matches if m not in found)
    return found, unmatched


def group_chains(paths: Iterable[Path]) -> dict[Path, list[Path]]:
    """Group files by chain (live file name) and order each group oldest first (`.K` ... `.1`, live)."""
    groups: dict[Path, list[tuple[int, Path]]] = {}
    for path in paths:
        base, index = split_rotation(path)
        groups.setdefault(base, []).append((index, path))
    return {
        base: [p for _, p in sorted(members, key=lambda m: -m[0])] for base, members in sorted(groups.items())
    }
