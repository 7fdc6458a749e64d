"""Iteration-level generation on one encoder-decoder model (T5, BART, Marian): rows join at the next step,
leave when they end, and can be paused and resumed with their state kept.

A new row's prompt goes through the encoder and its first decoder token in a *prefill* forward (the new rows of
a step together); it then joins a `Group` (encdec.py) of rows that decode together, one token each per step, in
one decoder forward with a cache of their keys and values. With `cross_task` (the model's
`batching.cross_task`) the translation, summarization and text2text rows of the model form one group; without it
each task has its own group and its own forward per step. `pause` takes a row out of its group with its caches
(nothing is recomputed when it comes back); the scheduler decides who pauses (scheduling/continuous.py).

Caches grow by concatenation (transformers' `DynamicCache`, as `generate` does), so there is no slot reservation:
the KV bytes accounted at load are an estimate of `slots` full rows. Sampling, stop strings, streaming and the
per-row seeded generator are the decoder engine's (engine.py `RowSampler`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from hf_provider.errors import InvalidInput
from hf_provider.runtime.continuous import rowhook
from hf_provider.runtime.continuous.encdec import Group, merge
from hf_provider.runtime.continuous.sampling import RowSampler
from hf_provider.types import GenRow, Item, TaskHandler

if TYPE_CHECKING:
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.runtime.tasks.genparams import GenParams

SEQ2SEQ_TASKS = frozenset({"text2text-generation", "translation", "summarization"})


@dataclass(eq=False)
class _Row:
    rid: int
    task: str
    out_key: str
    handler: Any  # the row's task handler: it shapes the row's answer (`result`)
    prompt: list[int]
    sampler: RowSampler
    state: Group | None = None  # its caches while it is out of a group (paused)
    paused: bool = False
    steps: int = field(default=0)


class Seq2SeqEngine:
    """One thread (the scheduler's) drives it, as the decoder engine."""

    pausable = True

    def __init__(self, model: LoadedModel, *, slots: int, cross_task: bool = True) -> None:
        self.model = model
        self.module = model.module
        self.device = model.device
        self.slots = slots
        self.cross_task = cross_task
        params = inspect.signature(self.module.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        gen = getattr(self.module, "generation_config", None)
        start = getattr(gen, "decoder_start_token_id", None)
        if start is None:
            start = model.config.decoder_start_token_id
        self.start_token = int(start if start is not None else 0)
        self.rows: dict[int, _Row] = {}
        self.groups: dict[str, Group] = {}
        self.new: list[int] = []  # rows waiting for their prefill
        self._next_id = 0
        self._count: Callable[[int], None] | None = None
        self._positions: torch.Tensor | None = None
        self.steps = 0
        self.stats: dict[str, float] = dict.fromkeys(
            ("decode_steps", "decode_rows", "decode_s", "prefills", "prefill_rows", "prefill_s", "pauses"), 0
        )
        self._hook = _position_hook(self)

    # rows -------------------------------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        """Rows holding a slot: decoding or about to (paused rows hold none)."""
        return sum(1 for r in self.rows.values() if not r.paused)

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.running)

    @property
    def busy(self) -> bool:
        return any(not r.paused for r in self.rows.values())

    @property
    def paused(self) -> list[int]:
        return [rid for rid, r in self.rows.items() if r.paused]

    def accepts(self, handler: TaskHandler) -> bool:
        return handler.task in SEQ2SEQ_TASKS and getattr(handler, "model", None) is self.model

    def add_item(self, handler: TaskHandler, item: Item, params: Mapping[str, Any], row: GenRow) -> int:
        out_key = str(item.data.get("_out") or getattr(handler, "output_key", "generated_text"))
        gp = params["_gen"]
        if getattr(gp, "prompt_logprobs", False):
            raise InvalidInput("the prompt's logprobs (echo) need a decoder-only model", param="echo")
        hook = rowhook.make(gp, item, self.model)
        return self.add(
            item.data["input_ids"],
            gp,
            row,
            handler=handler,
            out_key=out_key,
            hook=hook,
            seed_offset=rowhook.seed_offset(item),
        )

    def add(
        self,
        prompt: list[int],
        gp: GenParams,
        row: GenRow,
        *,
        handler: Any,
        out_key: str,
        hook: Any = None,
        seed_offset: int = 0,
    ) -> int:
        rid = self._next_id
        self._next_id += 1
        sampler = RowSampler(self.model, row, gp, self.device, hook=hook, seed_offset=seed_offset)
        self.rows[rid] = _Row(rid, handler.task, out_key, handler, list(prompt), sampler)
        self.new.append(rid)
        return rid

    def pause(self, rid: int) -> bool:
        """Stop stepping a row, its caches kept (a row not prefilled yet: its prefill waits). The row leaves its
        group at the start of the next step, with every other row paused or ended meanwhile (one split of the
        group, not one per row). False when it is already paused or gone."""
        r = self.rows.get(rid)
        if r is None or r.paused:
            return False
        r.paused = True  # a row not prefilled yet stays in `new`, its prefill deferred until it resumes
        self.stats["pauses"] += 1
        return True

    def resume(self, rid: int) -> bool:
        r = self.rows.get(rid)
        if r is None or not r.paused:
            return False
        r.paused = False
        return True

    def abort(self, error: BaseException) -> None:
        rows, self.rows = self.rows, {}
        self.groups, self.new = {}, []
        for r in rows.values():
            r.sampler.row.fail(error)

    def _key(self, r: _Row) -> str:
        return "all" if self.cross_task else r.task

    # one step ---------------------------------------------------------------------------------------------------
    def step(self, count: Callable[[int], None] | None = None) -> int:
        self._count = count
        with torch.inference_mode():
            return self._step()

    def _step(self) -> int:
        for rid, r in list(self.rows.items()):
            if r.sampler.row.stop_reason() is not None:
                self._drop(rid)
        self._regroup()
        made = 0
        for key in list(self.groups):
            if key in self.groups:  # a group whose rows all ended in this step's earlier forward is gone
                made += self._decode(key)
        if any(not self.rows[r].paused for r in self.new):
            made += self._prefill()
        if made:
            self.steps += 1
        return made

    def _drop(self, rid: int) -> None:
        """The row ended: it leaves now (its group drops it at the next `_regroup`)."""
        self.rows.pop(rid, None)
        if rid in self.new:
            self.new.remove(rid)

    def _regroup(self) -> None:
        """Groups hold exactly the rows that decode this step: ended and paused rows leave (a paused row keeps
        its own caches), resumed ones merge back."""
        for key, g in list(self.groups.items()):
            stay = []
            for i, rid in enumerate(g.rids):
                r = self.rows.get(rid)
                if r is None:
                    continue
                if r.paused:
                    r.state = g.keep([i])
                else:
                    stay.append(i)
            if len(stay) == len(g.rids):
                continue
            if stay:
                self.groups[key] = g.keep(stay)
            else:
                del self.groups[key]
        for r in self.rows.values():
            if not r.paused and r.state is not None:
                key = self._key(r)
                self.groups[key] = merge([g for g in (self.groups.get(key), r.state) if g is not None])
                r.state = None

    def _forward(self, g: Group, ids: torch.Tensor, fresh: bool) -> tuple[torch.Tensor, EncoderDecoderCache]:
        if fresh:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            mask = g.dec_mask.new_ones((len(g), 1))
        else:
            cache = EncoderDecoderCache(
                DynamicCache(list(zip(g.self_k, g.self_v, strict=True))),
                DynamicCache(list(zip(g.cross_k, g.cross_v, strict=True))),
            )
            mask = torch.cat([g.dec_mask, g.dec_mask.new_ones((len(g), 1))], dim=1)
        self._positions = g.positions if not fresh else g.dec_mask.new_zeros((len(g), 1))
        try:
            out = self.module(
                encoder_outputs=BaseModelOutput(last_hidden_state=g.enc),
                attention_mask=g.enc_mask,
                decoder_input_ids=ids,
                decoder_attention_mask=mask,
                use_cache=True,
                **{self._cache_arg: cache},
            )
        finally:
            self._positions = None
        return out.logits[:, -1, :].float(), cache

    def _decode(self, key: str) -> int:
        t0 = time.perf_counter()
        g = self.groups[key]
        ids = torch.tensor([[self.rows[rid].sampler.next_token] for rid in g.rids], device=self.device)
        logits, cache = self._forward(g, ids, fresh=False)
        sc = cache.self_attention_cache
        self.groups[key] = g.appended([lay.keys for lay in sc.layers], [lay.values for lay in sc.layers])
        made = self._tokens(key, logits)
        st = self.stats
        st["decode_steps"] += 1
        st["decode_rows"] += len(g)
        st["decode_s"] += time.perf_counter() - t0
        return made

    def _prefill(self) -> int:
        """The new rows' encoder pass and first decoder token, together; then each joins its group."""
        t0 = time.perf_counter()
        rids = [r for r in self.new if not self.rows[r].paused]
        self.new = [r for r in self.new if self.rows[r].paused]
        prompts = [self.rows[rid].prompt for rid in rids]
        width = max(len(p) for p in prompts)
        pad = self.model.tokenizer.pad_token_id or 0
        ids = torch.full((len(rids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rids), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[i, : len(p)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        enc = self.module.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        empty = mask.new_zeros((len(rids), 0))
        g = Group(rids, [], [], [], [], enc, mask, empty)
        start = torch.full((len(rids), 1), self.start_token, dtype=torch.long, device=self.device)
        logits, cache = self._forward(g, start, fresh=True)
        sc, cc = cache.self_attention_cache, cache.cross_attention_cache
        g = Group(
            rids,
            [lay.keys for lay in sc.layers],
            [lay.values for lay in sc.layers],
            [lay.keys for lay in cc.layers],
            [lay.values for lay in cc.layers],
            enc,
            mask,
            mask.new_ones((len(rids), 1)),
        )
        made = 0
        keys = [self._key(self.rows[r]) for r in rids]  # before any row ends (and leaves `rows`)
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            part = g.keep(idx) if len(idx) < len(rids) else g
            self.groups[key] = merge([x for x in (self.groups.get(key), part) if x is not None])
            made += self._tokens(key, logits[idx], only=[rids[i] for i in idx])
        st = self.stats
        st["prefills"] += 1
        st["prefill_rows"] += len(rids)
        st["prefill_s"] += time.perf_counter() - t0
        return made

    def _tokens(self, key: str, logits: torch.Tensor, only: list[int] | None = None) -> int:
        """Choose each row's next token; rows that end leave their group. `only`: the rows of `logits`
        (the group's rows by default)."""
        rids = only if only is not None else list(self.groups[key].rids)
        tokens = RowSampler.choose([self.rows[r].sampler for r in rids], logits)
        if self._count is not None:
            self._count(len(tokens))
        ended = []
        for rid, tok in zip(rids, tokens, strict=True):
            r = self.rows[rid]
            r.steps += 1
            result = r.sampler.push(tok)
            if result is not None:
                ended.append(rid)
                r.sampler.row.finish(r.handler.result({**result, "prompt_tokens": len(r.prompt)}, r.out_key))
        for rid in ended:
            self._drop(rid)
        if ended:
            self._regroup()  # their caches go now, not at the next step (an idle engine would hold them)
        return len(tokens)


def _position_hook(engine: Seq2SeqEngine) -> Any:
    """Decoders with absolute positions (BART's learned, Marian's sinusoidal) compute them from the cache's
    length, one for the whole batch; a forward hook on the position embedding gives each row its own (its real
    tokens so far). T5 has relative positions only: no hook."""
    decoder = engine.module.get_decoder()
    emb = getattr(decoder, "embed_positions", None)
    if not isinstance(emb, torch.nn.Embedding):
        return None
    offset = int(getattr(emb, "offset", 0))

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        pos = engine._positions
        if pos is None:
            return None
        return torch.nn.Embedding.forward(module, pos + offset).to(output.dtype)

    return emb.register_forward_hook(hook)


def engine_signature() -> list[str]:
    """The forward arguments this engine passes (a load-time check that the model takes them)."""
    return ["encoder_outputs", "attention_mask", "decoder_input_ids", "decoder_attention_mask"]


def check_signature(model: LoadedModel) -> str | None:
    params = inspect.signature(model.module.forward).parameters
    missing = [p for p in engine_signature() if p not in params]
    if missing:
        return f"the model's forward takes no {', '.join(missing)}"
    if not ({"cache", "past_key_values"} & set(params)):
        return "the model's forward takes no cache"
    return None
