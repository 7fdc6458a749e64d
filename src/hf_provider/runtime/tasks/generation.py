"""text-generation on causal LMs, with per-row streaming and stop strings.

`run_generate` and `finish_rows` are shared with seq2seq and generative question answering.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.constrained import CACHE, spec_from_param
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import genparams
from hf_provider.runtime.tasks.base import BaseHandler, vocab_size
from hf_provider.runtime.tasks.rowlogits import RowLogits, RowsProcessor, prompt_logits, record_scores
from hf_provider.types import Item, RowControl


def eos_ids(model: LoadedModel) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model.module, "generation_config", None), model.config):
        v = getattr(src, "eos_token_id", None) if src is not None else None
        ids.update([v] if isinstance(v, int) else (v or []))
    if model.tokenizer.eos_token_id is not None:
        ids.add(model.tokenizer.eos_token_id)
    return ids


@dataclass
class _Row:
    """Incremental detokenization of one row (the prefix/read offsets scheme of text-generation-inference)."""

    tokens: list[int] = field(default_factory=list)
    prefix: int = 0  # tokens[prefix:read] decode to text already accounted for
    read: int = 0
    text: str = ""  # decoded so far, stop strings not yet applied
    sent: int = 0  # characters of `text` handed to the sink
    done: bool = False
    finish_reason: str = "length"
    n_tokens: int = 0


class BatchStreamer(BaseStreamer):
    """Receives the whole batch's new token ids per step; decodes each row incrementally.

    It also finds stop strings (cutting them out) and end-of-sequence tokens, so it is the one source of the
    text, finish reason and token count of every row. Text that could still become a stop string, or that ends
    in an incomplete multi-byte character, is held back: streamed deltas always concatenate to the final text.
    """

    def __init__(
        self,
        tokenizer: Any,
        batch_size: int,
        eos: set[int],
        stops: tuple[str, ...] = (),
        control: RowControl | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.rows = [_Row() for _ in range(batch_size)]
        self.eos = eos
        self.stops = stops
        self.control = control if control is not None and control.streaming else None
        self._prompt_seen = False

    # BaseStreamer -------------------------------------------------------------------------------------------
    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first pushes the prompt (or the decoder start tokens)
            self._prompt_seen = True
            return
        self.push(value.reshape(-1).tolist())

    def push(self, ids: list[int]) -> None:
        """One new token per row (continuous batching pushes a one-row streamer's tokens here directly)."""
        for i, (row, tok) in enumerate(zip(self.rows, ids, strict=True)):
            if row.done:
                continue
            row.n_tokens += 1
            if tok in self.eos:
                self._flush(row)
                row.done, row.finish_reason = True, "stop"
            else:
                row.tokens.append(tok)
                self._decode(row)
            self._emit(i, row)

    def end(self) -> None:
        for i, row in enumerate(self.rows):
            if not row.done:
                self._flush(row)
                row.done = True
            self._emit(i, row)

    # -------------------------------------------------------------------------------------------------------
    def _decode(self, row: _Row) -> None:
        head = self.tokenizer.decode(row.tokens[row.prefix : row.read], skip_special_tokens=True)
        full = self.tokenizer.decode(row.tokens[row.prefix :], skip_special_tokens=True)
        if len(full) > len(head) and not full.endswith("\ufffd"):
            row.text += full[len(head) :]
            row.prefix, row.read = row.read, len(row.tokens)
        self._find_stop(row)

    def _flush(self, row: _Row) -> None:
        """Decode what was held back; an incomplete character stays as the tokenizer renders it."""
        if row.read < len(row.tokens):
            head = self.tokenizer.decode(row.tokens[row.prefix : row.read], skip_special_tokens=True)
            full = self.tokenizer.decode(row.tokens[row.prefix :], skip_special_tokens=True)
            row.text += full[len(head) :]
            row.read = len(row.tokens)
            self._find_stop(row)

    def _find_stop(self, row: _Row) -> None:
        if not self.stops:
            return
        start = max(0, row.sent - max(len(s) for s in self.stops))
        hits = [i for i in (row.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            row.text = row.text[: min(hits)]
            row.done, row.finish_reason = True, "stop"

    def _emit(self, i: int, row: _Row) -> None:
        if self.control is None:
            return
        upto = len(row.text)
        if not row.done:
            upto -= _held_back(row.text, self.stops)
        if upto > row.sent:
            self.control.emit(i, row.text[row.sent : upto])
            row.sent = upto

    def results(self) -> list[tuple[str, str, int]]:
        return [(r.text, r.finish_reason, r.n_tokens) for r in self.rows]


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class _RowStop(StoppingCriteria):
    """Called by `generate` once per step: ends the rows the streamer finished (a stop string) and the rows whose
    request ended meanwhile (cancelled, timed out), and counts the tokens generated in the step."""

    def __init__(self, streamer: BatchStreamer | None, control: RowControl | None, n: int) -> None:
        self.streamer = streamer
        self.control = control
        self.live = [True] * n

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = self.streamer.rows if self.streamer is not None else None
        if self.control is not None:
            self.control.generated([i for i, live in enumerate(self.live) if live])
        for i, live in enumerate(self.live):
            if not live:
                continue
            if rows is not None and rows[i].done:
                self.live[i] = False
            elif self.control is not None and (reason := self.control.stop_reason(i)) is not None:
                self.live[i] = False
                if rows is not None:
                    rows[i].done, rows[i].finish_reason = True, reason
        return torch.tensor([not x for x in self.live], device=input_ids.device)


def run_generate(
    model: LoadedModel,
    batch: Mapping[str, Any],
    gp: genparams.GenParams,
    control: RowControl | None = None,
) -> dict[str, Any]:
    """Call `generate` on the shared module; returns what `finish_rows` needs."""
    import torch

    n = batch["input_ids"].shape[0]
    streamer = None
    kwargs = gp.generate_kwargs()
    if (control is not None and control.streaming) or gp.stop:
        streamer = BatchStreamer(model.tokenizer, n, eos_ids(model), gp.stop, control)
        kwargs["streamer"] = streamer
    if streamer is not None or control is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([_RowStop(streamer, control, n)])
    batch = dict(batch)
    grammars = batch.pop("_grammars", None) or [None] * n  # one output constraint per row, or None
    hooks: list[RowLogits | None] | None = None
    start = 1 if model.config.is_encoder_decoder else batch["input_ids"].shape[1]
    if RowLogits.wanted(gp) or any(grammars):
        hooks = [
            RowLogits(gp, constraint=CACHE.matcher(model.tokenizer, g) if g is not None else None)
            if g is not None or RowLogits.wanted(gp)
            else None
            for g in grammars
        ]
        if any(h is not None and h.processes for h in hooks):
            kwargs["logits_processor"] = LogitsProcessorList([RowsProcessor(hooks, start)])
        if gp.logprobs is not None:  # the scores sampled from: after processors and warpers
            kwargs.update(output_scores=True, return_dict_in_generate=True)
        if gp.prompt_logprobs and not model.config.is_encoder_decoder:
            _score_prompts(model, batch, hooks)
    if gp.seed is not None:
        torch.manual_seed(gp.seed)
    pad = model.tokenizer.pad_token_id
    if pad is None:
        pad = next(iter(eos_ids(model)), 0)
    out = model.module.generate(**batch, pad_token_id=pad, **kwargs)
    sequences = out.sequences if kwargs.get("return_dict_in_generate") else out
    if hooks is not None and kwargs.get("return_dict_in_generate"):
        record_scores(hooks, out.scores, sequences[:, start:])
    return {"sequences": sequences, "streamer": streamer, "hooks": hooks}


def _score_prompts(model: LoadedModel, batch: Mapping[str, Any], hooks: list[RowLogits | None]) -> None:
    """The prompt tokens' logprobs (completions' echo with logprobs): one more forward pass over the prompts."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = prompt_logits(model.module, ids, mask)
    for i, hook in enumerate(hooks):
        if hook is not None:
            real = int(mask[i].sum())
            start = ids.shape[1] - real  # left-padded
            hook.score_prompt(ids[i, start:].tolist(), logits[i, start:])


def finish_rows(
    model: LoadedModel, batch: Mapping[str, Any], outputs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """{"text", "finish_reason", "prompt_tokens", "completion_tokens"} per row."""
    mask = batch["attention_mask"]
    prompt_tokens = mask.sum(dim=1).tolist()
    if outputs["streamer"] is not None:
        rows = outputs["streamer"].results()
    else:
        start = 1 if model.config.is_encoder_decoder else batch["input_ids"].shape[1]
        eos = eos_ids(model)
        rows = []
        for seq in outputs["sequences"][:, start:].tolist():
            cut = next((i for i, t in enumerate(seq) if t in eos), None)
            toks = seq if cut is None else seq[:cut]
            text = model.tokenizer.decode(toks, skip_special_tokens=True)
            rows.append((text, "length" if cut is None else "stop", len(seq) if cut is None else cut + 1))
    hooks = outputs.get("hooks") or [None] * len(rows)
    eos = eos_ids(model)
    return [
        {
            "text": t,
            "finish_reason": f,
            "prompt_tokens": int(p),
            "completion_tokens": c,
            **(h.result(model.tokenizer, c, eos) if h is not None else {}),
        }
        for (t, f, c), p, h in zip(rows, prompt_tokens, hooks, strict=True)
    ]


def is_causal_lm(model: LoadedModel) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([v] if isinstance(v, str) else v)
    arch = model.architecture
    return not model.config.is_encoder_decoder and (arch in names or arch.endswith("ForCausalLM"))


class TextGeneration(BaseHandler):
    task = "text-generation"
    streaming = True
    generative = True
    allowed_params = genparams.GEN_PARAMS | {"truncate", "grammar"}

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        if model.config.is_encoder_decoder:
            return "encoder-decoder models serve text2text-generation instead"
        return None if is_causal_lm(model) else f"{model.architecture} is not a causal language model"

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        gp = genparams.resolve(merged, self.model.max_length, vocab_size(self.model))
        grammar = spec_from_param(merged.get("grammar"))
        if grammar is not None:
            CACHE.template(self.model.tokenizer, grammar)  # compiled (and cached) now: a bad one is a 400
        limit = self.model.max_length - gp.max_new_tokens
        if limit < 1:
            raise InvalidInput(
                f"max_new_tokens={gp.max_new_tokens} leaves no room for a prompt within this "
                f"model's {self.model.max_length} tokens",
                param="max_new_tokens",
            )
        truncate = merged.get("truncate", False)
        try:
            given = self.token_rows(inputs)
            if given is not None:
                rows, single = self.check_rows(given[0], truncate, limit, left=True), given[1]
            else:
                texts, single = self.as_text_list(inputs, self.max_items)
                rows = self.tokenize(texts, truncate, limit=limit, left=True)
        except TooManyItems:
            raise
        except InvalidInput as e:
            if e.param != "inputs" or "tokens long" not in e.message:
                raise
            raise InvalidInput(
                f"{e.message}; the prompt plus max_new_tokens={gp.max_new_tokens} must fit in "
                f"{self.model.max_length}",
                param="inputs",
                task=self.task,
            ) from None
        items = [
            Item(
                # the row's index in its request (its seed offset on the engine), its output constraint
                data={**r, "row": i, **({"grammar": grammar} if grammar is not None else {})},
                n_tokens=len(r["input_ids"]) + gp.max_new_tokens,
                new_tokens=gp.max_new_tokens,
            )
            for i, r in enumerate(rows)
        ]
        return items, {**merged, "_gen": gp}, single

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return params["_gen"]

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        batch = self.pad([it.data for it in items], side="left")
        grammars = [it.data.get("grammar") for it in items]
        if any(grammars):  # rows of one batch may be constrained or free: run_generate takes them apart
            batch["_grammars"] = grammars
        return batch

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return run_generate(self.model, batch, params["_gen"], control)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return [{"generated_text": r.pop("text"), **r} for r in finish_rows(self.model, batch, outputs)]
