"""The accuracy guard per task family, on the task handlers' own outputs for a fixed input set.

- embeddings: minimum cosine to the fp32 eager vectors >= 0.99 (memory.quantize.accuracy_guard);
- classification (text/token classification, fill-mask, extractive QA): the same top label on >= 99% of the
  rows (tokens for token-level heads; pad positions ignored) and every probability within 0.02;
- generation (text-generation, text2text, translation, summarization, generative QA): greedy token ids
  identical for the first 32 tokens of every prompt.

Inputs go through the handler's parse and preprocess, so a variant is judged exactly as it will be served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hf_provider.errors import QuantizationRejected
from hf_provider.memory.quantize import GUARD_SENTENCES, accuracy_guard
from hf_provider.runtime.tasks.base import BaseHandler

COSINE_MIN = 0.99
AGREEMENT_MIN = 0.99
PROB_TOLERANCE = 0.02
GEN_TOKENS = 32

_CLASSIFICATION = frozenset({"text-classification", "token-classification", "fill-mask"})
# tasks read from a head's logits over text pairs (span heads included)
_PAIR_HEADS = frozenset({"question-answering", "rerank", "score", "zero-shot-classification"})


def family(handler: BaseHandler) -> str:
    if handler.task == "embeddings" or getattr(handler, "method", None) == "cosine":  # rerank/score by cosine
        return "embeddings"
    if handler.generative:
        return "generation"
    if handler.task in _CLASSIFICATION or handler.task in _PAIR_HEADS:
        return "classification"
    raise ValueError(f"no accuracy guard for task {handler.task!r}")


def probe(handler: BaseHandler, n: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The fixed inputs (GUARD_SENTENCES cycled to n; for rerank and score, one request holding them) and
    parameters for this handler's task."""
    texts = [GUARD_SENTENCES[i % len(GUARD_SENTENCES)] for i in range(n or len(GUARD_SENTENCES))]
    params: dict[str, Any] = {}
    if handler.generative:
        params["max_new_tokens"] = GEN_TOKENS
    if handler.task == "fill-mask":
        mask = handler.model.tokenizer.mask_token
        return [" ".join([*t.split()[:-1], mask]) for t in texts], params
    if handler.task == "question-answering":
        nxt = [GUARD_SENTENCES[(i + 1) % len(GUARD_SENTENCES)] for i in range(len(texts))]
        return [{"question": q, "context": f"{c} {q}"} for q, c in zip(texts, nxt, strict=True)], params
    if handler.task in ("rerank", "score"):  # one request holding every probe text
        if getattr(handler, "method", None) == "cosine":
            params["method"] = "cosine"
        if handler.task == "rerank":
            return {"query": texts[0], "documents": texts}, params
        return {"text_1": texts[0], "text_2": texts}, params
    if handler.task == "zero-shot-classification":
        params["candidate_labels"] = ["news", "sport", "science"]
    return list(texts), params


def run(handler: BaseHandler, inputs: Any, params: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(batch, forward output, resolved params) of one pass through the handler's stages."""
    import torch

    items, resolved, _ = handler.parse(inputs, params)
    batch = handler.preprocess(items, resolved)
    with torch.inference_mode():
        out = handler.forward(batch, resolved)
    return batch, out, resolved


def reference(handler: BaseHandler) -> Any:
    """What the guard compares against: the eager model's outputs on the probe set."""
    inputs, params = probe(handler)
    batch, out, resolved = run(handler, inputs, params)
    return _comparable(handler, batch, out, resolved)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    figure: float  # cosine, label agreement, or share of identical token sequences
    metric: str  # "cosine", "top-label agreement", "identical greedy tokens"
    reason: str | None = None  # why it was refused

    def text(self) -> str:
        return f"{self.metric} {self.figure:.4f}"


def check(handler: BaseHandler, ref: Any) -> Verdict:
    """Run the probe set through `handler` (the variant's) and judge it against `ref` (the eager outputs)."""
    inputs, params = probe(handler)
    batch, out, resolved = run(handler, inputs, params)
    return judge(family(handler), ref, _comparable(handler, batch, out, resolved))


def judge(kind: str, ref: Any, got: Any) -> Verdict:
    if kind == "embeddings":
        try:
            return Verdict(True, accuracy_guard(ref, got, COSINE_MIN), "cosine")
        except QuantizationRejected as exc:
            figure = float(exc.measured if exc.measured is not None else float("nan"))
            return Verdict(False, figure, "cosine", f"cosine {figure:.4f} < {COSINE_MIN} to eager outputs")
    if kind == "classification":
        return _classification(ref, got)
    same = sum(a == b for a, b in zip(ref, got, strict=True)) / len(ref)
    if same < 1.0:
        first = next(i for i, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b)
        return Verdict(
            False, same, "identical greedy tokens", f"greedy tokens differ from eager on prompt {first}"
        )
    return Verdict(True, same, "identical greedy tokens")


def _classification(ref: list[Any], got: list[Any]) -> Verdict:
    agree, total, worst = 0, 0, 0.0
    for r, g in zip(ref, got, strict=True):
        agree += int((r.argmax(-1) == g.argmax(-1)).sum())
        total += r.shape[0]
        worst = max(worst, float((r - g).abs().max()))
    share = agree / max(total, 1)
    if share < AGREEMENT_MIN:
        return Verdict(False, share, "top-label agreement", f"top label differs on {1 - share:.1%} of rows")
    if not worst <= PROB_TOLERANCE:
        return Verdict(
            False, share, "top-label agreement", f"a probability moved by {worst:.4f} > {PROB_TOLERANCE}"
        )
    return Verdict(True, share, "top-label agreement")


def _comparable(handler: BaseHandler, batch: Any, out: Any, params: Mapping[str, Any]) -> Any:
    kind = family(handler)
    if kind == "embeddings":
        return [list(map(float, v)) for v in handler.postprocess(batch, out, params)]
    if kind == "generation":
        return [row[:GEN_TOKENS] for row in _sequences(handler, batch, out)]
    return _probabilities(batch, out)


def _sequences(handler: BaseHandler, batch: Any, out: Any) -> list[list[int]]:
    seqs = out["sequences"]
    inputs = batch.get("inputs", batch)
    start = 1 if handler.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    return seqs[:, start:].tolist()


def _probabilities(batch: Any, out: Any) -> list[Any]:
    """One [rows, classes] probability tensor per output head; token-level heads keep only real tokens, and
    span heads (QA start/end) are distributions over the real tokens."""
    import torch

    mask = batch["inputs"]["attention_mask"].bool().cpu()
    heads = out if isinstance(out, tuple) else (out,)
    probs = []
    for logits in heads:
        x = logits.float().cpu()
        if x.dim() == 3:  # [batch, tokens, classes]: one row per real token
            probs.append(torch.softmax(x[mask], dim=-1))
        elif x.shape == mask.shape:  # [batch, tokens] span logits
            probs.append(torch.softmax(x.masked_fill(~mask, float("-inf")), dim=-1))
        elif x.shape[-1] == 1:  # one-label head (a cross-encoder): its sigmoid, as the two classes it splits
            p = torch.sigmoid(x)
            probs.append(torch.cat([1 - p, p], dim=-1))
        else:  # [batch, classes]
            probs.append(torch.softmax(x, dim=-1))
    return probs
