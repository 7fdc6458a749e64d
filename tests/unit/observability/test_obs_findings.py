"""Regression detection: synthetic histories with an injected clock, no sleeps.

A revision change that makes p95 30% worse is flagged in the first window after it; a stable history with the
same noise gives no finding over 1000 windows (the false-positive rate is printed: run with -s to see it)."""

from __future__ import annotations

import random

import pytest

from hf_provider.lifecycle.history import VersionHistory, serving_events
from hf_provider.observability import findings as fd
from hf_provider.observability.metrics import Metrics
from hf_provider.observability.monitor import FindingsMonitor, expand
from hf_provider.observability.store import RequestHistoryStore

T0 = 1_700_000_040.0
WINDOW = 300.0
PER_WINDOW = 150  # requests in a window: 0.5 req/s


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def latencies(rng: random.Random, n: int, scale: float = 1.0) -> list[float]:
    """Log-normal service times around 40 ms with a 1% tail of slow outliers (GC pauses, a cold cache)."""
    out = []
    for _ in range(n):
        v = rng.lognormvariate(3.7, 0.35)
        if rng.random() < 0.01:
            v *= rng.uniform(3, 8)
        out.append(v * scale)
    return out


def window(rng: random.Random, n: int = PER_WINDOW, scale: float = 1.0, failed: int = 0) -> fd.Window:
    return fd.Window(latencies(rng, n, scale), n, failed, WINDOW * n / PER_WINDOW)  # steady traffic


SWAP = fd.Plan((T0, T0 + WINDOW), ((T0 - 6 * WINDOW, T0),), "3f2a1c0beef", "revision 1111111", T0, True)


# -- statistics against known values ---------------------------------------------------------------------------


def test_binomial_and_poisson_tails_match_known_values() -> None:
    assert fd.binomial_sf(0, 10, 0.3) == 1.0
    assert fd.binomial_sf(11, 10, 0.3) == 0.0
    assert fd.binomial_sf(3, 10, 0.5) == pytest.approx(0.9453125)  # 1 - (1 + 10 + 45) / 1024
    assert fd.binomial_sf(10, 10, 0.5) == pytest.approx(1 / 1024)
    assert fd.hypergeom_sf(2, 10, 3, 4) == pytest.approx(1 / 3)  # (3 * 21 + 7) / 210
    assert fd.poisson_cdf(0, 2.0) == pytest.approx(0.1353352832)
    assert fd.poisson_cdf(3, 2.0) == pytest.approx(0.8571234605)


def test_mann_whitney_is_one_sided_and_handles_ties() -> None:
    low, high = [1.0, 2, 3, 4, 5] * 10, [4.0, 5, 6, 7, 8] * 10
    assert fd.mann_whitney_greater(high, low) < 1e-6
    assert fd.mann_whitney_greater(low, high) > 0.999
    assert fd.mann_whitney_greater([1.0] * 20, [1.0] * 20) == 1.0  # all tied: no evidence at all
    assert fd.mann_whitney_greater([], low) == 1.0


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fd.DetectorConfig(alpha=0.7)
    with pytest.raises(ValueError, match="min_samples"):
        fd.DetectorConfig(min_samples=1)


# -- detection --------------------------------------------------------------------------------------------------


def test_too_few_samples_gives_no_finding_even_when_much_slower() -> None:
    rng = random.Random(1)
    few = fd.Window(latencies(rng, 20, 3.0), 20, 5, 20 / PER_WINDOW * WINDOW)
    assert fd.detect("m", few, window(rng, n=900), SWAP) == []


def test_p95_up_30_percent_after_a_revision_change_is_flagged_in_one_window() -> None:
    rng = random.Random(7)
    found = fd.detect("m", window(rng, scale=1.3), window(rng, n=6 * PER_WINDOW), SWAP)
    assert [f.kind for f in found] == ["latency"]
    f = found[0]
    assert 0.15 < f.change < 0.5
    assert f.confidence >= 0.999
    assert f.revision == "3f2a1c0beef"
    assert "since revision 3f2a1c0 went live" in f.message and "p95 +" in f.message
    assert "confidence" in f.message and "revision 1111111" in f.message


def test_a_slower_tail_alone_is_flagged() -> None:
    """Median unchanged, the slowest 10% three times slower: the exceedance test sees what ranks dilute."""
    rng = random.Random(3)
    cur = sorted(latencies(rng, 400))
    cut = int(len(cur) * 0.9)
    cur = cur[:cut] + [v * 3 for v in cur[cut:]]
    found = fd.detect("m", fd.Window(cur, 400, 0, WINDOW), window(rng, n=1200), SWAP)
    assert [f.kind for f in found] == ["latency"]


def test_error_rate_and_throughput_regressions() -> None:
    rng = random.Random(5)
    base = window(rng, n=900, failed=4)
    cur = fd.Window(latencies(rng, 150), 150, 12, WINDOW)  # 8% failures, was under 1%
    kinds = [f.kind for f in fd.detect("m", cur, base, SWAP)]
    assert kinds == ["error_rate"]
    quiet = fd.Window(latencies(rng, 50), 50, 0, WINDOW)  # a third of the expected traffic
    assert [f.kind for f in fd.detect("m", quiet, base, SWAP)] == ["throughput"]


def test_faster_is_not_a_finding() -> None:
    rng = random.Random(11)
    assert fd.detect("m", window(rng, scale=0.6), window(rng, n=900), SWAP) == []


def test_stable_history_gives_no_finding_over_1000_windows() -> None:
    rng = random.Random(2026)
    base = window(rng, n=6 * PER_WINDOW)
    flagged = 0
    for _ in range(1000):
        if fd.detect("m", window(rng), base, SWAP):
            flagged += 1
        if rng.random() < 0.2:  # the baseline moves on too, as a real one would
            base = window(rng, n=6 * PER_WINDOW)
    print(f"\nfindings detector: false-positive rate {flagged}/1000 windows = {flagged / 1000:.2%}")
    assert flagged == 0


# -- planning ---------------------------------------------------------------------------------------------------


def test_plan_after_a_swap_compares_with_the_previous_revision() -> None:
    serving = [(T0 - 86400, "aaaaaaa1"), (T0 - 3600, "aaaaaaa1"), (T0, "bbbbbbb2")]
    p = fd.plan(T0 + 120, WINDOW, serving)
    assert p.after_swap and p.revision == "bbbbbbb2" and p.since == T0
    assert p.current == (T0, T0 + 120)
    assert p.baselines == ((T0 - 6 * WINDOW, T0),)
    assert p.baseline_label == "revision aaaaaaa"


def test_plan_without_a_recent_change_uses_the_same_hours_of_previous_days() -> None:
    p = fd.plan(T0, WINDOW, [(T0 - 5 * 86400, "aaaaaaa1")], days=3)
    assert not p.after_swap and p.current == (T0 - WINDOW, T0)
    assert p.baselines == tuple((T0 - WINDOW - d * 86400, T0 - d * 86400) for d in (1, 2, 3))
    with pytest.raises(ValueError, match="window_s"):
        fd.plan(T0, 0, [])


def test_expand_turns_rollup_buckets_into_rank_values() -> None:
    vals = expand([0, 2, 0, 1], lo=0.8, hi=2.5)
    assert len(vals) == 3 and vals[0] == vals[1] and 0.8 <= vals[0] <= 1.0 and vals[2] <= 2.5


# -- the monitor over the real stores ---------------------------------------------------------------------------


def _feed(store: RequestHistoryStore, rng: random.Random, start: float, end: float, scale: float) -> None:
    n = int((end - start) / WINDOW * PER_WINDOW)
    lat = latencies(rng, n, scale)
    rows = [(start + (end - start) * i / n, "m", "embeddings", "ok", lat[i], 1, 8) for i in range(n)]
    store.write(rows, [])


def test_monitor_flags_a_swap_from_the_stores_and_exports_the_gauge() -> None:
    rng = random.Random(9)
    clock = Clock(T0)
    store = RequestHistoryStore(None)
    versions = VersionHistory(None, clock=clock)
    metrics = Metrics()
    clock.t = T0 - 7200
    versions.record("m", "load", revision="main", commit="aaaaaaa1111", actor="start")
    _feed(store, rng, T0 - 7200, T0, 1.0)
    clock.t = T0
    versions.record("m", "swap", revision="v2", commit="3f2a1c0ffff", actor="admin")
    mon = FindingsMonitor(
        store, models=lambda: ["m"], serving=serving_events(versions), metrics=metrics, clock=clock
    )
    assert mon.evaluate(T0 + 10) == []  # nothing served yet by the new revision
    _feed(store, rng, T0, T0 + WINDOW, 1.3)
    found = mon.evaluate(T0 + WINDOW)
    assert [f.kind for f in found] == ["latency"]
    assert "since revision 3f2a1c0 went live" in found[0].message
    assert mon.latest()[0]["model"] == "m"
    value = metrics.registry.get_sample_value("hfp_findings", {"model": "m", "kind": "latency"})
    assert value == 1.0
    assert (
        metrics.registry.get_sample_value("hfp_findings_raised_total", {"model": "m", "kind": "latency"}) == 1
    )
    # A rollback to the previous commit: compared again, nothing is worse than it was
    clock.t = T0 + WINDOW
    versions.record("m", "rollback", revision="main", commit="aaaaaaa1111", actor="admin")
    _feed(store, rng, T0 + WINDOW, T0 + 2 * WINDOW, 1.0)
    assert mon.evaluate(T0 + 2 * WINDOW) == []
    assert metrics.registry.get_sample_value("hfp_findings", {"model": "m", "kind": "latency"}) == 0.0


def test_monitor_refuses_a_tiny_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        FindingsMonitor(RequestHistoryStore(None), models=list, window_s=1)


def test_monitor_without_a_swap_compares_with_the_same_hours_of_previous_days() -> None:
    rng = random.Random(12)
    store = RequestHistoryStore(None)
    now = T0 + 3 * 86400
    for day in (3, 2, 1):  # the same ten minutes on three earlier days, at the usual speed
        _feed(store, rng, now - WINDOW - day * 86400, now + WINDOW - day * 86400, 1.0)
    _feed(store, rng, now - WINDOW, now, 1.35)  # today's five minutes: 35% slower, no revision change
    mon = FindingsMonitor(store, models=lambda: ["m"], clock=Clock(now))
    found = mon.evaluate()
    assert [f.kind for f in found] == ["latency"]
    assert "compared with the same hours of the previous 7 days" in found[0].message
    assert found[0].revision is None and "went live" not in found[0].message
    _feed(store, rng, now, now + WINDOW, 1.0)  # the next five minutes are back to normal: no finding
    assert mon.evaluate(now + WINDOW) == [] and mon.latest() == []
