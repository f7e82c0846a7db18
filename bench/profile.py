"""`python -m bench.profile`: where a gateway worker spends its time under the throughput scenarios.

Starts a Tansu broker and one Streamgate target (one worker, the chosen mode), then drives the
produce-throughput or consume-throughput workload against it back to back, exactly as `bench.run` runs them
(fresh topic per produce run; one pre-filled topic read from offset 0 for consume), while a sampler watches
the worker:

- `--sampler py-spy` (default): `py-spy record -f raw --function --nonblocking --idle`, Python frames only.
  uvloop's event loop is C, so a sample whose leaf is the worker's entry frame (`run_worker`) is time in
  the loop itself: waiting in epoll, or socket reads/writes and buffer handling in C. Every other leaf is
  gateway Python code (or C it called, e.g. msgspec), attributed to the Python frame that called it.
- `--sampler perf`: `perf record -g` on the worker, summarised by shared object and symbol, which splits
  the C side: the kernel's TCP path and copies, libpython's interpreter, uvloop, msgspec, the native module.

Beside the samples, CPU time is read from /proc (utime + stime) for the worker and the broker over the same
window, with the number of records moved, so the report says what a record costs each of them in CPU.
Raw samples and a JSON summary are written to `--out`; a text summary is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.e2e.harness import BenchContext, run_client
from bench.e2e.identity import BenchIdentity
from bench.e2e.scenarios import CLIENT_SLACK_S, PROFILES, client_params
from bench.e2e.targets import (
    IDENTITY_MODES,
    MODE_CONFIGS,
    DirectTarget,
    StreamgateTarget,
    Target,
    process_tree,
)
from gateway.devstack.processes import start_tansu

REPO_ROOT = Path(__file__).resolve().parents[1]
# The worker's entry frame: uvloop's C loop runs below it, so a sample ending here is the loop itself.
LOOP_LEAF = "run_worker"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("produce", "consume"), required=True)
    parser.add_argument("--mode", choices=sorted(MODE_CONFIGS), default="passthrough")
    parser.add_argument("--sampler", choices=("py-spy", "perf"), default="py-spy")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="reference: drive the broker directly (CPU accounting only, nothing sampled)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the sampler records")
    parser.add_argument("--records", type=int, default=PROFILES["full"]["produce_throughput"]["records"])
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "streamgate-profile")
    parser.add_argument("--top", type=int, default=25)
    return parser.parse_args(argv)


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed")
    return found


def worker_pid(target: StreamgateTarget) -> int:
    """The single worker: the supervisor's only descendant."""
    roots = target.root_pids()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        children = [pid for pid in process_tree(roots) if pid not in roots]
        if len(children) == 1:
            return children[0]
        time.sleep(0.1)
    raise RuntimeError(f"expected exactly one worker under {roots}, found {process_tree(roots)}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- py-spy: collapsed Python stacks --------------------------------------------------------------------


def read_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """py-spy raw output: `frame;frame;...;leaf count` per line, outermost frame first."""
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_name(frame: str) -> str:
    """`send (gateway/x.py:12)` -> `send (gateway/x.py)`: functions, not lines."""
    name, _, where = frame.partition(" (")
    if not where:
        return name
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({file})"


def summarize_stacks(stacks: list[tuple[list[str], int]], top: int) -> dict[str, Any]:
    """Self and inclusive shares of all samples; `loop_percent`: samples whose leaf is the C event loop."""
    total = sum(count for _, count in stacks)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    loop = 0
    for stack, count in stacks:
        names = [frame_name(frame) for frame in stack]
        entry = [name.partition(" (")[0] for name in names]
        if entry and entry[-1] == LOOP_LEAF:
            loop += count
        self_time[names[-1]] += count
        # Inclusive time counts what runs below the worker's entry frame; the frames above it (interpreter
        # start-up, supervisor, run_worker itself) are on every stack and say nothing.
        below = names[entry.index(LOOP_LEAF) + 1 :] if LOOP_LEAF in entry else names
        for name in set(below):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": count, "percent": round(100.0 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "loop_percent": round(100.0 * loop / total, 1) if total else 0.0,
        "python_percent": round(100.0 * (total - loop) / total, 1) if total else 0.0,
        "self": share(self_time) if total else [],
        "inclusive": share(inclusive) if total else [],
    }


# --- perf: shared objects and symbols ---------------------------------------------------------------------

_PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+(.*\S)\s*$")


def parse_perf_report(text: str, top: int) -> list[dict[str, Any]]:
    """Rows of `perf report --stdio --no-children` (percent, then the sort keys), comments skipped."""
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = _PERF_LINE.match(line)
        if match:
            rows.append({"percent": float(match.group(1)), "what": " ".join(match.group(2).split())})
        if len(rows) >= top:
            break
    return rows


def perf_summary(data_path: Path, top: int) -> dict[str, Any]:
    perf = _tool("perf")

    def report(sort: str) -> list[dict[str, Any]]:
        out = subprocess.run(
            [perf, "report", "-i", str(data_path), "--stdio", "--no-children", "--sort", sort, "-g", "none"],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        return parse_perf_report(out.stdout, top)

    return {"by_object": report("dso"), "by_symbol": report("dso,sym")}


def format_summary(summary: dict[str, Any]) -> str:
    cpu = summary["cpu"]
    lines = [
        f"{summary['scenario']} via {summary['mode']} (1 worker): {summary['runs']} runs, "
        f"median {summary['median_records_per_s']:,} records/s; {cpu['records']:,} records in {cpu['wall_s']} s",
        "CPU, % of one core (us per record): "
        f"gateway worker {cpu['worker_percent']}% ({cpu['worker_us_per_record']}), "
        f"broker {cpu['broker_percent']}% ({cpu['broker_us_per_record']}), "
        f"client {cpu['client_percent']}% ({cpu['client_us_per_record']})",
    ]
    if "py_spy" in summary:
        spy = summary["py_spy"]
        lines += [
            f"py-spy: {spy['samples']} samples; {spy['python_percent']}% in gateway Python frames, "
            f"{spy['loop_percent']}% in uvloop's C loop (I/O wait + socket/buffer work)",
            "",
            "self time (leaf frame), % of samples:",
        ]
        lines += [f"  {row['percent']:5.1f}%  {row['frame']}" for row in spy["self"]]
        lines += ["", "inclusive time (on the stack), % of samples:"]
        lines += [f"  {row['percent']:5.1f}%  {row['frame']}" for row in spy["inclusive"]]
    if "perf" in summary:
        lines += ["", "perf, by shared object (% of the worker's CPU samples):"]
        lines += [f"  {row['percent']:5.1f}%  {row['what']}" for row in summary["perf"]["by_object"]]
        lines += ["", "perf, by symbol:"]
        lines += [f"  {row['percent']:5.1f}%  {row['what']}" for row in summary["perf"]["by_symbol"]]
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------------------


def prefill(ctx: BenchContext, records: int) -> str:
    """A topic holding `records` 1 KiB records, written through the broker directly (before any clock)."""
    topic = ctx.new_topic("profile-consume")
    run_client(
        "produce_throughput",
        {"records": records, "record_size": 1024, "max_seconds": 60.0, "bootstrap": ctx.direct_bootstrap,
         "topic": topic, "warm_up": False},
        timeout=60.0 + CLIENT_SLACK_S,
    )  # fmt: skip
    return topic


def drive(
    ctx: BenchContext, target: Target, scenario: str, records: int, until: float, filled: str | None
) -> list[dict[str, Any]]:
    """Run the workload back to back until `until` (monotonic); return each run's client result.

    Produce writes a fresh topic per run; consume reads the pre-filled topic `filled` from offset 0.
    """
    results: list[dict[str, Any]] = []
    params: dict[str, Any] = {"records": records, "record_size": 1024, "max_seconds": 60.0}
    while time.monotonic() < until:
        topic = filled if scenario == "consume" else ctx.new_topic("profile-produce")
        assert topic is not None
        try:
            results.append(
                run_client(
                    f"{scenario}_throughput",
                    {**params, **client_params(target), "topic": topic},
                    timeout=params["max_seconds"] + CLIENT_SLACK_S,
                )
            )
        finally:
            if topic != filled:
                ctx.delete_topic(topic)
    return results


def sampler_command(args: argparse.Namespace, pid: int, out: Path) -> list[str]:
    if args.sampler == "perf":
        return [_tool("perf"), "record", "-F", str(args.rate), "-g", "-p", str(pid), "-o", str(out), "--",
                "sleep", str(args.seconds)]  # fmt: skip
    return [_tool("py-spy"), "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", str(args.rate),
            "-d", str(int(args.seconds)), "--function", "--nonblocking", "--idle"]  # fmt: skip


def children_cpu_seconds() -> float:
    """CPU of reaped children: the client workloads (run_client waits for each one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    label = "direct" if args.direct else args.mode
    stem = f"{args.scenario}-{label}" + ("" if args.direct else f"-{args.sampler}")
    raw_path = args.out / (f"{stem}.perf.data" if args.sampler == "perf" else f"{stem}.txt")
    log_dir = Path(tempfile.mkdtemp(prefix="streamgate-profile-"))
    broker = start_tansu(log_path=log_dir / "broker.log")
    identity = BenchIdentity.start(log_dir) if args.mode in IDENTITY_MODES and not args.direct else None
    target: Target = (
        DirectTarget()
        if args.direct
        else StreamgateTarget(
            f"streamgate-{args.mode}", mode=args.mode, workers=1, log_dir=log_dir, identity=identity
        )
    )
    ctx = BenchContext(broker=broker, profile="profile", log_dir=log_dir)
    sampler: subprocess.Popen[bytes] | None = None
    try:
        target.start(broker)
        ctx.probe(target.bootstrap, target.name, target.client_config())
        pid = broker.proc.pid if args.direct else worker_pid(target)  # type: ignore[arg-type]
        filled = prefill(ctx, args.records) if args.scenario == "consume" else None
        before = (cpu_seconds(pid), cpu_seconds(broker.proc.pid), children_cpu_seconds(), time.monotonic())
        if not args.direct:
            sampler = subprocess.Popen(
                sampler_command(args, pid, raw_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        results = drive(ctx, target, args.scenario, args.records, time.monotonic() + args.seconds, filled)
        after = (cpu_seconds(pid), cpu_seconds(broker.proc.pid), children_cpu_seconds(), time.monotonic())
        if sampler is not None:
            _, sampler_err = sampler.communicate(timeout=args.seconds + 60)
            if sampler.returncode != 0 or not raw_path.exists():
                print(
                    f"[profile] {args.sampler} failed ({sampler.returncode}): {sampler_err.decode()[-1000:]}"
                )
                return 1
    finally:
        if sampler is not None and sampler.poll() is None:
            sampler.kill()
            sampler.wait(10)
        target.close()
        if identity is not None:
            identity.stop()
        ctx.close()
        broker.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    wall = after[3] - before[3]
    records = sum(int(r["records"]) for r in results)
    worker_cpu = 0.0 if args.direct else after[0] - before[0]
    broker_cpu = after[1] - before[1]
    client_cpu = after[2] - before[2]
    rates = sorted(float(r["records_per_s"]) for r in results)

    def per_record(seconds: float) -> float | None:
        return round(1e6 * seconds / records, 2) if records else None

    summary: dict[str, Any] = {
        "scenario": args.scenario,
        "mode": label,
        "sampler": None if args.direct else args.sampler,
        "runs": len(results),
        "records_per_s_per_run": [round(float(r["records_per_s"])) for r in results],
        "median_records_per_s": round(rates[len(rates) // 2]) if rates else 0,
        "cpu": {
            "wall_s": round(wall, 1),
            "records": records,
            "worker_percent": round(100 * worker_cpu / wall, 1),
            "broker_percent": round(100 * broker_cpu / wall, 1),
            "client_percent": round(100 * client_cpu / wall, 1),
            "worker_us_per_record": per_record(worker_cpu),
            "broker_us_per_record": per_record(broker_cpu),
            "client_us_per_record": per_record(client_cpu),
        },
    }
    if args.direct:
        pass
    elif args.sampler == "perf":
        summary["perf"] = perf_summary(raw_path, args.top)
    else:
        summary["py_spy"] = summarize_stacks(read_collapsed(raw_path.read_text().splitlines()), args.top)
    (args.out / f"{stem}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(format_summary(summary))
    if not args.direct:
        print(f"\nraw samples: {raw_path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
