"""keep_alive unloads an idle model and a later request loads it again on demand; a request whose model
cannot be admitted within load_wait_s (the budget is full of pinned models) gets a 503 with Retry-After over
HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import TINY_CACHE

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.provider import Provider
from hf_provider.scheduling.observer import NullObserver
from hf_provider.settings import MemorySettings, Settings, load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_sized_bert
from hf_provider.testing.workload import accounted_estimate

TASK = "text-classification"


def _spec(name: str, source: Path, **kw) -> ModelSpec:
    kw.setdefault("tasks", [TASK])
    return ModelSpec(
        name=name,
        source=str(source),
        device="cpu",
        max_length=64,
        batching={"max_batch_size": 4, "max_wait_ms": 1.0},
        **kw,
    )


def _state(p: Provider, name: str) -> dict:
    return next(d for d in p.admin.describe() if d["name"] == name)


def test_keep_alive_zero_unloads_after_use_and_reloads_on_demand(tiny_models: dict[str, Path]) -> None:
    settings = Settings(
        memory=MemorySettings(keep_alive_check_s=3600), metrics_enabled=False, history_enabled=False
    )
    with Provider([_spec("cls", tiny_models["bert-cls"], keep_alive="0s")], settings=settings) as p:
        first = p.run("cls", TASK, ["Alice likes the good book."])
        assert _state(p, "cls")["state"] == "ready"
        assert p.manager.reap() == ["cls"]  # idle and keep_alive 0: unloaded right after use
        assert _state(p, "cls")["state"] == "unloaded"
        assert p.admin.memory()["host_used_bytes"] == 0
        again = p.run("cls", TASK, ["Alice likes the good book."])  # loads again while the request waits
        assert again == first
        assert _state(p, "cls")["loads"] == 2


class _UnloadWatcher(NullObserver):
    """Observer that sets an event when the keep-alive reaper unloads `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.unloaded = threading.Event()

    def model_unloaded(self, model: str, reason: str) -> None:
        if model == self.name and reason == "idle":
            self.unloaded.set()


def test_reaper_thread_unloads_after_keep_alive(tiny_models: dict[str, Path]) -> None:
    settings = Settings(
        memory=MemorySettings(keep_alive_check_s=0.05), metrics_enabled=False, history_enabled=False
    )
    specs = [
        _spec("short", tiny_models["bert-cls"], keep_alive="300ms"),
        _spec("kept", tiny_models["bert-ner"], tasks=["token-classification"]),
    ]
    watcher = _UnloadWatcher("short")
    with Provider(specs, settings=settings, observer=watcher) as p:
        p.run("short", TASK, ["hello"])
        p.manager.get("kept")
        assert watcher.unloaded.wait(10)  # the background reaper, not this test, unloaded it
        assert _state(p, "short")["state"] == "unloaded"
        # The reaper pass that unloaded "short" also judged "kept" (no keep_alive): it stays.
        assert _state(p, "kept")["state"] == "ready"
        assert p.run("short", TASK, ["hello"])  # reloaded transparently
        assert _state(p, "short")["loads"] == 2


def test_load_wait_bound_gives_503_with_retry_after(tmp_path: Path) -> None:
    big, small = build_sized_bert(TINY_CACHE, 256, 2), build_sized_bert(TINY_CACHE, 128, 2)
    need_big, need_small = (accounted_estimate(_spec("x", f)) for f in (big, small))
    budget = need_big + need_small // 2  # the small one fits the budget, not next to the pinned big one
    config = {
        "home": str(tmp_path / "home"),
        "metrics_enabled": False,
        "history_enabled": False,
        "load_on_start": False,
        "memory": {"host_budget": budget, "load_wait_s": 0.5, "min_residency_s": 0},
        "models": [
            {
                "name": "big",
                "source": str(big),
                "tasks": [TASK],
                "device": "cpu",
                "max_length": 64,
                "pinned": True,
                "batching": {"max_batch_size": 4},
            },
            {
                "name": "small",
                "source": str(small),
                "tasks": [TASK],
                "device": "cpu",
                "max_length": 64,
                "batching": {"max_batch_size": 4},
            },
        ],
    }
    from hf_provider.server.factory import build

    app = build(load_settings(config))
    with TestClient(app) as client:
        assert client.post("/v1/admin/models/big/load").json()["state"] == "ready"
        t0 = time.monotonic()
        r = client.post("/v1/tasks/text-classification", json={"model": "small", "inputs": ["hello"]})
        waited = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == MemoryBudgetExceeded.code
        assert 0.4 <= waited < 10
        # The big model is still served; unpinning it lets the small one in (the big one is evicted).
        ok = client.post("/v1/tasks/text-classification", json={"model": "big", "inputs": ["hello"]})
        assert ok.status_code == 200
        client.post("/v1/admin/models/big/unpin")
        r = client.post("/v1/tasks/text-classification", json={"model": "small", "inputs": ["hello"]})
        assert r.status_code == 200, r.text
        states = {m["name"]: m["state"] for m in client.get("/v1/admin/models").json()["models"]}
        assert states == {"big": "unloaded", "small": "ready"}


@pytest.mark.parametrize("keep_alive", ["0s"])
def test_scale_to_zero_model_is_not_loaded_at_start(
    tiny_models: dict[str, Path], tmp_path: Path, keep_alive: str
) -> None:
    from hf_provider.server.factory import build

    config = {
        "home": str(tmp_path / "home"),
        "metrics_enabled": False,
        "history_enabled": False,
        "models": [
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": [TASK],
                "device": "cpu",
                "keep_alive": keep_alive,
            }
        ],
    }
    with TestClient(build(load_settings(config))) as client:
        assert client.get("/v1/admin/models").json()["models"][0]["state"] == "unloaded"
        r = client.post("/v1/tasks/text-classification", json={"model": "cls", "inputs": ["hi"]})
        assert r.status_code == 200
