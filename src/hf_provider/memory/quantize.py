"""CPU int8 dynamic quantization (torch's own) and the accuracy guard every quantized load must pass.

GPU quantization (bitsandbytes) lives behind the optional adapter `memory/gpu_quant.py`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from hf_provider.errors import QuantizationRejected

# Fixed, varied sentences the guard embeds with the fp32 and the quantized model (short and long, questions,
# digits, code, names, negation) so that a quantization that only works on one kind of text is caught.
GUARD_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email?",
    "Quarterly revenue grew by 12.5% compared with the same period last year.",
    "She did not think the movie was nearly as good as the book.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b): return a + b",
    "The train to Berlin leaves from platform 7 at 08:45 tomorrow morning.",
    "Please remember to water the plants while I am away on holiday.",
    "Marie Curie was the first person to win Nobel Prizes in two different sciences.",
    "Is it safe to eat raw cookie dough?",
    "The committee postponed its decision until further evidence could be gathered.",
    "I love this phone, but the battery barely lasts half a day.",
    "Heavy rain and strong winds are expected along the coast tonight.",
    "A balanced diet includes fruits, vegetables, whole grains and lean proteins.",
    "The server returned an HTTP 503 error because the service was overloaded.",
    "Mount Everest is the highest mountain above sea level on Earth.",
)


Scheme = Literal["dynamic", "weight_only"]
SCHEMES: tuple[Scheme, ...] = ("dynamic", "weight_only")


class Int8WeightOnlyLinear(torch.nn.Module):
    """nn.Linear with int8 per-output-channel weights, dequantized to the input dtype at each forward.

    Activations stay in floating point, so accuracy is that of the weights alone (MiniLM: cosine ~0.999 to
    fp32, where torch's dynamic scheme, which also quantizes activations, measures ~0.97 on x86). Weights take
    1 byte per element plus a float32 scale per output channel; one layer's fp32 weight exists transiently
    during its forward.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_int8.to(x.dtype) * self.scale.to(x.dtype)[:, None]
        return torch.nn.functional.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def _check_cpu(module: torch.nn.Module) -> None:
    devices = {p.device.type for p in module.parameters()} | {b.device.type for b in module.buffers()}
    if devices - {"cpu"}:
        raise ValueError(
            f"int8 quantization here runs on CPU only, but the module is on {sorted(devices)}; "
            "for GPU use the bitsandbytes adapter (hf_provider.memory.gpu_quant.load_kwargs)"
        )


def _weight_only(module: torch.nn.Module, inplace: bool) -> torch.nn.Module:
    import copy

    out = module if inplace else copy.deepcopy(module)
    targets = [(name, m) for name, m in out.named_modules() if type(m) is torch.nn.Linear]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, Int8WeightOnlyLinear(linear))
    return out


def quantize_int8(
    module: torch.nn.Module, scheme: Scheme = "dynamic", *, inplace: bool = False
) -> torch.nn.Module:
    """`module` with its nn.Linear layers holding int8 weights (per output channel): a copy by default.

    scheme "dynamic": torch's own dynamic quantization (torch.ao quantize_dynamic, qint8): int8 GEMMs,
    activations quantized per batch at run time; fastest, but activation outliers can cost accuracy.
    scheme "weight_only": `Int8WeightOnlyLinear`, float activations; same weight bytes, near-fp32 accuracy.
    inplace=True swaps the layers inside `module` itself (needed when a wrapper such as a SentenceTransformer
    holds it) and returns it. CPU only: ValueError for a module on another device (GPU: memory/gpu_quant.py).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; use one of: {', '.join(SCHEMES)}")
    _check_cpu(module)
    if scheme == "weight_only":
        return _weight_only(module, inplace)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.10+ announces the move of eager quantization to torchao; the API still works in torch itself.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        return quantize_dynamic(
            module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=inplace
        )


def quantize_guarded(
    module: torch.nn.Module,
    encode: Callable[[torch.nn.Module, list[str]], Any],
    *,
    threshold: float = 0.99,
    model: str | None = None,
    schemes: Sequence[Scheme] = SCHEMES,
) -> tuple[torch.nn.Module, Scheme, float]:
    """Quantize with the first scheme whose outputs pass `accuracy_guard` on GUARD_SENTENCES.

    `encode(module, sentences)` returns one vector per sentence (embeddings). Returns (quantized module,
    scheme, measured cosine); raises the last QuantizationRejected (with its measured figure) when no scheme
    passes.
    """
    sentences = list(GUARD_SENTENCES)
    with torch.inference_mode():
        reference = _rows(encode(module, sentences))
    rejected: QuantizationRejected | None = None
    for scheme in schemes:
        candidate = quantize_int8(module, scheme)
        with torch.inference_mode():
            outputs = _rows(encode(candidate, sentences))
        try:
            return candidate, scheme, accuracy_guard(reference, outputs, threshold, model)
        except QuantizationRejected as exc:
            rejected = exc
    assert rejected is not None, "schemes must not be empty"
    raise rejected


def _rows(values: Any) -> list[list[float]]:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().tolist()
    if hasattr(values, "tolist"):
        return values.tolist()
    return [list(map(float, v)) for v in values]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return dot / (na * nb)


def accuracy_guard(
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    threshold: float = 0.99,
    model: str | None = None,
) -> float:
    """Minimum cosine similarity between matching rows of reference (fp32) and candidate (quantized) outputs.

    Returns the figure when it is at least `threshold`; raises QuantizationRejected(measured=figure)
    otherwise. Rows are vectors (embeddings, pooled logits); both sides must have the same shape.
    """
    ref = [list(map(float, r)) for r in reference]
    cand = [list(map(float, c)) for c in candidate]
    if not ref or len(ref) != len(cand):
        raise ValueError(
            f"accuracy guard needs the same non-zero number of rows, got {len(ref)} and {len(cand)}"
        )
    if any(len(r) != len(c) for r, c in zip(ref, cand, strict=True)):
        raise ValueError("accuracy guard rows differ in length between reference and candidate")
    measured = min(_cosine(r, c) for r, c in zip(ref, cand, strict=True))
    if not measured >= threshold:  # also rejects NaN
        name = f" for model {model!r}" if model else ""
        raise QuantizationRejected(
            f"int8 quantization refused{name}: minimum cosine similarity to fp32 outputs is {measured:.4f}, "
            f"below the required {threshold:.4f} (measured on {len(ref)} guard inputs)",
            model=model,
            measured=measured,
        )
    return measured
