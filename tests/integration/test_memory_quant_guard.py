"""The accuracy guard on quantized loads, with the real MiniLM: int8 weight-only passes (cosine >= 0.99
to fp32 on the guard sentences), torch's dynamic int8 is refused with the measured figure, and a deliberately
broken quantization is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_provider.errors import QuantizationRejected
from hf_provider.provider import Provider
from hf_provider.runtime.loader import load_model
from hf_provider.runtime.quantization import GUARD_THRESHOLD, apply_quantization
from hf_provider.settings import MemorySettings, Settings
from hf_provider.spec import ModelSpec


def _settings() -> Settings:
    return Settings(memory=MemorySettings(host_budget="2GiB"), metrics_enabled=False, history_enabled=False)


def _spec(name: str, path: Path, quantization: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        source=str(path),
        tasks=["embeddings"],
        device="cpu",
        quantization=quantization,
        max_length=128,
        batching={"max_batch_size": 8},
    )


def test_weight_only_int8_is_accepted_with_its_figure(minilm_path: Path) -> None:
    specs = [_spec("fp32", minilm_path, "none"), _spec("w8", minilm_path, "int8-weight-only")]
    with Provider(specs, settings=_settings(), allow_adhoc=False) as p:
        ref = torch.tensor(p.embed("fp32", ["A sentence about memory.", "Another one."]))
        out = torch.tensor(p.embed("w8", ["A sentence about memory.", "Another one."]))
        info = {d["name"]: d for d in p.admin.describe()}
    cosine = info["w8"]["quantization_cosine"]
    print(f"int8-weight-only MiniLM guard figure: {cosine:.5f}")
    assert GUARD_THRESHOLD <= cosine <= 1.0
    assert info["fp32"]["quantization_cosine"] is None
    # Linear weights take a quarter; the 30522-row embedding table stays fp32.
    assert info["w8"]["weight_bytes"] < 0.7 * info["fp32"]["weight_bytes"]
    assert torch.nn.functional.cosine_similarity(ref, out).min() > 0.99


def test_dynamic_int8_is_refused_with_the_measured_figure(minilm_path: Path) -> None:
    with Provider([_spec("dyn", minilm_path, "int8")], settings=_settings(), allow_adhoc=False) as p:
        with pytest.raises(QuantizationRejected) as info:
            p.embed("dyn", ["hello"])
        d = p.admin.describe()[0]
        assert d["state"] == "failed" and d["error"] and p.admin.memory()["host_used_bytes"] == 0
    measured = info.value.measured
    print(f"dynamic int8 MiniLM guard figure: {measured:.5f}")
    assert measured is not None and 0.5 < measured < GUARD_THRESHOLD
    assert f"{measured:.4f}" in str(info.value)


def test_broken_quantization_is_refused(minilm_path: Path) -> None:
    model = load_model(_spec("broken", minilm_path, "int8-weight-only"))

    def corrupt(module: torch.nn.Module, scheme: str, *, inplace: bool) -> torch.nn.Module:
        # Pretends to quantize but scrambles every linear weight: the guard must notice.
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * m.weight.std())
        return module

    with pytest.raises(QuantizationRejected) as info:
        apply_quantization(model, quantize=corrupt)
    assert info.value.measured is not None and info.value.measured < 0.9
    assert "below the required 0.9900" in str(info.value)
