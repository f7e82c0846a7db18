"""Medians, ratios to direct, goal lines, the table and the chart, from a hand-made result document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.e2e.scenarios import ConnectionScaling, ProduceLatency, ProduceThroughput, Scenario


def _metrics(scenario: Scenario) -> list[dict[str, Any]]:
    return [
        {"name": m.name, "unit": m.unit, "higher_is_better": m.higher_is_better, "label": m.label}
        for m in scenario.metrics
    ]


def _round(
    round_number: int, target: str, metrics: dict[str, float] | None, error: str | None = None
) -> dict:
    return {"round": round_number, "target": target, "metrics": metrics, "raw": {}, "error": error}


def _result() -> dict[str, Any]:
    targets = ["direct", "streamgate", "peer"]
    produce = {
        "metrics": _metrics(ProduceThroughput()),
        "targets": targets,
        "skipped": None,
        "rounds": [
            _round(1, "direct", {"records_per_s": 100.0, "mb_per_s": 0.1}),
            _round(1, "streamgate", {"records_per_s": 90.0, "mb_per_s": 0.09}),
            _round(1, "peer", {"records_per_s": 50.0, "mb_per_s": 0.05}),
            _round(2, "direct", {"records_per_s": 120.0, "mb_per_s": 0.12}),
            _round(2, "streamgate", None, error="incomplete: lost records"),  # must not count as zero
            _round(2, "peer", {"records_per_s": 70.0, "mb_per_s": 0.07}),
            _round(3, "direct", {"records_per_s": 80.0, "mb_per_s": 0.08}),
            _round(3, "streamgate", {"records_per_s": 80.0, "mb_per_s": 0.08}),
            _round(3, "peer", {"records_per_s": 60.0, "mb_per_s": 0.06}),
        ],
    }
    latency = {
        "metrics": _metrics(ProduceLatency()),
        "targets": targets,
        "skipped": None,
        "rounds": [
            _round(r, t, {"p50": base, "p99": base * 2 + r * 0.1, "p99_9": base * 3})
            for r in (1, 2, 3)
            for t, base in (("direct", 1.0), ("streamgate", 1.5), ("peer", 1.2))
        ],
    }
    connections = {
        "metrics": _metrics(ConnectionScaling()),
        "targets": ["direct", "streamgate"],
        "skipped": None,
        "rounds": [
            _round(1, "direct", {"rss_kib_per_conn": 10.0, "light_p99": 2.0}),
            _round(1, "streamgate", {"rss_kib_per_conn": 5.0, "light_p99": 3.0}),
        ],
    }
    return {
        "run": {"profile": "quick", "rounds": 3, "started_utc": "2024-01-01T00:00:00Z"},
        "machine": {"cpu_model": "test cpu", "cpu_count": 2, "librdkafka": "2.x"},
        "targets": {t: {"status": "ok"} for t in targets},
        "scenarios": {
            "produce_throughput": produce,
            "produce_latency": latency,
            "connection_scaling": connections,
        },
    }


def test_medians_skip_failed_rounds_and_ratios_divide_by_direct() -> None:
    result = report.summarize(_result())
    produce = result["scenarios"]["produce_throughput"]
    assert produce["medians"]["direct"]["records_per_s"] == 100.0
    assert produce["medians"]["streamgate"]["records_per_s"] == 85.0  # median of 90 and 80; round 2 failed
    assert produce["rounds_ok"] == {"direct": 3, "streamgate": 2, "peer": 3}
    assert produce["ratios"]["streamgate"]["records_per_s"] == pytest.approx(0.85)
    assert produce["ratios"]["peer"]["records_per_s"] == pytest.approx(0.60)
    assert produce["ratios"]["direct"]["records_per_s"] == 1.0
    latency = result["scenarios"]["produce_latency"]
    assert latency["medians"]["direct"]["p99"] == pytest.approx(2.2)
    assert latency["deltas"]["streamgate"]["p99"] == pytest.approx(1.0)
    assert latency["deltas"]["peer"]["p99"] == pytest.approx(0.4)


def test_goals_pass_fail_and_not_applicable() -> None:
    goals = {g["goal"]: g for g in report.summarize(_result())["goals"]}
    assert goals["passthrough produce throughput >= 0.85x direct"]["status"] == "PASS"  # exactly 0.85
    assert goals["passthrough consume throughput >= 0.85x direct"]["status"] == "N/A"  # scenario not run
    added = goals["added p99 produce latency <= 1.0 ms over direct"]
    assert added["status"] == "PASS" and added["value"] == pytest.approx(1.0)
    assert goals["ahead of peer on produce_throughput records_per_s"]["status"] == "PASS"
    assert goals["ahead of peer on produce_latency p99"]["status"] == "FAIL"  # 3.2 ms vs peer 2.6 ms
    assert goals["ahead of peer on connection_scaling rss_kib_per_conn"]["status"] == "N/A"  # no peer


def test_added_latency_over_one_millisecond_fails() -> None:
    result = _result()
    for measurement in result["scenarios"]["produce_latency"]["rounds"]:
        if measurement["target"] == "streamgate":
            measurement["metrics"]["p99"] += 0.5
    goals = {g["goal"]: g for g in report.summarize(result)["goals"]}
    assert goals["added p99 produce latency <= 1.0 ms over direct"]["status"] == "FAIL"


def test_table_shows_ratios_deltas_failures_and_goal_lines() -> None:
    text = report.format_table(report.summarize(_result()))
    assert "(0.85x)" in text
    assert "(+1.000)" in text
    assert "! round 2 streamgate: incomplete: lost records" in text
    assert "PASS passthrough produce throughput >= 0.85x direct" in text
    assert "FAIL ahead of peer on produce_latency p99" in text


def test_chart_is_written_as_png(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    assert report.write_chart(report.summarize(_result()), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_with_nothing_measured_is_not_written(tmp_path: Path) -> None:
    result = _result()
    for scenario in result["scenarios"].values():
        for measurement in scenario["rounds"]:
            measurement.update(metrics=None, error="boom")
    path = tmp_path / "chart.png"
    assert not report.write_chart(report.summarize(result), path)
    assert not path.exists()


def _with_identity_mode() -> dict[str, Any]:
    """The produce and latency scenarios with a `streamgate-identity` target measured in the same rounds."""
    result = _result()
    produce = result["scenarios"]["produce_throughput"]
    produce["targets"].append("streamgate-identity")
    produce["rounds"] += [
        _round(1, "streamgate-identity", {"records_per_s": 60.0, "mb_per_s": 0.06}),
        _round(2, "streamgate-identity", {"records_per_s": 70.0, "mb_per_s": 0.07}),
        _round(3, "streamgate-identity", None, error="incomplete: lost records"),
    ]
    latency = result["scenarios"]["produce_latency"]
    latency["targets"].append("streamgate-identity")
    latency["rounds"] += [
        _round(r, "streamgate-identity", {"p50": 2.0, "p99": 4.0 + r * 0.1, "p99_9": 6.0}) for r in (1, 2, 3)
    ]
    return result


def test_gateway_modes_are_compared_with_passthrough_as_well_as_direct() -> None:
    result = report.summarize(_with_identity_mode())
    produce = result["scenarios"]["produce_throughput"]
    assert produce["medians"]["streamgate-identity"]["records_per_s"] == 65.0  # round 3 failed
    assert produce["ratios"]["streamgate-identity"]["records_per_s"] == pytest.approx(0.65)
    # passthrough median is 85 (rounds 1 and 3): identity runs at 65/85 of it
    assert produce["mode_ratios"] == {
        "streamgate-identity": {"records_per_s": pytest.approx(65 / 85), "mb_per_s": pytest.approx(65 / 85)}
    }
    latency = result["scenarios"]["produce_latency"]
    # p99 medians: identity 4.2, passthrough 3.2 -> +1.0 ms, 1.3125x
    assert latency["mode_deltas"]["streamgate-identity"]["p99"] == pytest.approx(1.0)
    assert latency["mode_ratios"]["streamgate-identity"]["p99"] == pytest.approx(4.2 / 3.2)
    # a scenario without the mode target has no comparison, and passthrough is never compared with itself
    assert result["scenarios"]["connection_scaling"]["mode_ratios"] == {}
    assert "streamgate" not in produce["mode_ratios"]
    # goals stay about passthrough: the identity target does not change them
    goals = {g["goal"]: g for g in result["goals"]}
    assert goals["passthrough produce throughput >= 0.85x direct"]["value"] == pytest.approx(0.85)


def test_table_has_one_mode_line_per_scenario() -> None:
    text = report.format_table(report.summarize(_with_identity_mode()))
    mode_lines = [line.strip() for line in text.splitlines() if "/ streamgate (passthrough)" in line]
    assert mode_lines == [
        "streamgate-identity / streamgate (passthrough): records/s 0.76x, MB/s 0.76x",
        "streamgate-identity / streamgate (passthrough): p50 1.33x (+0.500 ms), p99 1.31x (+1.000 ms), "
        "p99.9 1.33x (+1.500 ms)",
    ]
