"""Out-of-memory recovery through the fault injection setting, which raises the CPU allocator's real
error ("can't allocate memory") at forward for chosen batch sizes: splitting saves batches of several items; a
single item that still fails evicts a cold model first, then fails with OutOfMemory (HTTP 503), and serving
goes on."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hf_provider.errors import OutOfMemory
from hf_provider.provider import Provider
from hf_provider.settings import MemorySettings, Settings, load_settings
from hf_provider.spec import ModelSpec

TASK = "text-classification"
TEXTS = [f"Sentence number {i} about the good book." for i in range(8)]


def test_splitting_recovers_concurrent_requests(tiny_models: dict[str, Path], caplog) -> None:
    settings = Settings(
        memory=MemorySettings(fault_inject_oom="4-64"), metrics_enabled=False, history_enabled=False
    )
    spec = ModelSpec(
        name="cls",
        source=str(tiny_models["bert-cls"]),
        tasks=[TASK],
        device="cpu",
        batching={"max_batch_size": 16, "max_wait_ms": 20},
    )
    caplog.set_level(logging.WARNING, logger="hf_provider.memory.oom")
    with Provider([spec], settings=settings, allow_adhoc=False) as p:
        expected = {t: p.run("cls", TASK, [t])[0] for t in TEXTS[:3]}  # batches of < 4 run unharmed
        whole = p.run("cls", TASK, TEXTS)  # one batch of 8: 8 -> 4 + 4 -> 2 + 2 + 2 + 2
        assert len(whole) == 8
        for got, want in zip(whole[:3], (expected[t] for t in TEXTS[:3]), strict=True):
            assert got[0]["label"] == want[0]["label"]
            assert got[0]["score"] == pytest.approx(want[0]["score"], abs=1e-5)
        results: list[object] = []

        def client(i: int) -> None:
            try:
                results.append(p.run("cls", TASK, TEXTS[i % 7 : i % 7 + 2]))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 12
        assert [r for r in results if not (isinstance(r, list) and len(r) == 2)] == []
    assert any("out of memory on a batch of 8; retrying as 4 + 4" in r.getMessage() for r in caplog.records)


def test_single_item_oom_evicts_cold_model_then_fails_with_503(
    tiny_models: dict[str, Path], tmp_path: Path, caplog
) -> None:
    from hf_provider.server.factory import build

    config = {
        "home": str(tmp_path / "home"),
        "metrics_enabled": False,
        "history_enabled": False,
        "load_on_start": False,
        "memory": {"fault_inject_oom": "1-64"},
        "models": [
            {"name": "hot", "source": str(tiny_models["bert-cls"]), "tasks": [TASK], "device": "cpu"},
            {
                "name": "cold",
                "source": str(tiny_models["bert-ner"]),
                "tasks": ["token-classification"],
                "device": "cpu",
            },
        ],
    }
    caplog.set_level(logging.WARNING, logger="hf_provider.memory.oom")
    app = build(load_settings(config))
    with TestClient(app) as client:
        assert client.post("/v1/admin/models/cold/load").json()["state"] == "ready"
        r = client.post("/v1/tasks/text-classification", json={"model": "hot", "inputs": ["hello"]})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == OutOfMemory.code
        assert "out of memory on a single item" in r.json()["error"]["message"]
        assert int(r.headers["Retry-After"]) >= 1
        states = {m["name"]: m for m in client.get("/v1/admin/models").json()["models"]}
        assert states["cold"]["state"] == "unloaded"  # the eviction step ran before giving up
        assert states["hot"]["state"] == "ready"
        assert any("evicting cold models" in rec.getMessage() for rec in caplog.records)

        # The failure was that batch's alone: with the pressure gone, both models are served again.
        provider = app.state.provider
        provider.manager.fault.batch_sizes = frozenset()
        r = client.post("/v1/tasks/text-classification", json={"model": "hot", "inputs": ["hello", "world"]})
        assert r.status_code == 200 and len(r.json()["outputs"]) == 2
        r = client.post(
            "/v1/tasks/token-classification", json={"model": "cold", "inputs": ["Alice in Paris"]}
        )
        assert r.status_code == 200, r.text
