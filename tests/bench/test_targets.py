"""Target construction and the /proc process-tree RSS sampling the connection scenario relies on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.e2e import targets


def test_build_targets_expands_streamgate_per_mode_in_the_given_order() -> None:
    built = targets.build_targets(["direct", "streamgate", "peer"], modes=["passthrough"], workers=2)
    assert [t.name for t in built] == ["direct", "streamgate", "peer"]
    gateway = built[1]
    assert isinstance(gateway, targets.StreamgateTarget)
    assert gateway.workers == 2 and gateway.config_path.name == "passthrough.yaml"
    with pytest.raises(ValueError, match="unknown target"):
        targets.build_targets(["kafka"])
    with pytest.raises(ValueError, match="unknown streamgate mode"):
        targets.StreamgateTarget(mode="no-such-mode")


def test_unstarted_targets_have_no_bootstrap_and_no_pids() -> None:
    for target in (targets.DirectTarget(), targets.PeerTarget(), targets.StreamgateTarget()):
        assert target.root_pids() == []
        with pytest.raises(targets.TargetUnavailable):
            _ = target.bootstrap


def test_process_tree_includes_grandchildren_and_sums_their_rss() -> None:
    # A child that starts a grandchild and reports its pid: the tree must include both.
    # The grandchild says when its interpreter is up, so both RSS reads below see settled processes.
    script = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; print(1, flush=True); time.sleep(30)'],\n"
        "                     stdout=subprocess.PIPE)\n"
        "g.stdout.readline()\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        tree = targets.process_tree([child.pid])
        assert set(tree) == {child.pid, grandchild}
        separately = targets.rss_kib(child.pid) + targets.rss_kib(grandchild)
        total = targets.tree_rss_kib([child.pid])
        assert targets.rss_kib(grandchild) > 1000  # a Python interpreter is well over 1 MiB resident
        assert abs(total - separately) <= separately * 0.1  # both idle: only noise between the two reads
    finally:
        for pid in targets.process_tree([child.pid]):
            os.kill(pid, 9)
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()


def test_rss_of_a_missing_process_is_zero() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)  # reaped: the pid no longer exists in /proc
    assert targets.rss_kib(dead.pid) == 0
    assert targets.process_tree([dead.pid]) == []


def test_identity_mode_target_needs_the_runs_provider_and_passthrough_needs_no_credentials() -> None:
    built = targets.build_targets(["streamgate"], modes=["passthrough", "identity"])
    assert [t.name for t in built] == ["streamgate", "streamgate-identity"]
    passthrough, identity = built
    assert isinstance(identity, targets.StreamgateTarget)
    assert identity.config_path.name == "bench-identity.yaml" and identity.config_path.exists()
    assert passthrough.client_config() == {} and passthrough.raw_sasl() is None
    # built without a provider: asking for its credentials says why it cannot run
    with pytest.raises(targets.TargetUnavailable, match="OIDC provider"):
        identity.client_config()
    audit_dir = identity.audit_dir
    assert audit_dir is not None and audit_dir.is_dir()  # no run directory given: it made its own
    identity.close()
    assert not audit_dir.exists()


def test_credentials_are_split_from_the_command_line_params() -> None:
    from bench.e2e.harness import split_credentials

    public, credentials = split_credentials(
        {"bootstrap": "h:1", "count": 3, "client_config": {"sasl.mechanism": "OAUTHBEARER"}, "raw_sasl": None}
    )
    assert public == {"bootstrap": "h:1", "count": 3}
    assert credentials == {"client_config": {"sasl.mechanism": "OAUTHBEARER"}}
