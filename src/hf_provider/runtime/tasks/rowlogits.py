"""Per-row logits processing and logprob capture for generation.

One `RowLogits` per generated row: OpenAI's `logit_bias`, `presence_penalty` and `frequency_penalty` (and, where a
request constrains its output, its grammar) change the row's logits before temperature / top-k / top-p and the
draw, and the row's logprobs are read from the scores it was actually sampled from (after all of them). The
static path applies them through `RowsProcessor`, a transformers `LogitsProcessor` over a batch's rows that
`generate` calls after its own processors and before its warpers; the continuous engine calls `RowLogits` from its
sampling step (runtime/continuous/rowhook.py). Rows of one batch may differ: a row without any of it is left as
it is, so free and processed rows share a batch.

Hand-written rather than transformers' processors: its `repetition_penalty` is CTRL's multiplicative one, not
OpenAI's additive presence / frequency penalties, and `SequenceBiasLogitsProcessor` works on a whole batch with
one bias, not per row.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from transformers import LogitsProcessor

from hf_provider.runtime.tasks.genparams import GenParams

#: What a logprob of -inf (a token the processors ruled out) is written as: JSON has no infinity; OpenAI's API
#: uses the same floor.
LOGPROB_FLOOR = -9999.0


class Constraint(Protocol):
    """A row's output constraint (a compiled grammar's matcher): which tokens may come next, and the token taken."""

    def mask(self, scores: torch.Tensor) -> torch.Tensor: ...

    def accept(self, token: int) -> None: ...


class RowLogits:
    """The processing and logprob record of one row. Not thread-safe: one generation thread drives it."""

    @staticmethod
    def wanted(gp: GenParams) -> bool:
        """Whether a row with these parameters needs one (without a constraint)."""
        return gp.processes or gp.logprobs is not None or gp.prompt_logprobs

    def __init__(self, gp: GenParams, *, score: bool = False, constraint: Constraint | None = None) -> None:
        self.gp = gp
        self.constraint = constraint
        #: None, or how many alternatives to record per token; `score` records the sampled token's alone
        self.top = gp.logprobs if gp.logprobs is not None else (0 if score else None)
        self._bias: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self.entries: list[tuple[int, float, list[tuple[int, float]]]] = []
        #: the prompt's tokens and logprobs (None for the first: nothing predicts it), with `prompt_logprobs`
        self.prompt: list[tuple[int, float | None, list[tuple[int, float]]]] | None = None

    @property
    def processes(self) -> bool:
        return self.gp.processes or self.constraint is not None

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        """The row's logits ([vocab] or [1, vocab]) with its bias, penalties and constraint applied."""
        gp = self.gp
        if gp.logit_bias:
            if self._bias is None:
                self._bias = torch.zeros(scores.shape[-1], dtype=scores.dtype, device=scores.device)
                ids, bias = zip(*gp.logit_bias, strict=True)
                self._bias[list(ids)] = torch.tensor(bias, dtype=scores.dtype, device=scores.device)
            scores = scores + self._bias
        if self._counts is not None:
            c = self._counts.to(device=scores.device, dtype=scores.dtype)  # counted on the host
            scores = scores - gp.frequency_penalty * c - gp.presence_penalty * (c > 0).to(scores.dtype)
        if self.constraint is not None:
            scores = self.constraint.mask(scores)
        return scores

    def accept(self, token: int, width: int) -> None:
        """The token sampled for this row (its penalties count it, its constraint advances)."""
        if self.gp.presence_penalty or self.gp.frequency_penalty:
            if self._counts is None:
                self._counts = torch.zeros(width, dtype=torch.int32)
            self._counts[token] += 1
        if self.constraint is not None:
            self.constraint.accept(token)

    def record(self, final: torch.Tensor, token: int) -> None:
        """Note the logprob of `token` under the scores it was sampled from ([vocab])."""
        if self.top is None:
            return
        lp = torch.log_softmax(final.float().reshape(-1), dim=-1)
        chosen = _finite(lp[token].item())
        top: list[tuple[int, float]] = []
        if self.top:
            values, ids = lp.topk(self.top)
            top = [(i, _finite(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
        self.entries.append((token, chosen, top))

    def result(self, tokenizer: Any, n: int, eos: set[int]) -> dict[str, Any]:
        """What a row's result carries, over its `n` generated tokens: its logprobs (`logprobs` asked; an
        end-of-sequence token is not part of the text, so not listed) and their sum (best_of ranks by it)."""
        out: dict[str, Any] = {}
        if self.prompt is not None:
            out["prompt_logprobs"] = [
                {
                    "token": _piece(tokenizer, t),
                    "id": t,
                    "logprob": lp,
                    "top": [{"token": _piece(tokenizer, i), "id": i, "logprob": v} for i, v in top],
                }
                for t, lp, top in self.prompt
            ]
        if self.top is None:
            return out
        entries = self.entries[:n]
        out.update(logprob_sum=sum(e[1] for e in entries), scored_tokens=len(entries))
        if entries and entries[-1][0] in eos:
            entries = entries[:-1]
        if self.gp.logprobs is not None:
            out["logprobs"] = [
                {
                    "token": _piece(tokenizer, t),
                    "id": t,
                    "logprob": lp,
                    "top": [{"token": _piece(tokenizer, i), "id": i, "logprob": v} for i, v in top],
                }
                for t, lp, top in entries
            ]
        return out

    def score_prompt(self, ids: list[int], logits: torch.Tensor) -> None:
        """The prompt's logprobs from a forward pass over it (`logits`: [len(ids), vocab], position i predicting
        token i + 1)."""
        lp = torch.log_softmax(logits.float(), dim=-1)
        k = self.gp.logprobs or 0
        out: list[tuple[int, float | None, list[tuple[int, float]]]] = [(ids[0], None, [])]
        for pos, t in enumerate(ids[1:]):
            row = lp[pos]
            top: list[tuple[int, float]] = []
            if k:
                values, idx = row.topk(k)
                top = [(i, _finite(v)) for i, v in zip(idx.tolist(), values.tolist(), strict=True)]
            out.append((t, _finite(row[t].item()), top))
        self.prompt = out


def _finite(v: float) -> float:
    return v if math.isfinite(v) else LOGPROB_FLOOR


def _piece(tokenizer: Any, token: int) -> str:
    return str(tokenizer.decode([token], skip_special_tokens=False))


class RowsProcessor(LogitsProcessor):
    """`generate`'s view of a batch's `RowLogits` (rows without processing are None). Called once per step
    before sampling: the last column of `input_ids` is then the token each row took at the step before."""

    def __init__(self, rows: list[RowLogits | None], start: int) -> None:
        self.rows = rows
        self.start = start  # input_ids' width before the first generated token
        self.ended = [False] * len(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        took = input_ids[:, -1].tolist() if input_ids.shape[1] > self.start else None
        out = scores
        for i, row in enumerate(self.rows):
            if row is None:
                continue
            if took is not None and not self.ended[i]:
                try:
                    row.accept(took[i], scores.shape[-1])
                except ValueError:  # a finished row's padding after its constraint ended: it is done
                    self.ended[i] = True
            if row.processes and not self.ended[i]:
                if out is scores:
                    out = scores.clone()
                out[i] = row.process(scores[i])
        return out


def record_scores(
    rows: list[RowLogits | None], scores: tuple[torch.Tensor, ...], tokens: torch.Tensor
) -> None:
    """The static path's logprobs: `generate`'s processed scores (one [batch, vocab] per step) at the tokens
    each row took (`tokens`: [batch, steps]); steps after a row ended are cut by `RowLogits.result`."""
    for i, row in enumerate(rows):
        if row is None or row.top is None:
            continue
        for step, s in enumerate(scores):
            row.record(s[i], int(tokens[i, step]))


def prompt_logits(module: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Every position's logits of a left-padded prompt batch ([rows, width, vocab]): one plain forward pass,
    positions counted from each row's first real token as `generate` counts them."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = module(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    )
    return out.logits
