"""SLO status and error budgets from history windows (observability/slo.py), raw samples and rollups alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hf_provider.observability import slo
from hf_provider.observability.store import RequestHistoryStore
from hf_provider.settings import load_settings
from hf_provider.spec import SloSpec

T0 = 1_700_000_040.0


def _window(ok: int, failed: int = 0, slow: int = 0, client_errors: int = 0) -> dict:
    lat = [50.0] * (ok + failed - slow) + [500.0] * slow
    counts = {"ok": ok, "error": failed, "rejected": 0, "client_error": client_errors}
    return {"counts": counts, "latencies": lat, "hist": [], "lat_min": None, "lat_max": None}


def test_slo_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        SloSpec(p95_ms=0)
    with pytest.raises(ValidationError):
        SloSpec(error_rate=1.5)
    with pytest.raises(ValidationError, match="extra"):
        SloSpec(p99_ms=3)  # type: ignore[call-arg]
    s = load_settings({"models": [{"name": "a", "source": "x", "slo": {"p95_ms": 200, "window": "7d"}}]})
    assert s.models[0].slo == SloSpec(p95_ms=200, window=7 * 86400)


def test_no_traffic_is_no_data_and_a_full_budget() -> None:
    out = slo.evaluate(SloSpec(p95_ms=200, error_rate=0.01), _window(0))
    assert out["status"] == "no_data"
    assert [o["budget_remaining"] for o in out["objectives"]] == [1.0, 1.0]


def test_budgets_spent_at_risk_and_breached() -> None:
    spec = SloSpec(p95_ms=200, error_rate=0.01)
    healthy = slo.evaluate(spec, _window(1000, failed=2, slow=10, client_errors=50))
    lat, err = healthy["objectives"]
    assert healthy["status"] == "ok"
    assert lat["budget_remaining"] == pytest.approx(1 - 10 / (0.05 * 1002), abs=1e-4)
    assert err["budget_remaining"] == pytest.approx(1 - 2 / (0.01 * 1002), abs=1e-4)  # client errors excluded
    risky = slo.evaluate(spec, _window(1000, failed=9))
    assert risky["objectives"][1]["status"] == "at_risk" and risky["status"] == "at_risk"
    broken = slo.evaluate(spec, _window(1000, slow=80))
    assert broken["objectives"][0]["status"] == "breached" and broken["objectives"][0]["budget_remaining"] < 0
    assert broken["status"] == "breached"


def test_rolled_up_minutes_count_slow_requests_by_bucket() -> None:
    # Buckets 15 and 16 are (200, 300] and (300, 500] ms: a 250 ms target takes half of the first, all the second.
    assert slo.slower_in_hist([0] * 15 + [10, 4], 250) == pytest.approx(9.0)
    assert slo.slower_in_hist([0] * 15 + [10, 4], 100) == pytest.approx(14.0)


def test_report_reads_the_store_over_each_models_window() -> None:
    store = RequestHistoryStore(None)
    rows = [
        (T0 - 10 + i * 0.01, "a", "embeddings", "ok", 300.0 if i % 10 == 0 else 20.0, 1, 4)
        for i in range(500)
    ]
    rows += [(T0 - 5, "a", "embeddings", "error", 20.0, 1, 4)] * 10
    rows += [(T0 - 8 * 86400, "a", "embeddings", "error", 20.0, 1, 4)] * 100  # outside a 7-day window
    store.write(rows, [])
    specs = {"a": SloSpec(p95_ms=200, error_rate=0.01, window=7 * 86400), "b": None}
    out = slo.report(specs, lambda s, e, m: store.window(s, e, m, None), T0)["models"]
    assert out["b"] == {"status": "none", "objectives": []}
    a = out["a"]
    assert a["requests"] == 510 and a["slo"]["p95_ms"] == 200
    lat, err = a["objectives"]
    assert lat["slow"] == 50 and lat["status"] == "breached"  # 10% slower than 200 ms: twice the budget
    assert err["failed"] == 10 and err["status"] == "breached"


def test_the_observer_counts_slow_requests_and_feeds_the_monitor() -> None:
    from hf_provider.observability.monitor import FindingsMonitor
    from hf_provider.observability.observer import Observer

    obs = Observer(home=None, clock=lambda: T0)
    obs.slo_p95_s = {"a": 0.2}
    for latency in (0.1, 0.3, 0.5):
        obs.request_done("a", "embeddings", None, "ok", latency, 1, 4)
    obs.request_done("a", "embeddings", None, "rejected", 9.0, 1, 4)  # answered at once: never "slow"
    obs.request_done("b", "embeddings", None, "ok", 9.0, 1, 4)  # no objective
    reg = obs.metrics.registry
    assert reg.get_sample_value("hfp_slo_slow_requests_total", {"model": "a"}) == 2
    assert reg.get_sample_value("hfp_slo_slow_requests_total", {"model": "b"}) is None
    seen: list[int] = []

    class Counting(FindingsMonitor):
        def evaluate(self, now: float | None = None) -> list:
            seen.append(sum(self.store.window(T0 - 1, T0 + 1, None, None)["counts"].values()))
            return []

    obs.monitor = Counting(obs.store, models=lambda: ["a", "b"], clock=lambda: T0)
    obs._evaluate_findings()  # what the observer's thread runs every minute: flush first, then evaluate
    assert seen == [5]
    obs.close()
