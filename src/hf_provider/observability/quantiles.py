"""Percentiles from exact samples and from the fixed latency histogram the one-minute rollups store.

The exact definition is numpy's default ("linear", the same as `statistics.quantiles(method="inclusive")`):
rank h = (n - 1) * q, interpolate between the two neighbouring order statistics. The histogram estimate uses
the same rank and interpolates inside the bucket that holds it, clamped to the observed min and max.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

# Upper bounds (ms) of the rollup latency buckets; one more bucket catches everything above the last bound.
ROLLUP_BOUNDS_MS: tuple[float, ...] = (
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
    30000,
)
N_BUCKETS = len(ROLLUP_BOUNDS_MS) + 1
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def bucket_index(latency_ms: float) -> int:
    return bisect.bisect_left(ROLLUP_BOUNDS_MS, latency_ms)


def exact(sorted_values: Sequence[float], q: float) -> float | None:
    n = len(sorted_values)
    if n == 0:
        return None
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def from_histogram(
    counts: Sequence[int], q: float, lo_ms: float | None = None, hi_ms: float | None = None
) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    rank = (total - 1) * q
    cum = 0
    for i, c in enumerate(counts):
        if c and cum + c > rank:
            b_lo = ROLLUP_BOUNDS_MS[i - 1] if i > 0 else 0.0
            b_hi = (
                ROLLUP_BOUNDS_MS[i] if i < len(ROLLUP_BOUNDS_MS) else (hi_ms if hi_ms is not None else b_lo)
            )
            if lo_ms is not None:
                b_lo = max(b_lo, lo_ms)
            if hi_ms is not None:
                b_hi = min(b_hi, hi_ms)
            b_hi = max(b_hi, b_lo)
            return b_lo + (b_hi - b_lo) * ((rank - cum + 0.5) / c)
        cum += c
    return hi_ms


def histogram(values: Iterable[float]) -> list[int]:
    counts = [0] * N_BUCKETS
    for v in values:
        counts[bucket_index(v)] += 1
    return counts


def summarize(
    raw: list[float], hist: list[int] | None = None, lo_ms: float | None = None, hi_ms: float | None = None
) -> dict[str, float | None]:
    """{"p50","p95","p99"}: exact from `raw` alone, else a histogram estimate over raw + hist."""
    if not hist or not any(hist):
        raw.sort()
        return {name: _round(exact(raw, q)) for name, q in QUANTILES}
    merged = list(hist)
    for v in raw:
        merged[bucket_index(v)] += 1
    if raw:
        lo_ms = min(raw) if lo_ms is None else min(lo_ms, min(raw))
        hi_ms = max(raw) if hi_ms is None else max(hi_ms, max(raw))
    return {name: _round(from_histogram(merged, q, lo_ms, hi_ms)) for name, q in QUANTILES}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
