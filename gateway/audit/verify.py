"""`verify_files`: check hash-chained audit files (the engine behind `streamgate audit verify FILE...`).

Arguments may be files, directories (every file in it that starts like a chain line) or globs. Files are
grouped into chains by their live name (`audit.w1.jsonl`, `audit.w1.jsonl.1`, ... belong together), each chain
is replayed oldest file first, and problems are reported as `<file>:<line>: <what>`. A missing file in the
middle of a chain shows up as a seq gap at the first line of the file after it; a missing oldest file as lines
the newest rotation record says were retained.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from gateway.audit.chainfiles import expand_arguments, group_chains
from gateway.enforcement.audit import ChainVerifier, VerifyResult


def verify_files(
    paths: Iterable[str | Path], anchors: Mapping[str, Mapping[int, str]] | None = None
) -> VerifyResult:
    """Verify every chain found in `paths`. `anchors` maps a chain's live file name (e.g. `audit.w1.jsonl`)
    to `{seq: line hash}` recorded elsewhere (for instance from `VerifyResult.heads` of an earlier run):
    lines removed from the end of a chain since then are reported."""
    files, unmatched = expand_arguments(paths)
    result = VerifyResult(ok=True, problems=[f"{arg}: no audit files found" for arg in unmatched])
    if not files and not unmatched:
        result.problems.append("no audit files given")
    for chain, members in group_chains(files).items():
        result = result.merge(verify_chain(members, name=chain.name, anchors=(anchors or {}).get(chain.name)))
    result.ok = not result.problems
    return result


def verify_chain(files: list[Path], name: str, anchors: Mapping[int, str] | None = None) -> VerifyResult:
    """Verify one chain stored in `files` (oldest first)."""
    verifier = ChainVerifier(name, anchors)
    for path in files:
        try:
            with path.open("rb") as f:
                # Iterating a binary file yields newline-terminated lines; only a cut last line lacks one.
                for number, line in enumerate(f, 1):
                    if line.endswith(b"\n"):
                        verifier.feed(line[:-1], f"{path.name}:{number}")
                    else:
                        verifier.feed(line, f"{path.name}:{number}", complete=False)
        except OSError as exc:
            verifier.problems.append(f"{path}: cannot read: {exc.strerror}")
    return verifier.finish()


def format_result(result: VerifyResult) -> str:
    """Human-readable report for `streamgate audit verify` (exit status: 0 when `result.ok`, else 1)."""
    lines = [
        f"{'OK' if result.ok else 'FAILED'}: {len(result.heads)} chain(s), {result.lines} line(s) checked"
    ]
    lines += [f"  problem: {problem}" for problem in result.problems]
    lines += [
        f"  head {name}: seq {head.seq} sha256 {head.hash} ({head.where})"
        for name, head in result.heads.items()
    ]
    return "\n".join(lines)
