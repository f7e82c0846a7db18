"""Turn a bench result (raw per-round measurements) into medians, ratios to direct, goal lines, a table, a chart.

Rules kept here:
- medians are over the rounds of one target that completed; a failed round is never counted as zero;
- the ratio is median(target) / median(direct) and the delta median(target) - median(direct), for every
  metric, whichever direction is better;
- a gateway mode (identity + policy + audit, ...) is also compared with passthrough Streamgate measured in
  the same rounds: `mode_ratios` / `mode_deltas`, median(mode) against median(passthrough);
- goals are reported as PASS / FAIL / N/A lines and never change the exit status: the machines are shared and
  noisy, so a benchmark informs, it does not gate.

`python -m bench.report RESULT.json` re-prints the table (and redraws the chart) of a stored result.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.e2e.stats import delta, medians_by_metric, ratio
from bench.e2e.targets import MODE_CONFIGS, PASSTHROUGH_MODE, streamgate_target_name

REFERENCE_TARGET = "direct"
GATEWAY_TARGET = "streamgate"
PEER_TARGET = "peer"
THROUGHPUT_GOAL_RATIO = 0.85
ADDED_P99_GOAL_MS = 1.0

# (scenario, metric) pairs on which the gateway must be ahead of the peer proxy.
PEER_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("produce_throughput", "records_per_s"),
    ("consume_throughput", "records_per_s"),
    ("produce_latency", "p99"),
    ("e2e_latency", "p99"),
    ("connection_scaling", "rss_kib_per_conn"),
    ("connection_scaling", "light_p99"),
)


@dataclass(frozen=True)
class Goal:
    status: str  # PASS | FAIL | N/A
    text: str
    scenario: str
    metric: str
    value: float | None
    threshold: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "goal": self.text,
            "scenario": self.scenario,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
        }


def summarize_scenario(scenario: dict[str, Any]) -> None:
    """Fill `medians`, `ratios`, `deltas` and `rounds_ok` of one scenario from its `rounds` list."""
    per_target: dict[str, list[Mapping[str, float | None]]] = {name: [] for name in scenario["targets"]}
    for measurement in scenario["rounds"]:
        if measurement.get("error") is None and measurement.get("metrics"):
            per_target.setdefault(measurement["target"], []).append(measurement["metrics"])
    medians = {name: medians_by_metric(rounds) for name, rounds in per_target.items()}
    reference = medians.get(REFERENCE_TARGET, {})
    names = [m["name"] for m in scenario["metrics"]]
    scenario["medians"] = medians
    scenario["rounds_ok"] = {name: len(rounds) for name, rounds in per_target.items()}
    scenario["ratios"] = {
        name: {metric: ratio(values.get(metric), reference.get(metric)) for metric in names}
        for name, values in medians.items()
    }
    scenario["deltas"] = {
        name: {metric: delta(values.get(metric), reference.get(metric)) for metric in names}
        for name, values in medians.items()
    }
    passthrough = medians.get(GATEWAY_TARGET, {})
    modes = [name for name in mode_target_names() if name in medians]
    scenario["mode_ratios"] = {
        name: {metric: ratio(medians[name].get(metric), passthrough.get(metric)) for metric in names}
        for name in modes
    }
    scenario["mode_deltas"] = {
        name: {metric: delta(medians[name].get(metric), passthrough.get(metric)) for metric in names}
        for name in modes
    }


def mode_target_names() -> list[str]:
    """Targets of the non-passthrough gateway modes, which are compared with passthrough as well as direct."""
    return [streamgate_target_name(mode) for mode in MODE_CONFIGS if mode != PASSTHROUGH_MODE]


def _median(result: dict[str, Any], scenario: str, target: str, metric: str) -> float | None:
    return result.get("scenarios", {}).get(scenario, {}).get("medians", {}).get(target, {}).get(metric)


def evaluate_goals(result: dict[str, Any]) -> list[Goal]:
    """The issue's goals for passthrough Streamgate, from the medians already in `result`."""
    goals: list[Goal] = []
    scenarios = result.get("scenarios", {})
    for scenario in ("produce_throughput", "consume_throughput"):
        text = f"passthrough {scenario.split('_')[0]} throughput >= {THROUGHPUT_GOAL_RATIO}x direct"
        value = scenarios.get(scenario, {}).get("ratios", {}).get(GATEWAY_TARGET, {}).get("records_per_s")
        goals.append(
            _threshold_goal(text, scenario, "records_per_s", value, THROUGHPUT_GOAL_RATIO, at_least=True)
        )
    added = scenarios.get("produce_latency", {}).get("deltas", {}).get(GATEWAY_TARGET, {}).get("p99")
    goals.append(
        _threshold_goal(
            f"added p99 produce latency <= {ADDED_P99_GOAL_MS} ms over direct",
            "produce_latency",
            "p99",
            added,
            ADDED_P99_GOAL_MS,
            at_least=False,
        )
    )
    for scenario, metric in PEER_COMPARISONS:
        spec = _metric_spec(scenarios.get(scenario, {}), metric)
        gateway = _median(result, scenario, GATEWAY_TARGET, metric)
        peer = _median(result, scenario, PEER_TARGET, metric)
        text = f"ahead of peer on {scenario} {metric}"
        if spec is None or gateway is None or peer is None:
            goals.append(Goal("N/A", text, scenario, metric, None, None))
            continue
        ahead = gateway > peer if spec["higher_is_better"] else gateway < peer
        goals.append(Goal("PASS" if ahead else "FAIL", text, scenario, metric, gateway, peer))
    return goals


def _threshold_goal(
    text: str, scenario: str, metric: str, value: float | None, threshold: float, at_least: bool
) -> Goal:
    if value is None or not math.isfinite(value):
        return Goal("N/A", text, scenario, metric, None, threshold)
    met = value >= threshold if at_least else value <= threshold
    return Goal("PASS" if met else "FAIL", text, scenario, metric, value, threshold)


def _metric_spec(scenario: dict[str, Any], metric: str) -> dict[str, Any] | None:
    for spec in scenario.get("metrics", []):
        if spec["name"] == metric:
            return spec
    return None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and deltas for every scenario, then the goal lines; returns `result` updated."""
    for scenario in result.get("scenarios", {}).values():
        if scenario.get("rounds") is not None:
            summarize_scenario(scenario)
    result["goals"] = [goal.as_dict() for goal in evaluate_goals(result)]
    return result


# --- table --------------------------------------------------------------------------------------------


def format_value(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "rec/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}"
    return f"{value:.1f}"


def _cell(scenario: dict[str, Any], target: str, spec: dict[str, Any]) -> str:
    metric, unit = spec["name"], spec["unit"]
    value = scenario.get("medians", {}).get(target, {}).get(metric)
    text = format_value(value, unit)
    if value is None or target == REFERENCE_TARGET:
        return text
    factor = scenario.get("ratios", {}).get(target, {}).get(metric)
    if unit == "ms":
        added = scenario.get("deltas", {}).get(target, {}).get(metric)
        return f"{text} ({added:+.3f})" if added is not None else text
    return f"{text} ({factor:.2f}x)" if factor is not None else text


def _mode_lines(scenario: dict[str, Any]) -> list[str]:
    """One line per gateway mode: each metric as a ratio to passthrough (and the added ms for latencies)."""
    lines: list[str] = []
    for target, ratios in scenario.get("mode_ratios", {}).items():
        deltas = scenario.get("mode_deltas", {}).get(target, {})
        parts = []
        for spec in scenario.get("metrics", []):
            factor = ratios.get(spec["name"])
            if factor is None:
                continue
            part = f"{spec.get('label') or spec['name']} {factor:.2f}x"
            added = deltas.get(spec["name"])
            if spec["unit"] == "ms" and added is not None:
                part += f" ({added:+.3f} ms)"
            parts.append(part)
        if parts:
            lines.append(f"  {target} / {GATEWAY_TARGET} (passthrough): " + ", ".join(parts))
    return lines


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: one row per scenario metric, one column per target, then the goal lines."""
    lines: list[str] = []
    machine = result.get("machine", {})
    run = result.get("run", {})
    lines.append(
        f"Streamgate bench ({run.get('profile', '?')}, {run.get('rounds', '?')} rounds, alternating "
        f"targets) on {machine.get('cpu_model', '?')} x{machine.get('cpu_count', '?')}, "
        f"librdkafka {machine.get('librdkafka', '?')}"
    )
    lines.append("medians over rounds; (Nx) = ratio to direct, (+ms) = latency added over direct")
    for name, scenario in result.get("scenarios", {}).items():
        if scenario.get("skipped"):
            lines.append(f"\n{name}: skipped ({scenario['skipped']})")
            continue
        targets = list(scenario.get("targets", []))
        width = 24
        lines.append("")
        lines.append(f"{name:<34}" + "".join(f"{t:>{width}}" for t in targets))
        for spec in scenario.get("metrics", []):
            label = f"  {spec.get('label') or spec['name']} [{spec['unit']}]"
            lines.append(f"{label:<34}" + "".join(f"{_cell(scenario, t, spec):>{width}}" for t in targets))
        ok = scenario.get("rounds_ok", {})
        failures = [m for m in scenario.get("rounds", []) if m.get("error")]
        lines.append(f"{'  rounds ok':<34}" + "".join(f"{ok.get(t, 0):>{width}}" for t in targets))
        for failure in failures[:3]:
            lines.append(f"  ! round {failure['round']} {failure['target']}: {failure['error'][:160]}")
        lines.extend(_mode_lines(scenario))
        if name == "worker_scaling":
            w1 = scenario.get("medians", {}).get("streamgate-w1", {}).get("records_per_s")
            w2 = scenario.get("medians", {}).get("streamgate-w2", {}).get("records_per_s")
            scale = ratio(w2, w1)
            if scale is not None:
                lines.append(f"  2 workers / 1 worker: {scale:.2f}x")
    unavailable = {n: t for n, t in result.get("targets", {}).items() if t.get("status") != "ok"}
    for name, info in unavailable.items():
        lines.append(f"\ntarget {name} unavailable: {str(info.get('error'))[:300]}")
    lines.append("\nGoals (reported, never enforced):")
    for goal in result.get("goals", []):
        value, threshold = goal.get("value"), goal.get("threshold")
        detail = ""
        if value is not None and threshold is not None:
            detail = f": {value:.3f} vs {threshold:.3f}"
        lines.append(f"  {goal['status']:<4} {goal['goal']}{detail}")
    return "\n".join(lines)


# --- chart --------------------------------------------------------------------------------------------

CHART_PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("produce_throughput", ("mb_per_s",), "Produce throughput (MB/s)"),
    ("consume_throughput", ("mb_per_s",), "Consume throughput (MB/s)"),
    ("produce_latency", ("p50", "p99", "p99_9"), "Produce latency at fixed rate (ms)"),
    ("e2e_latency", ("p50", "p99"), "End-to-end latency (ms)"),
    ("connection_scaling", ("rss_kib_per_conn", "light_p99"), "1,000 idle conns: KiB/conn, light p99 ms"),
    ("worker_scaling", ("mb_per_s",), "Worker scaling (MB/s, 2 producers)"),
)


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """Grouped bars of the medians, one panel per scenario, with each round as a dot. False if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = result.get("scenarios", {})
    panels = [p for p in CHART_PANELS if any(scenarios.get(p[0], {}).get("medians", {}).values())]
    if not panels:
        return False
    columns = 3 if len(panels) > 2 else len(panels)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    colours = {
        "direct": "#4c72b0",
        "streamgate": "#dd8452",
        "streamgate-identity": "#8c564b",
        "peer": "#55a868",
        "streamgate-w1": "#dd8452",
        "streamgate-w2": "#c44e52",
    }
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (name, metrics, title) in zip(axes.flat, panels, strict=False):
        scenario = scenarios[name]
        targets = [t for t in scenario["targets"] if scenario["medians"].get(t)]
        bar_width = 0.8 / max(len(targets), 1)
        for index, target in enumerate(targets):
            offsets = [m + (index - (len(targets) - 1) / 2) * bar_width for m in range(len(metrics))]
            values = [scenario["medians"][target].get(metric) or 0.0 for metric in metrics]
            colour = colours.get(target, f"C{index + 3}")
            axis.bar(offsets, values, bar_width, label=target, color=colour)
            for offset, metric in zip(offsets, metrics, strict=True):
                points = [
                    m["metrics"][metric]
                    for m in scenario["rounds"]
                    if m["target"] == target
                    and not m.get("error")
                    and m.get("metrics")
                    and m["metrics"].get(metric) is not None
                ]
                axis.scatter([offset] * len(points), points, s=8, color="black", zorder=3)
        axis.set_xticks(range(len(metrics)))
        axis.set_xticklabels(metrics)
        axis.set_title(title, fontsize=10)
        if name.endswith("_latency") or name == "connection_scaling":
            axis.set_yscale("log")  # a saturated target can be 1,000x slower; keep the others readable
        if targets:
            axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    run = result.get("run", {})
    figure.suptitle(
        f"Streamgate bench {run.get('started_utc', '')} ({run.get('profile', '')}): medians, dots = rounds",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m bench.report RESULT.json\n")
        return 2
    path = Path(argv[1])
    result = summarize(json.loads(path.read_text()))
    print(format_table(result))
    write_chart(result, path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
