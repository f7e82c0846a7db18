"""The Streamgate bench target: started from the mode's config with env overrides, sampled, stopped clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.e2e.harness import BenchContext
from bench.e2e.targets import StreamgateTarget, process_tree, tree_rss_kib
from gateway.devstack.processes import ManagedProcess

pytestmark = pytest.mark.integration


def test_streamgate_target_serves_kafka_and_its_whole_tree_is_sampled_and_stopped(
    tansu: ManagedProcess, tmp_path: Path
) -> None:
    ctx = BenchContext(broker=tansu, profile="smoke", log_dir=tmp_path)
    target = StreamgateTarget(workers=2, log_dir=tmp_path)
    target.start(tansu)
    try:
        ctx.probe(target.bootstrap, "streamgate-test")  # bootstrap and node port both work
        tree = process_tree(target.root_pids())
        assert len(tree) >= 3  # supervisor + 2 workers: RSS sampling must see the workers too
        assert tree_rss_kib(target.root_pids()) > 0
    finally:
        target.stop()
    assert process_tree(tree) == []  # nothing of it is left running
    assert (tmp_path / "streamgate.log").exists()


def test_missing_mode_config_makes_the_target_unavailable(
    tansu: ManagedProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.e2e import targets

    monkeypatch.setitem(targets.MODE_CONFIGS, "missing", "examples/does-not-exist.yaml")
    target = StreamgateTarget("streamgate-missing", mode="missing", log_dir=tmp_path)
    with pytest.raises(targets.TargetUnavailable, match="does-not-exist.yaml"):
        target.start(tansu)
    assert target.root_pids() == []
