"""Latency recording and the small amount of arithmetic the report relies on (percentiles, medians, ratios).

Latencies are recorded in whole microseconds into an HDR histogram with 3 significant digits: values below
2,048 µs are stored exactly, larger ones within 0.1 %. Percentiles follow the HDR rank rule
(rank = round(p/100 · N), at least 1, value = the highest value equivalent to the rank's bucket), which is
what `exact_percentile` reproduces on a plain sorted list so tests can check the wrapper against it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

# One minute in microseconds: anything slower is a failure of the run, not a latency worth a bucket.
HIGHEST_TRACKABLE_US = 60_000_000
SIGNIFICANT_FIGURES = 3
REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile_key(percentile: float) -> str:
    """Metric name for a percentile: 50 -> "p50", 99.9 -> "p99_9"."""
    text = f"{percentile:g}".replace(".", "_")
    return f"p{text}"


class LatencyRecorder:
    """An HDR histogram of latencies in microseconds, with the summary the bench reports."""

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES)
        self.clamped = 0  # samples outside [1, highest] that were clamped rather than dropped

    def record_us(self, value_us: float) -> None:
        value = round(value_us)
        if value < 1 or value > HIGHEST_TRACKABLE_US:
            # Clamp instead of dropping: a lost sample would hide exactly the outliers p99.9 is for.
            self.clamped += 1
            value = min(max(value, 1), HIGHEST_TRACKABLE_US)
        self._histogram.record_value(value)

    def record_ns(self, value_ns: int) -> None:
        self.record_us(value_ns / 1000.0)

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def percentile_us(self, percentile: float) -> int:
        return int(self._histogram.get_value_at_percentile(percentile))

    def summary_ms(self, percentiles: Sequence[float] = REPORTED_PERCENTILES) -> dict[str, float]:
        """Percentiles, mean and max in milliseconds (empty histogram -> NaN, so it cannot pass as fast)."""
        if self.count == 0:
            values = {percentile_key(p): math.nan for p in percentiles}
            values.update(mean=math.nan, max=math.nan)
            return values
        by_percentile = self._histogram.get_percentile_to_value_dict(list(percentiles))
        summary = {percentile_key(p): by_percentile[p] / 1000.0 for p in percentiles}
        summary["mean"] = self._histogram.get_mean_value() / 1000.0
        summary["max"] = self._histogram.get_max_value() / 1000.0
        return summary

    def encode(self) -> str:
        """The histogram in HDR's compressed base64 form, kept in the result file for later analysis."""
        return self._histogram.encode().decode("ascii")

    @classmethod
    def decode(cls, encoded: str) -> LatencyRecorder:
        recorder = cls()
        recorder._histogram = HdrHistogram.decode(encoded.encode("ascii"))
        return recorder


def exact_percentile(values: Iterable[float], percentile: float) -> float:
    """The HDR rank rule applied to a plain list: rank = round(p/100 · N) (half up), at least 1."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sample")
    rank = int(percentile / 100.0 * len(ordered) + 0.5)
    rank = min(max(rank, 1), len(ordered))
    return ordered[rank - 1]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values; None when there are none (a failed round must not become a zero)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    return float(statistics.median(finite))


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def delta(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None:
        return None
    return value - reference


def medians_by_metric(rounds: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Per-metric medians over rounds; a metric missing from some rounds uses the rounds that have it."""
    names: list[str] = []
    for metrics in rounds:
        names.extend(name for name in metrics if name not in names)
    return {name: median(metrics.get(name) for metrics in rounds) for name in names}
