"""The latency recorder and the arithmetic behind medians and ratios give exactly the expected numbers."""

from __future__ import annotations

import math
import random

import pytest

from bench.e2e.stats import (
    LatencyRecorder,
    delta,
    exact_percentile,
    median,
    medians_by_metric,
    percentile_key,
    ratio,
)


def test_percentiles_of_one_to_a_thousand_microseconds_are_exact() -> None:
    recorder = LatencyRecorder()
    values = list(range(1, 1001))
    random.Random(7).shuffle(values)  # recording order must not matter
    for value in values:
        recorder.record_us(value)
    summary = recorder.summary_ms(percentiles=(50.0, 99.0, 99.9, 100.0))
    assert summary == {"p50": 0.5, "p99": 0.99, "p99_9": 0.999, "p100": 1.0, "mean": 0.5005, "max": 1.0}
    assert recorder.count == 1000


def test_wrapper_matches_exact_rank_rule_on_a_random_sample_in_the_exact_range() -> None:
    # Below 2,048 µs the 3-digit HDR histogram stores every microsecond in its own bucket.
    rng = random.Random(11)
    sample = [rng.randint(1, 2047) for _ in range(5_003)]
    recorder = LatencyRecorder()
    for value in sample:
        recorder.record_us(value)
    for percentile in (1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99):
        assert recorder.percentile_us(percentile) == exact_percentile(sample, percentile)


def test_large_values_stay_within_the_histograms_relative_precision() -> None:
    rng = random.Random(3)
    sample = [rng.randint(2_048, 5_000_000) for _ in range(2_000)]
    recorder = LatencyRecorder()
    for value in sample:
        recorder.record_us(value)
    for percentile in (50.0, 99.0, 99.9):
        exact = exact_percentile(sample, percentile)
        assert abs(recorder.percentile_us(percentile) - exact) <= exact * 0.001 + 1


def test_nanosecond_input_is_rounded_to_microseconds() -> None:
    recorder = LatencyRecorder()
    recorder.record_ns(1_499)  # 1.499 µs -> 1
    recorder.record_ns(2_500_000)  # 2.5 ms
    assert recorder.percentile_us(50.0) == 1
    assert recorder.summary_ms()["max"] == pytest.approx(2.5, rel=1e-3)


def test_out_of_range_samples_are_clamped_and_counted_not_dropped() -> None:
    recorder = LatencyRecorder()
    recorder.record_us(0)
    recorder.record_us(-5)
    recorder.record_us(10**12)
    assert recorder.count == 3
    assert recorder.clamped == 3
    assert recorder.percentile_us(100.0) >= 60_000_000


def test_empty_recorder_reports_nan_so_it_cannot_look_fast() -> None:
    summary = LatencyRecorder().summary_ms()
    assert all(math.isnan(value) for value in summary.values())


def test_encoded_histogram_round_trips() -> None:
    recorder = LatencyRecorder()
    for value in (5, 50, 500, 5_000):
        recorder.record_us(value)
    copy = LatencyRecorder.decode(recorder.encode())
    assert copy.count == 4
    assert copy.summary_ms() == recorder.summary_ms()


def test_exact_percentile_uses_rounded_rank() -> None:
    sample = [10, 20, 30, 40]
    assert exact_percentile(sample, 50.0) == 20  # rank round(2.0) = 2
    assert exact_percentile(sample, 62.5) == 30  # rank round(2.5 half up) = 3
    assert exact_percentile(sample, 0.0) == 10  # rank is at least 1
    with pytest.raises(ValueError):
        exact_percentile([], 50.0)


def test_percentile_keys() -> None:
    assert [percentile_key(p) for p in (50.0, 99.0, 99.9, 99.99)] == ["p50", "p99", "p99_9", "p99_99"]


def test_median_ignores_missing_and_non_finite_values() -> None:
    assert median([3.0, None, 1.0, float("nan"), 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([None, float("nan")]) is None


def test_ratio_and_delta() -> None:
    assert ratio(85.0, 100.0) == pytest.approx(0.85)
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None
    assert delta(1.75, 0.5) == pytest.approx(1.25)
    assert delta(None, 0.5) is None


def test_medians_by_metric_uses_the_rounds_that_have_the_metric() -> None:
    rounds = [{"a": 1.0, "b": 10.0}, {"a": 3.0}, {"a": 2.0, "b": 30.0}]
    assert medians_by_metric(rounds) == {"a": 2.0, "b": 20.0}
