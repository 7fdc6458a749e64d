from __future__ import annotations

import random

import numpy as np
import pytest

from hf_provider.observability.profiler import StageProfiler


def test_percentages_sum_to_100_and_percentiles_match_numpy() -> None:
    rng = random.Random(1)
    p = StageProfiler(window=500)
    rows = []
    for i in range(800):
        r = (
            rng.uniform(0, 0.002),
            rng.uniform(0.001, 0.003),
            rng.uniform(0.005, 0.05),
            rng.uniform(0, 0.001),
        )
        rows.append(r)
        p.record("m", float(i), 8, *r)
    s = p.summary("m")
    kept = rows[-500:]  # the rolling window
    assert s["batches"] == 500 and s["window"]["since"] == 300.0
    assert sum(st["percent"] for st in s["stages"].values()) == pytest.approx(100.0, abs=0.01)
    fwd = [r[2] * 1000 for r in kept]
    assert s["stages"]["forward"]["p95_ms"] == pytest.approx(float(np.percentile(fwd, 95)), abs=1e-3)
    assert s["stages"]["forward"]["mean_ms"] == pytest.approx(float(np.mean(fwd)), abs=1e-3)
    assert s["stages"]["forward"]["percent"] > 50
    assert s["mean_batch_size"] == 8


def test_empty_profile() -> None:
    s = StageProfiler().summary("none")
    assert s["batches"] == 0 and s["stages"]["forward"]["percent"] is None
    with pytest.raises(ValueError):
        StageProfiler(window=0)
