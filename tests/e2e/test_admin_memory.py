"""Admin API and CLI for memory management against a real server over loopback: list models with their memory
state, load / unload / pin / unpin, 404 for unknown names, and `hfp models load NAME --url`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.e2e.conftest import serve

MODEL_FIELDS = {"name", "state", "estimated_bytes", "weight_bytes", "last_used", "pinned", "priority"}
BUDGET = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def admin_url(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("admin-e2e")
    config = {
        "home": str(base / "home"),
        "history_enabled": False,
        "load_on_start": False,
        "memory": {"host_budget": BUDGET, "min_residency_s": 0},
        "models": [
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["text-classification"],
                "device": "cpu",
                "priority": 2,
                "batching": {"max_batch_size": 8},
            },
            {
                "name": "ner",
                "source": str(tiny_models["bert-ner"]),
                "tasks": ["token-classification"],
                "device": "cpu",
                "batching": {"max_batch_size": 8},
            },
        ],
    }
    with serve(config, base) as served:  # readyz is green at once: nothing loads at start
        yield served.url


@pytest.fixture
def http(admin_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin_url, timeout=60.0) as c:
        yield c


def _models(http: httpx.Client) -> dict[str, dict]:
    r = http.get("/v1/admin/models")
    assert r.status_code == 200
    return {m["name"]: m for m in r.json()["models"]}


def test_list_shows_memory_fields(http: httpx.Client) -> None:
    http.post("/v1/admin/models/cls/load").raise_for_status()
    body = http.get("/v1/admin/models").json()
    assert set(body) == {"models", "memory"}
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {"cls", "ner"}
    for m in models.values():
        assert set(m) >= MODEL_FIELDS, MODEL_FIELDS - set(m)
    cls = models["cls"]
    assert cls["state"] == "ready" and cls["priority"] == 2 and cls["pinned"] is False
    assert cls["weight_bytes"] > 0 and cls["estimated_bytes"] >= cls["weight_bytes"]
    assert isinstance(cls["last_used"], float)
    mem = body["memory"]
    assert mem["host_budget_bytes"] == BUDGET
    assert mem["host_used_bytes"] >= cls["accounted_bytes"] > 0


def test_load_unload_pin_unpin_change_state(http: httpx.Client) -> None:
    r = http.post("/v1/admin/models/ner/load")
    assert r.status_code == 200 and r.json()["state"] == "ready" and r.json()["weight_bytes"] > 0
    used = http.get("/v1/admin/models").json()["memory"]["host_used_bytes"]

    r = http.post("/v1/admin/models/ner/pin")
    assert r.status_code == 200 and r.json()["pinned"] is True
    assert _models(http)["ner"]["pinned"] is True
    r = http.post("/v1/admin/models/ner/unpin")
    assert r.status_code == 200 and r.json()["pinned"] is False

    r = http.post("/v1/admin/models/ner/unload")
    assert r.status_code == 200 and r.json()["state"] == "unloaded"
    after = http.get("/v1/admin/models").json()["memory"]["host_used_bytes"]
    assert after < used
    assert _models(http)["ner"]["state"] == "unloaded"

    # A task request loads it again on demand.
    r = http.post(
        "/v1/tasks/token-classification", json={"model": "ner", "inputs": ["Alice lives in Paris."]}
    )
    assert r.status_code == 200, r.text
    assert _models(http)["ner"]["state"] == "ready" and _models(http)["ner"]["loads"] == 2


@pytest.mark.parametrize("action", ["load", "unload", "pin", "unpin"])
def test_unknown_model_is_404(http: httpx.Client, action: str) -> None:
    r = http.post(f"/v1/admin/models/no-such-model/{action}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_cli_models_load_unload_pin(http: httpx.Client, admin_url: str) -> None:
    from hf_provider.cli.main import app

    runner = CliRunner()
    http.post("/v1/admin/models/cls/unload").raise_for_status()
    res = runner.invoke(app, ["models", "load", "cls", "--url", admin_url])
    assert res.exit_code == 0, res.output
    assert "cls: ready" in res.output
    assert _models(http)["cls"]["state"] == "ready"
    res = runner.invoke(app, ["models", "pin", "cls", "--url", admin_url])
    assert res.exit_code == 0 and "(pinned)" in res.output
    res = runner.invoke(app, ["models", "unpin", "cls", "--url", admin_url])
    assert res.exit_code == 0 and "(pinned)" not in res.output
    res = runner.invoke(app, ["models", "unload", "cls", "--url", admin_url])
    assert res.exit_code == 0 and "cls: unloaded" in res.output
    res = runner.invoke(app, ["models", "load", "nope", "--url", admin_url])
    assert res.exit_code != 0
    assert "nope" in res.output
