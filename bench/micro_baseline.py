"""`python -m bench.micro_baseline`: refresh the stored microbenchmark baseline, bench/baseline/micro.json.

It runs `pytest bench/micro --benchmark-only --benchmark-json=<temporary file>` and stores that report
without the raw per-round timings (`stats.data`): pytest-benchmark always writes every sample into a JSON
report (about 40 MB for this suite), while `--benchmark-compare` only reads the summary statistics. The
rule kept here: the stored file is exactly pytest-benchmark's report minus the samples, so `make bench-check`
(`--benchmark-compare=bench/baseline/micro.json`) reads it as it would the original.

Extra arguments go to pytest, e.g. `python -m bench.micro_baseline -k proxy` (a partial baseline only
compares the benchmarks it holds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = REPO_ROOT / "bench" / "baseline" / "micro.json"


def without_samples(report: dict[str, Any]) -> dict[str, Any]:
    """The report with each benchmark's raw timings removed; every summary statistic is kept."""
    benchmarks = []
    for benchmark in report.get("benchmarks", []):
        stats = {key: value for key, value in benchmark.get("stats", {}).items() if key != "data"}
        benchmarks.append({**benchmark, "stats": stats})
    return {**report, "benchmarks": benchmarks}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="streamgate-micro-") as tmp:
        raw_path = Path(tmp) / "micro.json"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "bench/micro",
            "--benchmark-only",
            f"--benchmark-json={raw_path}",
            "-p",
            "no:cacheprovider",
            "-q",
            *argv,
        ]
        code = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
        if code != 0 or not raw_path.exists():
            print(f"[micro-baseline] pytest exited with {code}; baseline not changed", file=sys.stderr)
            return code or 1
        report = without_samples(json.loads(raw_path.read_text()))
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"[micro-baseline] {len(report['benchmarks'])} benchmarks -> {BASELINE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
