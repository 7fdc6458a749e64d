"""Shared fixtures. Tests never reach the network (huggingface_hub's own tests/conftest.py does the same)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub, which reads some of these once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny models are cached across runs here so the suite does not rebuild them each time (still never networked).
TINY_CACHE = Path(
    os.environ.get("HFP_TEST_MODELS", Path(__file__).resolve().parent.parent / ".hfp" / "tiny-models")
)
# Remote code of test models (testing/device_model.py) is copied here by transformers, which reads the variable
# once at import: beside the tiny models, not in the user's own HF home.
os.environ.setdefault("HF_MODULES_CACHE", str(TINY_CACHE.parent / "hf-modules"))


@pytest.fixture(autouse=True)
def _offline_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.getbasetemp() / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HFP_HOME", str(tmp_path_factory.getbasetemp() / "hfp-home"))
    # `hfp` commands run in-process set these for their child processes (observability/quiet.py): undone after
    # each test. monkeypatch restores only what it touched, so an unset one is touched (set, then deleted).
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "HFP_VERBOSE"):
        if name not in os.environ:
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """name -> folder of each tiny random model (see hf_provider.testing.models)."""
    from hf_provider.testing.models import build_tiny_models

    return build_tiny_models(TINY_CACHE)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from hf_provider.testing.models import minilm_path

    return minilm_path()
