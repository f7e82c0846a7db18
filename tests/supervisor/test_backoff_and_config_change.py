"""Restart backoff arithmetic and the secret-free description of a config change."""

from __future__ import annotations

from gateway.supervisor.backoff import RestartBackoff
from gateway.supervisor.config_change import top_level_change


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_five() -> None:
    backoff = RestartBackoff()
    delays = [backoff.delay_after_exit(uptime=0.5) for _ in range(9)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_a_worker_that_stayed_up_ten_seconds_resets_the_backoff() -> None:
    backoff = RestartBackoff()
    for _ in range(5):
        backoff.delay_after_exit(uptime=1.0)

    assert backoff.delay_after_exit(uptime=10.0) == 0.1
    assert backoff.delay_after_exit(uptime=9.9) == 0.2


def test_thousands_of_crashes_stay_at_the_ceiling() -> None:
    backoff = RestartBackoff()
    for _ in range(5000):
        delay = backoff.delay_after_exit(uptime=0.0)
    assert delay == 5.0


def test_config_change_names_top_level_keys_only() -> None:
    old = {"kafka": {"listen": ":9092"}, "upstream": {"password": "old-secret"}, "audit": {}}
    new = {"kafka": {"listen": ":9092"}, "upstream": {"password": "new-secret"}, "policy": {"rules": []}}

    change = top_level_change(old, new)

    assert (change.added, change.removed, change.changed) == (("policy",), ("audit",), ("upstream",))
    description = change.describe()
    assert description == "added: policy; removed: audit; changed: upstream"
    assert "secret" not in description and "password" not in description


def test_identical_configs_have_no_change() -> None:
    change = top_level_change({"a": [1, 2]}, {"a": [1, 2]})
    assert change.is_empty
    assert change.describe() == "no top-level changes"
