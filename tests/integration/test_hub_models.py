"""A Hub id served end to end through the real huggingface_hub client against LocalHub: pinned commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.hub_server import LocalHub, use_local_hub


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        yield h


def test_hub_model_loads_pinned_to_exact_commit(hub: LocalHub, tiny_models) -> None:
    v1 = hub.add_commit("org/cls", tiny_models["bert-cls"], tag="v1")
    v2 = hub.add_commit("org/cls", {"README.md": b"second commit"})
    specs = [
        ModelSpec(name="latest", source="org/cls", tasks=["text-classification"]),
        ModelSpec(name="pinned", source="org/cls", revision="v1", tasks=["text-classification"]),
    ]
    with Provider(specs, settings=load_settings({"metrics_enabled": False})) as p:
        latest, pinned = p.load("latest"), p.load("pinned")
        assert latest["commit"] == v2 and pinned["commit"] == v1 and v1 != v2
        assert pinned["revision"] == "v1"
        out = p.run("pinned", "text-classification", "a fine day")
        assert out[0]["label"] in {"NEGATIVE", "POSITIVE"}
    served = hub.paths
    assert any("/resolve/" in s for s in served)  # weights really came over the Hub protocol
