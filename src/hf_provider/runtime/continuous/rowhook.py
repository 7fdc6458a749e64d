"""The engine's per-row logits hook: a row's `RowLogits` (runtime/tasks/rowlogits.py: logit bias, penalties, an
output constraint, logprob capture) applied in the engine's sampling step, in the order `generate` applies them:
processors, then temperature / top-k / top-p, then the draw (or the argmax for a greedy row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hf_provider.runtime.constrained import CACHE
from hf_provider.runtime.tasks.rowlogits import RowLogits, prompt_logits

if TYPE_CHECKING:
    from transformers import LogitsProcessorList

    from hf_provider.runtime.model import LoadedModel
    from hf_provider.runtime.tasks.genparams import GenParams
    from hf_provider.types import Item


def make(gp: GenParams, item: Item, model: LoadedModel) -> RowLogits | None:
    """The row's hook, or None for a row that needs none (it then takes the engine's plain path). A row that
    asks for its prompt's logprobs gets them from one plain forward pass over the prompt here, beside the slot
    cache (the engine's prefill keeps only the last position's logits)."""
    spec = item.data.get("grammar")
    if spec is None and not RowLogits.wanted(gp):
        return None
    hook = RowLogits(gp, constraint=CACHE.matcher(model.tokenizer, spec) if spec is not None else None)
    if gp.prompt_logprobs:
        ids = item.data["input_ids"]
        with torch.inference_mode():
            t = torch.tensor([ids], device=model.device)
            logits = prompt_logits(model.module, t, torch.ones_like(t))
        hook.score_prompt(list(ids), logits[0])
    return hook


def seed_offset(item: Item) -> int:
    """A request's rows draw from seeds seed, seed + 1, ... (n choices of one prompt must differ)."""
    return int(item.data.get("row", 0))


def sample(
    hook: RowLogits,
    logits: torch.Tensor,
    warpers: LogitsProcessorList | None,
    generator: torch.Generator | None,
) -> int:
    """The row's next token from its logits ([1, vocab]); its logprob noted, its penalties and constraint
    advanced."""
    scores = hook.process(logits) if hook.processes else logits
    if warpers is not None:
        scores = warpers(None, scores)  # type: ignore[arg-type]
        token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)[0, 0])
    else:
        token = int(scores.argmax(dim=-1)[0])
    hook.record(scores[0], token)
    hook.accept(token, logits.shape[-1])
    return token
