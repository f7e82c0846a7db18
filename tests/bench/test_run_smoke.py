"""`python -m bench.run` end to end at smoke size: the result file has the documented shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run

pytestmark = pytest.mark.integration


def test_smoke_run_writes_result_json_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run.main(
        [
            "--smoke",
            "--targets",
            "peer",
            "--scenarios",
            "produce,consume,latency,connections,workers",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".json", ".png"]
    result = json.loads(files[0].read_text())

    assert result["schema"] == run.SCHEMA
    assert result["chart"] == files[1].name
    assert {"started_utc", "finished_utc", "duration_s", "profile", "rounds"} <= set(result["run"])
    assert result["run"]["profile"] == "smoke"
    assert {"cpu_model", "cpu_count", "memory_total_mb", "python", "librdkafka"} <= set(result["machine"])
    # direct is always added, first, as the reference
    assert list(result["targets"]) == ["direct", "peer"]
    assert all(t["status"] == "ok" for t in result["targets"].values())

    rounds = result["run"]["rounds"]
    for name in ("produce_throughput", "consume_throughput", "produce_latency", "connection_scaling"):
        scenario = result["scenarios"][name]
        assert scenario["targets"] == ["direct", "peer"]
        # alternation: A B A B ..., one measurement per target per round
        assert [(m["round"], m["target"]) for m in scenario["rounds"]] == [
            (r, t) for r in range(1, rounds + 1) for t in ("direct", "peer")
        ]
        assert all(m["error"] is None for m in scenario["rounds"]), scenario["rounds"]
        names = [m["name"] for m in scenario["metrics"]]
        for target in ("direct", "peer"):
            assert set(scenario["medians"][target]) == set(names)
            assert scenario["ratios"]["direct"] == {metric: 1.0 for metric in names}
            assert scenario["rounds_ok"][target] == rounds
    produce = result["scenarios"]["produce_throughput"]
    direct_median = produce["medians"]["direct"]["records_per_s"]
    peer_median = produce["medians"]["peer"]["records_per_s"]
    assert produce["ratios"]["peer"]["records_per_s"] == pytest.approx(peer_median / direct_median)
    # No Streamgate target was asked for, so the worker scenario is skipped and says why.
    assert result["scenarios"]["worker_scaling"]["skipped"]
    assert {g["status"] for g in result["goals"]} <= {"PASS", "FAIL", "N/A"}

    table = capsys.readouterr().out
    assert "produce_throughput" in table and "Goals (reported, never enforced):" in table
