"""Per pipeline and step figures over a window (observability/pipelines.py, on a hand-stepped clock) and `hfp top`'s
pipelines table drawn from them as GET /v1/admin/stats serves them."""

from __future__ import annotations

import io
from typing import Any

import httpx
from rich.console import Console

from hf_provider.cli.top import top
from hf_provider.observability.pipelines import MAX_SAMPLES, PipelineStats


def stats_at(now: list[float]) -> PipelineStats:
    s = PipelineStats(lambda: now[0])
    for i in range(10):
        s.add("digest", "translate", "ok", 0.010 + i / 1000)
        s.add("digest", "summary", "ok" if i < 9 else "timed_out", 0.020)
        s.add("digest", None, "ok" if i < 9 else "timed_out", 0.031)
    s.add("route", "long", "skipped", 0.0)
    return s


def test_window_counts_outcomes_and_percentiles_per_step_and_forgets_old_ends() -> None:
    now = [1000.0]
    s = stats_at(now)
    w = s.window(60)
    d = w["digest"]
    assert d["count"] == 10 and d["outcomes"] == {"ok": 9, "timed_out": 1}
    assert d["latency_ms"]["p50"] == 31.0
    assert d["steps"]["translate"]["latency_ms"]["p50"] == 14.5
    assert w["route"]["steps"]["long"]["latency_ms"]["p50"] is None  # skipped: no latency
    assert "count" not in w["route"]  # no whole run recorded for it
    now[0] += 61
    assert s.window(60)["digest"]["count"] == 0
    for _ in range(MAX_SAMPLES + 5):
        s.add("digest", None, "ok", 0.001)
    assert s.window(60)["digest"]["count"] == MAX_SAMPLES  # bounded


def test_top_shows_a_row_per_pipeline_and_per_step() -> None:
    pipelines = stats_at([0.0]).window(60)
    stats = {"throughput_per_s": 0.0, "latency_ms": {"p50": None, "p95": None}, "error_rate": 0.0}

    def handler(request: httpx.Request) -> httpx.Response:
        routes: dict[str, Any] = {
            "/v1/admin/series": {"t": [0], "models": ["t5"]},
            "/v1/admin/stats": {**stats, "pipelines": pipelines},
            "/v1/admin/models": {"models": [{"name": "t5", "state": "ready"}]},
        }
        body = routes.get(request.url.path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404)

    client = httpx.Client(base_url="http://hfp", transport=httpx.MockTransport(handler))
    out = io.StringIO()
    assert top(once=True, client=client, console=Console(file=out, width=120)) == 0
    text = out.getvalue()
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "ok 9 timed_out 1" in lines["digest"] and "31" in lines["digest"]
    assert "translate" in lines and "summary" in lines and "skipped 1" in lines["long"]
