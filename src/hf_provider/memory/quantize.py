"""CPU int8 dynamic quantization (torch's own) and the accuracy guard every quantized load must pass.

GPU quantization (bitsandbytes) lives behind the optional adapter `memory/gpu_quant.py`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from hf_provider.errors import QuantizationRejected

# Fixed, varied sentences the guard embeds with the fp32 and the quantized model (short and long, questions, digits,
# code, names, negation) so that a quantization that only works on one kind of text is caught.
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


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` whose nn.Linear layers use int8 weights (per-channel) with dynamic activation quantization.

    CPU only: raises ValueError for a module on another device (use the GPU adapter, memory/gpu_quant.py).
    The input module is left unchanged.
    """
    devices = {p.device.type for p in module.parameters()} | {b.device.type for b in module.buffers()}
    if devices - {"cpu"}:
        raise ValueError(f"int8 dynamic quantization runs on CPU only, but the module is on {sorted(devices)}; "
                         "for GPU use the bitsandbytes adapter (hf_provider.memory.gpu_quant.load_kwargs)")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.10+ announces the move of eager quantization to torchao; the API still works and has no
        # replacement in torch itself.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        return quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                inplace=False)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return dot / (na * nb)


def accuracy_guard(reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]],
                   threshold: float = 0.99, model: str | None = None) -> float:
    """Minimum cosine similarity between matching rows of reference (fp32) and candidate (quantized) outputs.

    Returns the figure when it is at least `threshold`; raises QuantizationRejected(measured=figure) otherwise.
    Rows are vectors (embeddings, pooled logits); both sides must have the same shape.
    """
    ref = [list(map(float, r)) for r in reference]
    cand = [list(map(float, c)) for c in candidate]
    if not ref or len(ref) != len(cand):
        raise ValueError(f"accuracy guard needs the same non-zero number of rows, got {len(ref)} and {len(cand)}")
    if any(len(r) != len(c) for r, c in zip(ref, cand, strict=True)):
        raise ValueError("accuracy guard rows differ in length between reference and candidate")
    measured = min(_cosine(r, c) for r, c in zip(ref, cand, strict=True))
    if not measured >= threshold:  # also rejects NaN
        name = f" for model {model!r}" if model else ""
        raise QuantizationRejected(
            f"int8 quantization refused{name}: minimum cosine similarity to fp32 outputs is {measured:.4f}, "
            f"below the required {threshold:.4f} (measured on {len(ref)} guard inputs)",
            model=model, measured=measured)
    return measured
