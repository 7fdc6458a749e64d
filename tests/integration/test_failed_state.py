"""A configured model whose load failed is `failed` in every view, with one clear reason naming the absolute path
its source was resolved to; a later successful load clears it (issue 29 point 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hf_provider.errors import ModelLoadError
from hf_provider.provider import Provider
from hf_provider.server.app import create_app
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec


def test_a_missing_folder_is_failed_everywhere_until_a_load_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec(name="mine", source="./my-model", tasks=["text-classification"])
    provider = Provider([spec], settings=load_settings({"metrics_enabled": False}), allow_adhoc=False)
    with provider as p, TestClient(create_app(p, load_on_start=False)) as client:
        with pytest.raises(ModelLoadError) as e:
            p.run("mine", "text-classification", "fine")
        reason = e.value.message
        assert reason == (
            f"configured model 'mine' cannot be loaded: source './my-model' (resolved against {tmp_path}: "
            f"{tmp_path / 'my-model'}) is not a folder and not a Hub repo id ('org/name'); check the path or the id."
        )
        assert "Unknown model" not in reason and "Available models" not in reason

        (admin,) = client.get("/v1/admin/models").json()["models"]
        assert (admin["state"], admin["error"]) == ("failed", reason)
        (listed,) = client.get("/v1/models").json()["data"]
        assert (listed["state"], listed["error"]) == ("failed", reason)

        # The folder appears; an operator's load (no wait for the backoff) serves it and clears the failure.
        shutil.copytree(tiny_models["bert-cls"], tmp_path / "my-model")
        r = client.post("/v1/admin/models/mine/load")
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["error"]) == ("ready", None)
        (listed,) = client.get("/v1/models").json()["data"]
        assert listed["state"] == "ready" and "error" not in listed


def test_an_absolute_source_is_named_once(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    spec = ModelSpec(name="gone", source=str(missing))
    with Provider([spec], settings=load_settings({"metrics_enabled": False}), allow_adhoc=False) as p:
        with pytest.raises(ModelLoadError) as e:
            p.run("gone", "embeddings", "x")
        assert e.value.message.count(str(missing)) == 1
        assert p.admin.describe()[0]["state"] == "failed"
