"""The circuit breaker over HTTP with injected faults: a model failing 100% opens after `failures` 500s, then
requests get 503 circuit_open with Retry-After without reaching the forward pass; once the fault is cleared and
the cool-down passed (the breaker's clock is moved, not waited for), one probe closes it."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from fastapi.testclient import TestClient

from hf_provider.errors import CircuitOpen
from hf_provider.settings import load_settings

TASK = "text-classification"
BODY = {"model": "cls", "inputs": ["a good book"]}


def test_failing_model_opens_rejects_fast_and_closes_after_the_fault(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from hf_provider.server.factory import build

    config = {
        "home": str(tmp_path / "home"),
        "history_enabled": False,
        "faults": {"rules": []},  # TESTING ONLY: enables POST /v1/admin/faults
        "models": [
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": [TASK],
                "device": "cpu",
                "breaker": {"failures": 4, "cooldown": "1h", "probes": 1},
            }
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        provider = app.state.provider
        assert c.post(f"/v1/tasks/{TASK}", json=BODY).status_code == 200
        view = {m["name"]: m for m in c.get("/v1/admin/models").json()["models"]}["cls"]["breaker"]
        assert view["state"] == "closed" and view["failures"] == 0 and view["retry_after_s"] is None

        # Client errors never count, however many.
        for _ in range(10):
            r = c.post(f"/v1/tasks/{TASK}", json={"model": "cls", "inputs": [""], "parameters": {"nope": 1}})
            assert r.status_code == 400, r.text
        r = c.post("/v1/admin/faults", json={"rules": [{"phase": "forward", "model": "cls"}]})
        assert r.status_code == 200, r.text
        for _ in range(4):
            assert c.post(f"/v1/tasks/{TASK}", json=BODY).status_code == 500
        forwards = provider.faults.injected
        assert forwards == 4

        # Open: 503 circuit_open with Retry-After, and no forward pass.
        took = []
        for _ in range(200):
            t0 = time.perf_counter()
            r = c.post(f"/v1/tasks/{TASK}", json=BODY)
            took.append(time.perf_counter() - t0)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "circuit_open"
            assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        py = []
        for _ in range(200):
            t0 = time.perf_counter()
            try:
                provider.run("cls", TASK, ["a good book"])
            except CircuitOpen as exc:
                assert exc.retry_after is not None and exc.retry_after > 3500
            py.append(time.perf_counter() - t0)
        assert provider.faults.injected == forwards  # nothing reached the forward pass
        base = []  # the TestClient's own cost per request, for scale
        for _ in range(200):
            t0 = time.perf_counter()
            c.get("/healthz")
            base.append(time.perf_counter() - t0)
        p99 = statistics.quantiles(took, n=100)[98] * 1000
        p99_py = statistics.quantiles(py, n=100)[98] * 1000
        p99_base = statistics.quantiles(base, n=100)[98] * 1000
        print(
            f"\nrejection latency p99: {p99:.2f} ms over HTTP (TestClient; GET /healthz {p99_base:.2f} ms), "
            f"{p99_py:.3f} ms in Python"
        )

        view = {m["name"]: m for m in c.get("/v1/admin/models").json()["models"]}["cls"]["breaker"]
        assert view["state"] == "open" and view["failures"] == 4 and view["retry_after_s"] > 3500
        assert view["opened_at"] is not None and abs(view["opened_at"] - time.time()) < 600
        metrics = c.get("/metrics").text
        assert 'hfp_breaker_state{model="cls"} 2.0' in metrics
        assert 'hfp_breaker_openings_total{model="cls"} 1.0' in metrics
        groups = c.get("/v1/admin/errors", params={"model": "cls", "class": "circuit_open"}).json()["groups"]
        assert groups and all(g["error_class"] == "circuit_open" for g in groups)

        # The fault is cleared and the cool-down passes: the next request is the probe and closes it.
        assert c.post("/v1/admin/faults", json={"rules": []}).status_code == 200
        breaker = provider.manager.get("cls").scheduler.breaker
        breaker.clock = lambda: time.monotonic() + 3600
        assert c.post(f"/v1/tasks/{TASK}", json=BODY).status_code == 200
        view = {m["name"]: m for m in c.get("/v1/admin/models").json()["models"]}["cls"]["breaker"]
        assert view["state"] == "closed" and view["failures"] == 0
        assert 'hfp_breaker_state{model="cls"} 0.0' in c.get("/metrics").text
        for _ in range(5):
            assert c.post(f"/v1/tasks/{TASK}", json=BODY).status_code == 200


def test_breaker_disabled_by_failures_zero(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from hf_provider.server.factory import build

    config = {
        "home": str(tmp_path / "home"),
        "metrics_enabled": False,
        "history_enabled": False,
        "faults": {"rules": [{"phase": "forward", "model": "cls"}]},
        "models": [
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": [TASK],
                "device": "cpu",
                "breaker": {"failures": 0},
            }
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        for _ in range(8):
            assert c.post(f"/v1/tasks/{TASK}", json=BODY).status_code == 500
        assert app.state.provider.faults.injected == 8
        assert c.get("/v1/admin/models").json()["models"][0]["breaker"] is None
