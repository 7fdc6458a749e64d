"""Estimates from safetensors headers and config.json against real parameter bytes of models built in-test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
import transformers as tf

from hf_provider.memory.estimate import (
    estimate,
    estimate_weight_bytes,
    module_bytes,
    read_safetensors_header,
    working_bytes,
)

TINY = {
    "bert": (
        tf.BertModel,
        lambda: tf.BertConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=128,
        ),
    ),
    "gpt2": (
        tf.GPT2LMHeadModel,
        lambda: tf.GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128),
    ),
    "llama": (
        tf.LlamaForCausalLM,
        lambda: tf.LlamaConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=128,
            tie_word_embeddings=False,
        ),
    ),
    "t5": (
        tf.T5ForConditionalGeneration,
        lambda: tf.T5Config(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
    ),
}


def param_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(count, bytes) of unique parameters: tied weights appear once in model.parameters()."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    out = {}
    for name, (cls, make_config) in TINY.items():
        torch.manual_seed(0)
        model = cls(make_config()).eval()
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        out[name] = (folder, model)
    return out


@pytest.mark.parametrize("name", sorted(TINY))
def test_safetensors_estimate_matches_parameter_bytes(tiny, name: str) -> None:
    folder, model = tiny[name]
    count, nbytes = param_bytes(model)
    est = estimate_weight_bytes(folder)
    assert est.source == "safetensors"
    assert abs(est.param_count - count) <= 0.01 * count
    assert abs(est.weight_bytes - nbytes) <= 0.01 * nbytes
    assert abs(module_bytes(model) - est.weight_bytes) <= 0.01 * nbytes


def test_tied_embeddings_counted_once(tiny) -> None:
    folder, model = tiny["gpt2"]
    assert model.lm_head.weight is model.transformer.wte.weight
    names = read_safetensors_header(folder / "model.safetensors")
    assert "lm_head.weight" not in names
    assert estimate_weight_bytes(folder).param_count == param_bytes(model)[0]


def test_sharded_checkpoint(tiny, tmp_path: Path) -> None:
    _, model = tiny["llama"]
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    assert estimate_weight_bytes(tmp_path).weight_bytes == param_bytes(model)[1]


def test_target_dtype_converts_only_floating_tensors(tiny) -> None:
    folder, model = tiny["bert"]
    nbytes = param_bytes(model)[1]
    assert estimate_weight_bytes(folder, "float16").weight_bytes == pytest.approx(nbytes / 2, rel=0.01)
    assert estimate_weight_bytes(folder, torch.bfloat16).weight_bytes == pytest.approx(nbytes / 2, rel=0.01)
    assert estimate_weight_bytes(folder, "auto").weight_bytes == estimate_weight_bytes(folder).weight_bytes
    half = model.to(torch.float16)
    try:
        assert module_bytes(half) == pytest.approx(
            estimate_weight_bytes(folder, "fp16").weight_bytes, rel=0.01
        )
    finally:
        model.to(torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        estimate_weight_bytes(folder, "float12")


def test_integer_tensors_keep_their_size(tmp_path: Path) -> None:
    header = json.dumps(
        {
            "a.weight": {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 400]},
            "ids": {"dtype": "I64", "shape": [10], "data_offsets": [400, 480]},
            "__metadata__": {"format": "pt"},
        }
    ).encode()
    # a header with no tensor data after it: proves only the header is read
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    est = estimate_weight_bytes(tmp_path, "float16")
    assert (est.param_count, est.weight_bytes) == (110, 200 + 80)


def test_config_only_fallback(tiny, tmp_path: Path) -> None:
    for name, (folder, model) in tiny.items():
        sub = tmp_path / name
        sub.mkdir()
        (sub / "config.json").write_text((folder / "config.json").read_text())
        est = estimate_weight_bytes(sub)
        count = param_bytes(model)[0]
        assert est.source == "config"
        assert abs(est.param_count - count) <= 0.05 * count, name
        assert est.weight_bytes == est.param_count * 4


def test_missing_everything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        estimate_weight_bytes(tmp_path)


def test_minilm(minilm: Path) -> None:
    est = estimate_weight_bytes(minilm)
    assert est.source == "safetensors"
    assert est.param_count == pytest.approx(22.7e6, rel=0.01)
    assert est.weight_bytes == pytest.approx(22.7e6 * 4, rel=0.01)
    int8 = estimate_weight_bytes(minilm, quantization="int8")
    # only nn.Linear weights shrink; the 11.7M-parameter embedding table stays fp32
    assert 0.5 * est.weight_bytes < int8.weight_bytes < 0.75 * est.weight_bytes


def test_working_bytes_formula() -> None:
    cfg = {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4, "vocab_size": 1000}
    base = 2 * 8 * (4 * 64 + 256) * 4 + 2 * 2 * 4 * 8 * 8 * 4
    assert working_bytes(cfg, 2, 8, 4, "embeddings") == int(base * 1.1)
    lm = working_bytes(cfg, 2, 8, 4, "fill-mask")
    assert lm == int((base + 2 * 8 * 1000 * 4) * 1.1)
    assert working_bytes(cfg, 2, 8, 4, "text-generation") > lm
    # attention grows with the square of the sequence
    assert working_bytes(cfg, 1, 1024, 4, "embeddings") > 3 * working_bytes(cfg, 1, 512, 4, "embeddings")
    with pytest.raises(ValueError, match="positive"):
        working_bytes(cfg, 0, 8, 4, "embeddings")


def test_estimate_totals(minilm: Path) -> None:
    e = estimate(minilm, task="embeddings", batch_size=32, seq_len=128)
    assert e.total_bytes == e.weight_bytes + e.working_bytes
    assert e.working_bytes > 0
    assert estimate(minilm, batch_size=64, seq_len=128).working_bytes > e.working_bytes
