"""The arithmetic behind `bench.profile` and `bench.micro_baseline`, on known inputs."""

from __future__ import annotations

import json
from pathlib import Path

from bench import micro_baseline, profile

ROOT = "<module> (streamgate:8);main (gateway/cli.py:40);run_worker (gateway/worker/main.py:301)"
COLLAPSED = [
    f"{ROOT} 60",  # the C event loop (uvloop) below the worker's entry frame
    f"{ROOT};ClientConnection._execute (gateway/worker/kafka_proxy.py:188) 25",
    f"{ROOT};ClientConnection.data_received (gateway/worker/kafka_proxy.py:150);"
    "KafkaSession._client_data (gateway/protocols/kafka/session.py:300) 10",
    f"{ROOT};ClientConnection.data_received (gateway/worker/kafka_proxy.py:150);"
    "KafkaSession._client_data (gateway/protocols/kafka/session.py:310) 5",
    "",
]


def test_collapsed_stacks_are_split_into_frames_and_counts() -> None:
    stacks = profile.read_collapsed(COLLAPSED)
    assert [count for _, count in stacks] == [60, 25, 10, 5]
    assert stacks[1][0][-1] == "ClientConnection._execute (gateway/worker/kafka_proxy.py:188)"


def test_frame_names_drop_line_numbers_so_lines_of_one_function_add_up() -> None:
    assert profile.frame_name("f (gateway/x.py:12)") == "f (gateway/x.py)"
    assert profile.frame_name("<module> (streamgate:8)") == "<module> (streamgate)"
    assert profile.frame_name("idle") == "idle"


def test_summary_shares_loop_self_and_inclusive_time() -> None:
    summary = profile.summarize_stacks(profile.read_collapsed(COLLAPSED), top=10)
    assert summary["samples"] == 100
    assert summary["loop_percent"] == 60.0 and summary["python_percent"] == 40.0
    self_time = {row["frame"]: row["percent"] for row in summary["self"]}
    assert self_time["KafkaSession._client_data (gateway/protocols/kafka/session.py)"] == 15.0  # two lines
    assert self_time["run_worker (gateway/worker/main.py)"] == 60.0
    inclusive = {row["frame"]: row["percent"] for row in summary["inclusive"]}
    assert inclusive["ClientConnection.data_received (gateway/worker/kafka_proxy.py)"] == 15.0
    assert "main (gateway/cli.py)" not in inclusive  # on every stack: says nothing


def test_perf_report_rows_are_parsed_and_comments_skipped() -> None:
    text = (
        "# Samples: 1K of event 'cpu-clock'\n#\n"
        "    58.60%  [kernel.kallsyms]\n"
        "    27.40%  python3.11\n"
        "\n"
        "     8.90%  libc.so.6   [.] __memmove_evex_unaligned_erms\n"
    )
    rows = profile.parse_perf_report(text, top=10)
    assert rows == [
        {"percent": 58.6, "what": "[kernel.kallsyms]"},
        {"percent": 27.4, "what": "python3.11"},
        {"percent": 8.9, "what": "libc.so.6 [.] __memmove_evex_unaligned_erms"},
    ]
    assert len(profile.parse_perf_report(text, top=2)) == 2


def test_cpu_seconds_of_this_process_grows_with_work() -> None:
    import os

    before = profile.cpu_seconds(os.getpid())
    total = 0
    while profile.cpu_seconds(os.getpid()) - before < 0.05:
        total += sum(range(10_000))
    assert profile.cpu_seconds(os.getpid()) >= before + 0.05


def test_baseline_keeps_every_statistic_but_the_raw_samples(tmp_path: Path) -> None:
    report = {
        "machine_info": {"node": "x"},
        "benchmarks": [
            {"fullname": "a", "stats": {"min": 1.0, "mean": 2.0, "median": 1.5, "data": [1.0, 2.0, 3.0]}},
            {"fullname": "b", "stats": {"min": 3.0, "mean": 3.0, "median": 3.0}},
        ],
    }
    stored = micro_baseline.without_samples(report)
    assert stored["benchmarks"][0]["stats"] == {"min": 1.0, "mean": 2.0, "median": 1.5}
    assert stored["benchmarks"][1] == report["benchmarks"][1]
    assert stored["machine_info"] == {"node": "x"}
    assert report["benchmarks"][0]["stats"]["data"] == [1.0, 2.0, 3.0]  # the input is not changed


def test_stored_baseline_has_no_samples_and_covers_the_proxy_micro_benchmarks() -> None:
    baseline = json.loads(micro_baseline.BASELINE.read_text())
    names = {benchmark["fullname"] for benchmark in baseline["benchmarks"]}
    assert all("data" not in benchmark["stats"] for benchmark in baseline["benchmarks"])
    for expected in (
        "test_read_request_header[produce_v9]",
        "test_rewrite_metadata_addresses_3_brokers_50_topics",
        "test_skim_fetch_response_v15_1mib[1x1x1MiB]",
    ):
        assert f"bench/micro/test_proxy_micro.py::{expected}" in names
    assert all(benchmark["stats"]["median"] > 0 for benchmark in baseline["benchmarks"])


def test_make_test_does_not_collect_the_micro_benchmarks() -> None:
    """`make test` runs pytest with no paths: testpaths decides, and bench/micro must stay out of it."""
    import tomllib

    config = tomllib.loads((micro_baseline.REPO_ROOT / "pyproject.toml").read_text())
    testpaths = config["tool"]["pytest"]["ini_options"]["testpaths"]
    assert not any(Path(path) in (Path("bench"), Path("bench/micro"), Path(".")) for path in testpaths)
