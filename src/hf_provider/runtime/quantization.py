"""Apply a spec's quantization to a loaded model, behind the accuracy guard.

The guard compares mean-pooled sentence representations of the fp32 model with the quantized one on a fixed
sentence set (memory.quantize.GUARD_SENTENCES): a quantization that moves them below 0.99 cosine is refused with
the measured figure instead of silently serving worse answers.
"""

from __future__ import annotations

import torch

from hf_provider.memory.estimate import module_bytes
from hf_provider.memory.quantize import GUARD_SENTENCES, accuracy_guard, quantize_int8
from hf_provider.runtime.model import LoadedModel

GUARD_THRESHOLD = 0.99


@torch.inference_mode()
def guard_embeddings(model: LoadedModel) -> list[list[float]]:
    """Sentence vectors from the model's own encoder: the checkpoint's pooling for sentence-transformers models,
    else mean pooling of the base model's last hidden state (the encoder for encoder-decoders)."""
    if model.sentence_model is not None:
        st = model.sentence_model
        feats = (st.preprocess if hasattr(st, "preprocess") else st.tokenize)(list(GUARD_SENTENCES))
        feats = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}
        return model.sentence_model.forward(feats)["sentence_embedding"].float().cpu().tolist()
    tok = model.tokenizer(
        list(GUARD_SENTENCES), padding=True, truncation=True, max_length=128, return_tensors="pt"
    )
    tok = {k: v.to(model.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
    base = (
        model.module.get_encoder()
        if getattr(model.config, "is_encoder_decoder", False)
        else model.module.base_model
    )
    hidden = base(**tok).last_hidden_state
    mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().tolist()


SCHEMES = {"int8": "dynamic", "int8-weight-only": "weight_only"}


def apply_quantization(
    model: LoadedModel, *, quantize=quantize_int8, threshold: float = GUARD_THRESHOLD
) -> float | None:
    """Quantize in place per the spec; returns the guard's minimum cosine, or None when nothing was done.
    Raises QuantizationRejected with the measured figure when the guard fails (the caller drops the model)."""
    if model.spec.quantization == "none":
        return None
    reference = guard_embeddings(model)
    # In place, so a SentenceTransformer wrapping the module keeps pointing at the quantized weights.
    quantize(model.module, SCHEMES[model.spec.quantization], inplace=True)
    measured = accuracy_guard(reference, guard_embeddings(model), threshold=threshold, model=model.name)
    model.weight_bytes = module_bytes(
        model.sentence_model if model.sentence_model is not None else model.module
    )
    return measured
