"""`python -m bench.run --quick|--full`: what does the gateway cost, measured beside a direct connection.

One Tansu broker serves every target (direct, Streamgate, the `tansu proxy` peer). For each scenario the
targets run in alternation, A B C A B C ..., for the profile's number of rounds, so that the noise of a
shared machine lands on all of them alike; only ratios measured side by side in one run mean anything.
The result goes to `<out>/<UTC timestamp>.json` (machine, parameters, every raw measurement, medians,
ratios, goals), a table to stdout and a PNG chart next to the JSON. Goals are reported, never enforced:
the exit status is non-zero only when the run itself could not happen (no broker, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.e2e.harness import BenchContext
from bench.e2e.identity import BenchIdentity
from bench.e2e.scenarios import ALIASES, PROFILES, SCENARIOS, IncompleteMeasurement, Scenario
from bench.e2e.targets import IDENTITY_MODES, MODE_CONFIGS, Target, TargetUnavailable, build_targets
from gateway.devstack.processes import ComponentError, find_tansu, start_tansu

SCHEMA = "streamgate-bench/1"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TARGET_NAMES = ("direct", "streamgate", "peer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        help="reduced counts, 3 rounds, < 3 minutes (default)",
    )
    size.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="profile",
        help="full counts and rounds (about 13 minutes with four targets)",
    )
    size.add_argument(
        "--smoke",
        action="store_const",
        const="smoke",
        dest="profile",
        help="tiny counts that only check the harness works (used by tests/bench)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS)} (or {', '.join(ALIASES)})",
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGET_NAMES),
        help="comma list of direct, streamgate, peer (direct is always measured)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODE_CONFIGS),
        help=f"Streamgate modes, one target each (default: all): {', '.join(MODE_CONFIGS)}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="STREAMGATE_WORKERS for scenarios 1-5 (worker_scaling always runs 1 and 2)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="override the profile's number of rounds")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="offered records/s for produce_latency (profile default: 1000)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON and PNG")
    parser.add_argument("--keep-logs", action="store_true", help="keep broker/target logs (path printed)")
    args = parser.parse_args(argv)
    args.profile = args.profile or "quick"
    args.scenario_list = _parse_scenarios(parser, args.scenarios)
    args.target_list = _parse_targets(parser, args.targets)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in args.mode_list:
        if mode not in MODE_CONFIGS:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODE_CONFIGS)}")
    return args


def _parse_scenarios(parser: argparse.ArgumentParser, text: str) -> list[str]:
    chosen: set[str] = set()
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name = ALIASES.get(item, item)
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {item!r}; known: {', '.join(SCENARIOS)}")
        chosen.add(name)
    return [name for name in SCENARIOS if name in chosen]  # always the canonical order


def _parse_targets(parser: argparse.ArgumentParser, text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    for name in chosen:
        if name not in TARGET_NAMES:
            parser.error(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")
    # Direct is the reference every ratio needs, so it always runs, and first.
    return ["direct", *[name for name in dict.fromkeys(chosen) if name != "direct"]]


def profile_params(args: argparse.Namespace) -> dict[str, Any]:
    params = copy.deepcopy(PROFILES[args.profile])
    if args.rounds is not None:
        params["rounds"] = max(1, args.rounds)
    if args.latency_rate is not None:
        params["produce_latency"]["rate"] = args.latency_rate
    return params


# --- machine description ------------------------------------------------------------------------------


def describe_machine() -> dict[str, Any]:
    import confluent_kafka

    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_total_mb": memory_mb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "confluent_kafka": confluent_kafka.version(),
        "tansu": _tansu_version(),
        "load_average_start": list(os.getloadavg()),
        "note": "client processes, the broker and the target share these CPUs (and other jobs may too)",
    }


def _tansu_version() -> str:
    with contextlib.suppress(ComponentError, OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [find_tansu(), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or out.stderr.strip()
    return "unknown"


# --- the run ------------------------------------------------------------------------------------------


def raise_file_limit() -> None:
    """1,000 idle connections need ~2,000+ descriptors in the target and the broker; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def start_identity(args: argparse.Namespace, log_dir: Path) -> tuple[BenchIdentity | None, str | None]:
    """The development OIDC provider, once per run, only when a selected Streamgate mode needs it.

    A provider that cannot start makes the identity targets unavailable (reported), not the run impossible.
    """
    if "streamgate" not in args.target_list or not IDENTITY_MODES.intersection(args.mode_list):
        return None, None
    try:
        return BenchIdentity.start(log_dir), None
    except (ComponentError, OSError) as exc:
        print(f"[bench] OIDC provider did not start: {str(exc)[:300]}", file=sys.stderr)
        return None, f"OIDC provider did not start: {exc}"


def start_targets(ctx: BenchContext, targets: list[Target]) -> tuple[list[Target], dict[str, dict[str, Any]]]:
    """Start each target and prove it with one acknowledged send; unavailable ones are reported, not fatal."""
    ready: list[Target] = []
    status: dict[str, dict[str, Any]] = {}
    for target in targets:
        info: dict[str, Any] = dict(target.describe())
        try:
            target.start(ctx.broker)
            ctx.probe(target.bootstrap, target.name, target.client_config())
        except Exception as exc:  # noqa: BLE001 - an unavailable target is reported, the others still run
            target.stop()
            info.update(status="unavailable", error=str(exc))
            print(f"[bench] target {target.name} unavailable: {str(exc)[:300]}", file=sys.stderr)
        else:
            info.update(status="ok", error=None)
            ready.append(target)
        status[target.name] = info
    return ready, status


def run_scenario(
    ctx: BenchContext, scenario: Scenario, targets: list[Target], params: dict[str, Any], rounds: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "title": scenario.title,
        "description": scenario.description,
        "params": params,
        "metrics": [
            {"name": m.name, "unit": m.unit, "higher_is_better": m.higher_is_better, "label": m.label}
            for m in scenario.metrics
        ],
        "targets": [],
        "rounds": [],
        "skipped": None,
    }
    try:
        chosen = scenario.setup(ctx, targets, params)
        entry["targets"] = [t.name for t in chosen]
        unavailable = getattr(scenario, "unavailable", {})
        if unavailable:
            entry["unavailable_targets"] = unavailable
        if not chosen:
            entry["skipped"] = (
                "needs a running Streamgate target"
                if scenario.name == "worker_scaling"
                else "no target available"
            )
            return entry
        for round_number in range(1, rounds + 1):
            try:
                scenario.begin_round(ctx, params)
            except Exception as exc:  # noqa: BLE001 - the round fails for every target, the run goes on
                scenario.end_round(ctx)
                reason = f"round setup failed: {type(exc).__name__}: {exc}"
                raw = exc.raw if isinstance(exc, IncompleteMeasurement) else None
                for target in chosen:
                    entry["rounds"].append(
                        {
                            "round": round_number,
                            "target": target.name,
                            "metrics": None,
                            "raw": raw,
                            "error": reason,
                            "seconds": 0.0,
                        }
                    )
                continue
            try:
                for target in chosen:
                    entry["rounds"].append(measure_once(ctx, scenario, target, params, round_number))
            finally:
                scenario.end_round(ctx)
    finally:
        scenario.teardown(ctx)
    return entry


def measure_once(
    ctx: BenchContext, scenario: Scenario, target: Target, params: dict[str, Any], round_number: int
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "round": round_number,
        "target": target.name,
        "metrics": None,
        "raw": None,
        "error": None,
    }
    started = time.monotonic()
    try:
        if scenario.fresh_target:
            target.restart(ctx.broker)
        if not target.alive():
            raise TargetUnavailable(f"{target.name} is no longer running")
        measurement = scenario.measure(ctx, target, params)
        record.update(metrics=measurement.metrics, raw=measurement.raw)
    except IncompleteMeasurement as exc:
        record.update(raw=exc.raw, error=f"incomplete: {exc}")
    except Exception as exc:  # noqa: BLE001 - one failed measurement must not end the run
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = round(time.monotonic() - started, 3)
    status = "ok" if record["error"] is None else f"ERROR {record['error'][:200]}"
    print(
        f"[bench] {scenario.name} round {round_number} {target.name}: {status} "
        f"{_short_metrics(record['metrics'])} ({record['seconds']:.1f}s)",
        file=sys.stderr,
    )
    return record


def _short_metrics(metrics: dict[str, float | None] | None) -> str:
    if not metrics:
        return ""
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if v is not None)


def execute(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole suite and return the (summarised) result document."""
    params = profile_params(args)
    started = datetime.now(UTC)
    started_clock = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="streamgate-bench-"))
    raise_file_limit()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "run": {
            "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "profile": args.profile,
            "rounds": params["rounds"],
            "order": "alternating: every round runs each target once, in the order of `targets`",
            "modes": args.mode_list,
            "workers": args.workers,
            "argv": sys.argv[1:],
        },
        "machine": describe_machine(),
        "targets": {},
        "scenarios": {},
    }
    broker = start_tansu(log_path=log_dir / "broker.log")
    targets: list[Target] = []
    identity: BenchIdentity | None = None
    ctx = BenchContext(broker=broker, profile=args.profile, log_dir=log_dir)
    try:
        identity, identity_error = start_identity(args, log_dir)
        targets = build_targets(args.target_list, args.mode_list, args.workers, log_dir, identity)
        ready, result["targets"] = start_targets(ctx, targets)
        if identity_error:
            for info in result["targets"].values():
                if info.get("mode") in IDENTITY_MODES:
                    info["error"] = f"{identity_error}; {info.get('error')}"
        for name in args.scenario_list:
            scenario = SCENARIOS[name]()
            try:
                result["scenarios"][name] = run_scenario(ctx, scenario, ready, params[name], params["rounds"])
            except Exception as exc:  # noqa: BLE001 - a broken scenario must not lose the others' results
                result["scenarios"][name] = {
                    "title": scenario.title,
                    "params": params[name],
                    "targets": [],
                    "metrics": [],
                    "rounds": [],
                    "skipped": f"failed: {type(exc).__name__}: {exc}",
                }
    finally:
        for target in targets:
            target.close()
        if identity is not None:
            identity.stop()
        ctx.close()
        broker.stop()
        if args.keep_logs:
            print(f"[bench] logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    finished = datetime.now(UTC)
    result["run"]["finished_utc"] = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    result["run"]["duration_s"] = round(time.monotonic() - started_clock, 1)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    return report.summarize(result)


def write_result(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["run"]["started_utc"].replace("-", "").replace(":", "")
    json_path = out_dir / f"{stamp}.json"
    png_path = json_path.with_suffix(".png")
    chart_written = report.write_chart(result, png_path)
    result["chart"] = png_path.name if chart_written else None
    json_path.write_text(json.dumps(result, indent=1, allow_nan=False, default=_json_default) + "\n")
    return json_path, png_path if chart_written else None


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sanitize(value: Any) -> Any:
    """NaN/inf are not JSON: a latency that could not be computed becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = sanitize(execute(args))
    except ComponentError as exc:
        print(f"[bench] cannot run: {exc}", file=sys.stderr)
        return 1
    json_path, png_path = write_result(result, args.out)
    print(report.format_table(result))
    print(f"\nresult: {json_path}" + (f"\nchart:  {png_path}" if png_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
