"""Estimate the bytes a model will take before loading it: weights from safetensors headers, plus working memory.

Only headers are read (8-byte little-endian length, then a JSON table of name -> dtype, shape, offsets), never
tensor data, so estimating a multi-GB checkpoint costs a few KB of I/O. Without safetensors, the parameter
count is derived from `config.json` alone (a transformer-shaped approximation).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

# Bytes per element of each safetensors dtype tag; the floating ones are converted by a target dtype.
_ST_BYTES: dict[str, float] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "F4": 0.5,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
_ST_FLOAT = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"}
_DTYPE_ALIASES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}
# Names of 2-D weights that belong to embeddings, not nn.Linear, so dynamic int8 quantization leaves them alone.
_EMBEDDING_HINTS = ("embed", "wte", "wpe", "shared", "position", "token_type", "relative_attention_bias")
# Per output channel, torch keeps a float64 scale and an int64 zero point for per-channel qint8 weights.
_PER_CHANNEL_OVERHEAD = 16
# Tasks whose head produces vocabulary-sized logits per position.
LM_TASKS = frozenset({"text-generation", "text2text-generation", "translation", "summarization", "fill-mask"})
GENERATION_TASKS = frozenset({"text-generation", "text2text-generation", "translation", "summarization"})


@dataclass(frozen=True)
class WeightEstimate:
    """Weights of one checkpoint as they will sit in memory after conversion.

    `dtype_bytes` is the element size of the floating tensors after conversion (activations use it too).
    """

    param_count: int
    weight_bytes: int
    source: Literal["safetensors", "config"]
    dtype_bytes: int = 4


@dataclass(frozen=True)
class Estimate:
    """Bytes to admit a load against: weights plus working memory for one batch."""

    weight_bytes: int
    working_bytes: int
    total_bytes: int


def dtype_size(dtype: str | torch.dtype | None) -> int | None:
    """Element size of a target dtype; None (or 'auto') means keep the stored dtype."""
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    key = dtype.lower().removeprefix("torch.")
    if key not in _DTYPE_ALIASES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of: auto, {', '.join(sorted(_DTYPE_ALIASES))}")
    return torch.empty((), dtype=_DTYPE_ALIASES[key]).element_size()


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {"dtype", "shape", "data_offsets"} of one .safetensors file, reading only its header."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100_000_000:
            raise ValueError(f"{path}: implausible safetensors header length {length}")
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder.

    The shards an index names, else model.safetensors, else *.safetensors.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map: Mapping[str, str] = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("*.safetensors"))


def _is_linear_weight(name: str, shape: list[int], st_dtype: str) -> bool:
    return (
        st_dtype in _ST_FLOAT
        and len(shape) == 2
        and name.endswith(".weight")
        and not any(h in name.lower() for h in _EMBEDDING_HINTS)
    )


def _tensor_table_bytes(
    tensors: Iterable[tuple[str, str, list[int]]], target: int | None, quantization: str
) -> tuple[int, int, int]:
    """(param_count, bytes, floating element size) over (name, safetensors dtype, shape) rows."""
    count, total, float_sizes = 0, 0.0, {}
    for name, st_dtype, shape in tensors:
        n = math.prod(shape)
        count += n
        if st_dtype not in _ST_BYTES:
            raise ValueError(f"tensor {name!r} has unknown safetensors dtype {st_dtype!r}")
        size = _ST_BYTES[st_dtype]
        if st_dtype in _ST_FLOAT:
            size = target if target is not None else size
            float_sizes[size] = float_sizes.get(size, 0) + n
        if quantization == "int8" and _is_linear_weight(name, shape, st_dtype):
            total += n * 1 + shape[0] * _PER_CHANNEL_OVERHEAD
        else:
            total += n * size
    dominant = max(float_sizes, key=lambda s: float_sizes[s]) if float_sizes else 4
    return count, math.ceil(total), max(1, int(dominant))


def _config_param_count(config: Mapping[str, Any]) -> tuple[int, list[tuple[str, int]]]:
    """Transformer-shaped parameter count from config.json; also the (kind, count) parts for int8 estimates."""

    def get(*keys: str, default: int | None = None) -> int | None:
        for k in keys:
            if config.get(k) is not None:
                return int(config[k])
        return default

    hidden = get("hidden_size", "n_embd", "d_model", "dim")
    vocab = get("vocab_size", default=0) or 0
    layers = get("num_hidden_layers", "n_layer", "num_layers", "n_layers", default=0) or 0
    if hidden is None:
        raise ValueError("config.json has no hidden_size / n_embd / d_model: cannot estimate parameters")
    inter = (
        get("intermediate_size", "n_inner", "d_ff", "ffn_dim", "hidden_dim", default=4 * hidden) or 4 * hidden
    )
    heads = get("num_attention_heads", "n_head", "num_heads", default=1) or 1
    head_dim = get("head_dim", "d_kv", default=hidden // heads) or hidden // heads
    kv_heads = get("num_key_value_heads", default=heads) or heads
    positions = get("max_position_embeddings", "n_positions", default=0) or 0
    if config.get("model_type") in {"t5", "mt5", "llama", "mistral", "qwen2", "gemma", "phi3"}:
        positions = 0  # relative / rotary positions: no absolute position table
    gated = config.get("model_type") in {"llama", "mistral", "qwen2", "gemma", "phi3", "mixtral"} or str(
        config.get("feed_forward_proj", "")
    ).startswith("gated")
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 4 * hidden
    mlp = (3 if gated else 2) * hidden * inter + inter + hidden
    norms = 4 * hidden
    decoder_layers = get("num_decoder_layers", "decoder_layers", default=0) or 0
    if config.get("is_encoder_decoder") and not decoder_layers:
        decoder_layers = layers
    linear = layers * (attn + mlp) + decoder_layers * (2 * attn + mlp)
    embed = vocab * hidden + positions * hidden + (get("type_vocab_size", default=0) or 0) * hidden
    head = 0 if config.get("tie_word_embeddings", True) else vocab * hidden
    other = (layers + decoder_layers) * norms + 2 * hidden
    parts = [("linear", linear), ("head", head), ("embedding", embed), ("other", other)]
    return sum(n for _, n in parts), parts


def _config_dtype_bytes(config: Mapping[str, Any]) -> int:
    stored = config.get("torch_dtype") or config.get("dtype")
    try:
        return dtype_size(stored) or 4
    except ValueError:
        return 4


def estimate_weight_bytes(
    folder: Path, dtype: str | torch.dtype | None = None, quantization: str = "none"
) -> WeightEstimate:
    """Bytes the weights of the checkpoint in `folder` will take in memory.

    dtype None keeps each tensor's stored dtype; otherwise floating tensors are counted at the target element
    size (integer tensors never change). quantization "int8": nn.Linear-shaped weights take 1 byte per element
    plus a per-output-channel scale and zero point; everything else is unchanged. Tied embeddings are stored
    once by save_pretrained, so they are counted once.
    """
    if quantization not in ("none", "int8"):
        raise ValueError(f"unknown quantization {quantization!r}; use 'none' or 'int8'")
    folder = Path(folder)
    target = dtype_size(dtype)
    files = safetensors_files(folder)
    if files:
        rows: dict[str, tuple[str, str, list[int]]] = {}
        for path in files:
            for name, info in read_safetensors_header(path).items():
                rows[name] = (name, info["dtype"], list(info["shape"]))
        count, nbytes, dbytes = _tensor_table_bytes(rows.values(), target, quantization)
        return WeightEstimate(count, nbytes, "safetensors", dbytes)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} has neither *.safetensors nor config.json: cannot estimate its size"
        )
    config = json.loads(config_path.read_text())
    count, parts = _config_param_count(config)
    elem = target or _config_dtype_bytes(config)
    nbytes = 0
    for kind, n in parts:
        nbytes += n * (1 if quantization == "int8" and kind in ("linear", "head") else elem)
    return WeightEstimate(count, nbytes, "config", elem)


def working_bytes(
    config: Mapping[str, Any], batch_size: int, seq_len: int, dtype_bytes: int, task: str
) -> int:
    """Activation headroom for one forward pass of `batch_size` sequences of `seq_len` tokens.

    Formula (B = batch, S = seq_len, H = hidden, I = intermediate, A = heads, V = vocab, L = layers, b = dtype bytes):
      hidden states  B*S*(4H + I)*b   residual, attention output, layer-norm output and the MLP expansion
                                      alive at once (inference frees each layer's activations before the next)
      attention      2*B*A*S^2*b      scores and softmax probabilities of one layer (eager attention)
      logits         B*S*V*4          LM heads only (LM_TASKS); transformers upcasts logits to float32
      KV cache       2*L*B*S*H*b      generation tasks only (keys and values of every layer)
    A 10% allocator-fragmentation margin is added on top.
    """
    if batch_size < 1 or seq_len < 1 or dtype_bytes < 1:
        raise ValueError("batch_size, seq_len and dtype_bytes must be positive")

    def get(*keys: str, default: int) -> int:
        for k in keys:
            if config.get(k) is not None:
                return int(config[k])
        return default

    hidden = get("hidden_size", "n_embd", "d_model", "dim", default=768)
    inter = get("intermediate_size", "n_inner", "d_ff", "ffn_dim", default=4 * hidden)
    heads = get("num_attention_heads", "n_head", "num_heads", default=12)
    vocab = get("vocab_size", default=32000)
    layers = get("num_hidden_layers", "n_layer", "num_layers", default=12)
    layers += get("num_decoder_layers", "decoder_layers", default=0)
    b, s = batch_size, seq_len
    total = b * s * (4 * hidden + inter) * dtype_bytes + 2 * b * heads * s * s * dtype_bytes
    if task in LM_TASKS:
        total += b * s * vocab * 4
    if task in GENERATION_TASKS:
        total += 2 * layers * b * s * hidden * dtype_bytes
    return int(total * 1.1)


def estimate(
    folder: Path,
    dtype: str | torch.dtype | None = None,
    quantization: str = "none",
    task: str = "embeddings",
    batch_size: int = 1,
    seq_len: int = 512,
) -> Estimate:
    """Weights plus working memory of one batch: the figure a load is admitted against."""
    folder = Path(folder)
    weights = estimate_weight_bytes(folder, dtype, quantization)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    # Dynamic int8 quantization computes activations in float32.
    act_bytes = 4 if quantization == "int8" else weights.dtype_bytes
    work = working_bytes(config, batch_size, seq_len, act_bytes, task)
    return Estimate(weights.weight_bytes, work, weights.weight_bytes + work)


def module_bytes(module: torch.nn.Module) -> int:
    """Actual bytes of a loaded module's state (parameters, buffers, packed quantized weights), shared storage once.

    The figure to compare with `estimate_weight_bytes` after a load and to commit to the accountant.
    """
    seen: set[tuple[int, int, str]] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        if isinstance(t, tuple | list):
            for x in t:
                add(x)
            return
        if not isinstance(t, torch.Tensor):
            return
        key = (t.data_ptr(), t.numel(), str(t.dtype))
        if key in seen:  # tied weights and aliases share memory: count them once
            return
        seen.add(key)
        total += t.numel() * t.element_size()
        if t.is_quantized and t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            total += t.q_per_channel_scales().numel() * _PER_CHANNEL_OVERHEAD

    for value in module.state_dict(keep_vars=True).values():
        add(value)
    return total
