"""History: stats percentiles against numpy, retention with an injected clock, restart, series buckets."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hf_provider.observability import queries
from hf_provider.observability.observer import Observer
from hf_provider.observability.store import SCHEMA_VERSION

T0 = 1_700_000_040.0  # a minute boundary
DAY = 86400.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def feed(
    obs: Observer,
    clock: Clock,
    start: float,
    latencies_ms: list[float],
    model: str = "a",
    task: str = "embed",
    outcome: str = "ok",
    spacing: float = 1.0,
) -> None:
    for i, lat in enumerate(latencies_ms):
        clock.t = start + i * spacing
        obs.request_done(model, task, "r1", outcome, lat / 1000.0, items=1, tokens=3)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def test_stats_percentiles_equal_numpy(clock: Clock) -> None:
    rng = random.Random(7)
    obs = Observer(home=None, clock=clock)
    a = [rng.lognormvariate(1.5, 0.8) for _ in range(997)]
    b = [rng.uniform(50, 400) for _ in range(301)]
    errs = [rng.uniform(1, 900) for _ in range(40)]
    feed(obs, clock, T0, a, spacing=0.2)
    feed(obs, clock, T0, b, model="b", task="generate", spacing=0.5)
    feed(obs, clock, T0, errs, outcome="error", spacing=3)
    feed(obs, clock, T0, [0.01] * 9, outcome="rejected", spacing=5)
    clock.t = T0 + 250
    for model, task, vals, n in (
        ("a", None, a + errs, 997 + 40 + 9),
        ("b", "generate", b, 301),
        (None, None, a + b + errs, 997 + 301 + 40 + 9),
        ("a", "embed", a + errs, 1046),
    ):
        s = queries.stats(obs, model, task, window_s=300)
        assert s["requests"] == n
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            assert s["latency_ms"][name] == pytest.approx(float(np.percentile(vals, q)), abs=1e-3), (
                model,
                name,
            )
    s = queries.stats(obs, "a", None, 300)
    assert s["ok"] == 997 and s["errors"] == 40 and s["rejected"] == 9
    assert s["throughput_per_s"] == pytest.approx(997 / 300)
    assert s["error_rate"] == pytest.approx(49 / 1046, abs=1e-6)
    assert s["items"] == 1046 and s["tokens"] == 3 * 1046
    # A window is the last window_s seconds: only the final 100 s of model a's traffic.
    recent = [v for i, v in enumerate(a) if T0 + i * 0.2 >= clock.t - 100]
    s = queries.stats(obs, "a", "embed", window_s=100)
    assert s["ok"] == len(recent)
    assert s["latency_ms"]["p50"] == pytest.approx(float(np.percentile(recent, 50)), abs=1e-3)
    empty = queries.stats(obs, "nobody", None, 300)
    assert empty["requests"] == 0 and empty["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    obs.close()


def test_retention_rolls_up_then_drops(clock: Clock) -> None:
    obs = Observer(home=None, clock=clock, raw_retention_s=DAY, rollup_retention_s=30 * DAY)
    old = [float(v) for v in range(1, 121)]  # two minutes, one request a second
    feed(obs, clock, T0, old)
    feed(obs, clock, T0 + 2 * DAY, [5.0] * 30)  # recent: stays raw
    obs.flush()
    assert obs.store.count("requests") == 150
    clock.t = T0 + 2 * DAY + 60
    dropped = obs.run_maintenance()
    assert dropped["requests"] == 120
    assert obs.store.count("requests") == 30
    rollups = obs.store.count("request_rollups")
    assert rollups == 3  # two old minutes + the recent one
    # The old part is still counted, from rollups; percentiles are estimates there.
    s = queries.stats(obs, "a", None, window_s=3 * DAY)
    assert s["requests"] == 150 and s["ok"] == 150
    assert s["latency_ms"]["p50"] == pytest.approx(float(np.percentile(old + [5.0] * 30, 50)), rel=0.25)
    assert queries.stats(obs, "a", None, window_s=DAY)["requests"] == 30
    # Rollups older than 30 days go too.
    clock.t = T0 + 31 * DAY
    dropped = obs.run_maintenance()
    assert dropped["request_rollups"] == 2
    assert obs.store.count("request_rollups") == 1
    assert queries.stats(obs, "a", None, window_s=30 * DAY)["requests"] == 30
    clock.t = T0 + 33 * DAY
    obs.run_maintenance()
    assert obs.store.count("request_rollups") == 0
    assert obs.store.count("requests") == 0
    obs.close()


def test_resource_retention(clock: Clock) -> None:
    obs = Observer(home=None, clock=clock, raw_retention_s=3600, rollup_retention_s=7200)
    for i in range(12):
        obs.sample(T0 + i * 10)
    obs.flush()
    raw = obs.store.count("resources")
    assert raw > 0 and obs.store.count("resource_rollups") > 0
    obs.run_maintenance(T0 + 3600 + 300)
    assert obs.store.count("resources") == 0
    assert obs.store.count("resource_rollups") > 0
    obs.run_maintenance(T0 + 7200 + 300)
    assert obs.store.count("resource_rollups") == 0
    obs.close()


def test_history_survives_restart(tmp_path: Path, clock: Clock) -> None:
    obs = Observer(home=tmp_path, clock=clock)
    lat = [3.0, 1.0, 2.0, 10.0]
    feed(obs, clock, T0, lat)
    obs.sample(T0)
    obs.close()  # close flushes
    assert (tmp_path / "metrics.db").exists()
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        cols = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
    assert cols == {"ts", "model", "task", "outcome", "latency_ms", "items", "tokens"}  # no inputs/outputs
    clock.t = T0 + 60
    again = Observer(home=tmp_path, clock=clock)
    s = queries.stats(again, "a", None, 300)
    assert s["requests"] == 4
    assert s["latency_ms"]["p50"] == pytest.approx(float(np.percentile(lat, 50)))
    series = queries.series(again, 300, 10)
    assert sum(v for v in series["rss_bytes"] if v) > 0
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Observer(home=tmp_path).close()
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    obs = Observer(home=tmp_path)  # falls back to an in-memory history instead of failing the server
    assert obs.store.path is None
    obs.close()


def test_series_buckets_raw_and_rollup(clock: Clock) -> None:
    obs = Observer(home=None, clock=clock)
    obs.model_bytes = lambda: {
        "a": {"weight_bytes": 10, "accounted_bytes": 20}
    }  # set late, as the server does
    feed(obs, clock, T0, [4.0] * 120)  # 1 req/s for two minutes
    obs.queue_depth("a", 3)
    obs.sample(T0 + 30)
    clock.t = T0 + 120
    s = queries.series(obs, 300, 10)
    assert s["step_s"] == 10 and len(s["t"]) == 30
    tp = [v for v in s["throughput"]["a"] if v is not None]
    assert tp and all(v == pytest.approx(1.0) for v in tp[:-1])
    assert s["latency_ms"]["p50"][-2] == pytest.approx(4.0)
    assert [v for v in s["queue_depth"]["a"] if v is not None] == [3.0]
    assert [v for v in s["accounted_bytes"]["a"] if v is not None] == [20.0]
    assert s["models"] == ["a"]
    assert isinstance(s["gpu"], dict)  # {} without a GPU
    long = queries.series(obs, 3600, 90)  # rounded up to whole minutes, read from rollups
    assert long["step_s"] == 120
    assert sum(v or 0 for v in long["throughput"]["a"]) > 0
    assert max(v for v in long["latency_ms"]["p99"] if v is not None) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="points"):
        queries.series(obs, 86400, 1)
    with pytest.raises(ValueError, match="window"):
        queries.series(obs, 0, 1)
    obs.close()
