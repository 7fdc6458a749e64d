"""One generating row's token choice and text: greedy or sampled with its own seeded generator, its stop
strings, streaming and end-of-sequence, as `generate` would for that prompt alone. Used by the encoder-decoder
engine (seq2seq.py); a row of any continuous engine is one of these plus its place in the cache."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from hf_provider.runtime.continuous import rowhook
from hf_provider.runtime.tasks.generation import BatchStreamer, eos_ids
from hf_provider.types import GenRow

if TYPE_CHECKING:
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.runtime.tasks.genparams import GenParams
    from hf_provider.runtime.tasks.rowlogits import RowLogits

_seeds = random.Random()


class OneRow:
    """The `RowControl` a one-row `BatchStreamer` streams through."""

    def __init__(self, row: GenRow) -> None:
        self.row = row
        self.streaming = row.streaming

    def emit(self, i: int, delta: str) -> None:
        self.row.emit(delta)

    def stop_reason(self, i: int) -> str | None:
        return None

    def generated(self, rows: Sequence[int]) -> None:
        return None


def sampling_for(
    gp: GenParams, device: torch.device, seed_offset: int, seeds: random.Random
) -> tuple[LogitsProcessorList | None, torch.Generator | None]:
    """A sampled row's warpers (temperature, top-k, top-p: the order `generate` applies them) and its own
    generator, seeded from the request's seed (+ the row's offset among n choices) or at random; (None, None) for
    a greedy row. Both engines' rows use it, so a seeded request samples alike on either."""
    if not gp.do_sample:
        return None, None
    warpers = LogitsProcessorList()
    if gp.temperature is not None and gp.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(gp.temperature))
    if gp.top_k:
        warpers.append(TopKLogitsWarper(gp.top_k))
    if gp.top_p is not None and gp.top_p < 1.0:
        warpers.append(TopPLogitsWarper(gp.top_p))
    generator = torch.Generator(device=device)
    seed = gp.seed + seed_offset if gp.seed is not None else seeds.getrandbits(63)
    generator.manual_seed(seed % 2**63)
    return warpers, generator


class RowSampler:
    def __init__(
        self,
        model: LoadedModel,
        row: GenRow,
        gp: GenParams,
        device: torch.device,
        *,
        hook: RowLogits | None = None,
        seed_offset: int = 0,
    ) -> None:
        """`hook`: the row's logit bias, penalties, constraint and logprob capture (rowhook.py), if any;
        `seed_offset`: row i of a request with n choices draws from seed + i."""
        self.model = model
        self.hook = hook
        self.row = row
        self.gp = gp
        self.eos = eos_ids(model)
        self.tokens: list[int] = []
        self.n = 0  # tokens generated, an end-of-sequence token included
        self.next_token = -1  # the last token chosen: fed at the next step
        self.streamer: BatchStreamer | None = None
        if row.streaming or gp.stop:
            self.streamer = BatchStreamer(model.tokenizer, 1, self.eos, gp.stop, OneRow(row))
            self.streamer._prompt_seen = (
                True  # the prompt is never pushed: tokens start with the first generated
            )
        self.warpers, self.generator = sampling_for(gp, device, seed_offset, _seeds)

    @staticmethod
    def choose(samplers: Sequence[RowSampler], logits: torch.Tensor) -> list[int]:
        """Each row's next token from its row of `logits` [rows, vocab] (one argmax for the greedy ones)."""
        choice = logits.argmax(dim=-1)
        for i, s in enumerate(samplers):
            if s.hook is not None:
                choice[i] = rowhook.sample(s.hook, logits[i : i + 1], s.warpers, s.generator)
            elif s.warpers is not None:
                scores = s.warpers(None, logits[i : i + 1])  # type: ignore[arg-type]
                probs = torch.softmax(scores, dim=-1)
                choice[i] = torch.multinomial(probs, 1, generator=s.generator)[0, 0]
        return [int(t) for t in choice.tolist()]

    def push(self, tok: int) -> dict[str, Any] | None:
        """Take one token; the row's answer ({text, finish_reason, completion_tokens}) when it ended."""
        self.row.generated()
        self.n += 1
        self.next_token = tok
        if self.streamer is not None:
            self.streamer.push([tok])
            finished = self.streamer.rows[0].done or self.n >= self.gp.max_new_tokens
        else:
            finished = tok in self.eos or self.n >= self.gp.max_new_tokens
            if tok not in self.eos:
                self.tokens.append(tok)
        if not finished:
            return None
        if self.streamer is not None:
            self.streamer.end()
            text, reason, n = self.streamer.results()[0]
        else:
            text = self.model.tokenizer.decode(self.tokens, skip_special_tokens=True)
            reason, n = ("stop" if tok in self.eos else "length"), self.n
        extra = self.hook.result(self.model.tokenizer, n, self.eos) if self.hook is not None else {}
        return {"text": text, "finish_reason": reason, "completion_tokens": n, **extra}
