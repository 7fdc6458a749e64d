"""GET /v1/admin/findings and /v1/admin/slo over a real server app, and the monitoring metrics on /metrics.

The regression is a synthetic history written into the server's own stores (the metric history and the version
history) with timestamps in the past: the monitor reads exactly what a server that swapped a revision an hour ago
and got slower would have recorded."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hf_provider.server.factory import build
from hf_provider.settings import load_settings


@pytest.fixture(scope="module")
def client(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {
        "home": str(tmp_path_factory.mktemp("mon") / "home"),
        "server": {"port": 0},
        "models": [
            {
                "name": "enc",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["embeddings"],
                "device": "cpu",
                "slo": {"p95_ms": 10000, "error_rate": 0.01, "window": "1d"},  # generous: a loaded CI box
            },
            {
                "name": "other",
                "source": str(tiny_models["bert-mlm"]),
                "tasks": ["embeddings"],
                "keep_alive": 0,
            },
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        for i in range(5):
            assert c.post("/v1/embeddings", json={"model": "enc", "input": f"text {i}"}).status_code == 200
        yield c, app


def test_findings_refuses_a_bad_flag(client: Any) -> None:
    c, _ = client
    r = c.get("/v1/admin/findings", params={"refresh": "maybe"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "refresh"


def test_slo_reports_each_model_with_its_budget(client: Any) -> None:
    c, _ = client
    body = c.get("/v1/admin/slo").json()["models"]
    assert body["other"]["status"] == "none"
    enc = body["enc"]
    assert enc["status"] == "ok" and enc["requests"] == 5
    assert {o["objective"] for o in enc["objectives"]} == {"latency", "error_rate"}
    assert all(o["budget_remaining"] == 1.0 for o in enc["objectives"])
    metrics = c.get("/metrics").text
    assert 'hfp_slo_latency_target_seconds{model="enc"} 10.0' in metrics
    assert 'hfp_slo_error_rate_target{model="enc"} 0.01' in metrics
    assert 'hfp_memory_used_bytes{pool="host"}' in metrics
    assert "hfp_server_restarts 0.0" in metrics


def test_a_slower_revision_is_a_finding_on_the_api_and_the_metric(client: Any) -> None:
    c, app = client
    provider = app.state.provider
    obs, history = provider.observer, provider.lifecycle.history
    now = time.time()
    swap = now - 300
    rng = random.Random(4)
    rows = []
    for i in range(1200):  # an hour of the old revision, then five minutes of one 40% slower
        ts = swap - 3600 + i * 3
        rows.append((ts, "enc", "embeddings", "ok", rng.lognormvariate(3.5, 0.3), 1, 4))
    for i in range(200):
        ts = swap + i * 1.4
        rows.append((ts, "enc", "embeddings", "ok", rng.lognormvariate(3.5, 0.3) * 1.4, 1, 4))
    obs.store.write(rows, [])
    commit = provider.manager.entry("enc").model.commit
    clock, history.clock = history.clock, lambda: swap - 3600
    try:
        history.record("enc", "load", revision="main", commit="aaaaaaa0000", actor="start")
        history.clock = lambda: swap
        # the commit the server loaded at its start (its own "load" event, now) is the one the swap installed
        history.record("enc", "swap", revision="v2", commit=commit, actor="admin")
    finally:
        history.clock = clock
    body = c.get("/v1/admin/findings", params={"refresh": "true"}).json()
    found = [f for f in body["findings"] if f["model"] == "enc"]
    assert [f["kind"] for f in found] == ["latency"], body
    assert (
        found[0]["revision"] == commit and "went live (compared with revision aaaaaaa)" in found[0]["message"]
    )
    assert found[0]["change"] > 0.2
    assert 'hfp_findings{kind="latency",model="enc"} 1.0' in c.get("/metrics").text
    # the cached answer without refresh is the same
    assert c.get("/v1/admin/findings").json()["findings"] == body["findings"]


def test_top_shows_the_active_finding(client: Any) -> None:
    """Runs after the finding above was raised (the module's server is shared, tests run in file order)."""
    import io

    from rich.console import Console

    from hf_provider.cli.top import top

    c, _ = client
    c.get("/v1/admin/findings", params={"refresh": "true"})
    out = io.StringIO()
    assert top(once=True, client=c, console=Console(file=out, width=200, force_terminal=False)) == 0
    text = out.getvalue()
    assert "enc" in text and "! enc: p95 +" in text and "went live" in text
