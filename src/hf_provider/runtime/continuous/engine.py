"""Iteration-level generation on one loaded decoder: rows join at the next step and leave when they end.

Each step runs one forward for every decoding row (one token each, its own position, reading its own slot of
the KV cache) and one forward for prompt chunks of the rows that are starting (left-padded to a bucketed
width, so the last column holds every row's last prompt token). The 4D attention mask lets each query see only
its own slot's positions up to its own; padding and other rows are excluded, which makes each row's
computation the one `generate` does for that prompt alone (up to float rounding of differently shaped matmuls).

Each row keeps its own parameters: greedy rows take the argmax; sampling rows apply transformers'
temperature / top-k / top-p warpers (the order `generate` applies them) and draw from their own
`torch.Generator`, seeded from the request's `seed`, so a seeded row's output does not depend on its batch.
Text, stop strings, end-of-sequence and streaming go through the static path's `BatchStreamer` (one per row).
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    LogitsProcessorList,
)

from hf_provider.errors import InvalidInput
from hf_provider.runtime.continuous import rowhook
from hf_provider.runtime.continuous.cache import CachePlan, LayerShape, SlotCache
from hf_provider.runtime.continuous.graphs import DecodeGraphs
from hf_provider.runtime.continuous.policy import SlotPolicy, StepPlan
from hf_provider.runtime.continuous.sampling import OneRow as _OneRow
from hf_provider.runtime.continuous.sampling import sampling_for
from hf_provider.runtime.tasks.generation import BatchStreamer, eos_ids
from hf_provider.runtime.tasks.rowlogits import RowLogits
from hf_provider.types import GenRow, Item, TaskHandler

if TYPE_CHECKING:
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.runtime.tasks.genparams import GenParams


@dataclass(eq=False)
class _Live:
    row: GenRow
    prompt: list[int]
    gp: GenParams
    streamer: BatchStreamer | None
    warpers: LogitsProcessorList | None = None
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    n: int = 0  # tokens generated, an end-of-sequence token included
    next_token: int = -1  # the last token generated: fed at the next decode step
    trace: list[torch.Tensor] | None = None  # the logits of each token (the load-time numerics check)
    saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # its keys and values while paused
    length: int = 0  # positions written when it was paused
    hook: RowLogits | None = None  # per-row processing and logprobs (rowhook.py); None: the plain path


class Engine:
    """Rows, the slot cache and the model for one loaded decoder. One thread (the scheduler's) drives it.
    A decoding row can be paused (its keys and values copied out, its slot freed) and resumed into a free slot
    with nothing recomputed (scheduling/preempt.py decides who)."""

    pausable = True

    def __init__(
        self,
        model: LoadedModel,
        shapes: list[LayerShape],
        *,
        slots: int,
        max_len: int,
        prefill_chunk: int,
        clock: Callable[[], float],
        prefill_wait_s: float = 0.0,
    ) -> None:
        self.model = model
        self.module = model.module
        self.device = model.device
        self.slots, self.max_len = slots, max_len
        # One row more than the slots: padded decode steps (graphs.py) write their padding rows there.
        self.cache = SlotCache(shapes, slots + 1, max_len, model.dtype, model.device)
        self.graphs: DecodeGraphs | None = None  # set by runtime/continuous.Prepared.build on CUDA
        self._policy_args = (slots, max_len, prefill_chunk)
        self._policy_kw: dict[str, Any] = {"clock": clock, "prefill_wait_s": prefill_wait_s}
        self.policy = SlotPolicy(*self._policy_args, **self._policy_kw)
        self.eos = eos_ids(model)
        pad = model.tokenizer.pad_token_id
        self.pad = pad if pad is not None else next(iter(self.eos), 0)
        params = inspect.signature(self.module.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep = "logits_to_keep" in params
        self._bool_mask = self.module.config._attn_implementation == "sdpa"
        self.rows: dict[Hashable, _Live] = {}
        self._next_id = 0
        self._random = random.Random()
        self._arange: dict[int, torch.Tensor] = {}
        self._count: Callable[[int], None] | None = None
        self.steps = 0
        # Where the engine's time goes (bench/gpu_generation.py reports them).
        self.stats: dict[str, float] = dict.fromkeys(
            ("decode_steps", "decode_rows", "decode_s", "prefills", "prefill_tokens", "prefill_s"), 0
        )

    # rows ---------------------------------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return self.policy.free_slots

    @property
    def busy(self) -> bool:
        return len(self.policy) > 0  # paused rows hold no slot and compute nothing

    def accepts(self, handler: TaskHandler) -> bool:
        return handler.task == "text-generation" and getattr(handler, "model", None) is self.model

    def add_item(self, handler: TaskHandler, item: Item, params: Mapping[str, Any], row: GenRow) -> Hashable:
        hook = rowhook.make(params["_gen"], item, self.model)
        return self.add(
            item.data["input_ids"], params["_gen"], row, hook=hook, seed_offset=rowhook.seed_offset(item)
        )

    def add(
        self,
        prompt: list[int],
        gp: GenParams,
        row: GenRow,
        *,
        hook: RowLogits | None = None,
        seed_offset: int = 0,
    ) -> Hashable:
        """Schedule a row: it gets a slot at the next step with one free. ValueError if it cannot fit a slot."""
        if len(prompt) + gp.max_new_tokens > self.max_len:
            raise InvalidInput(
                f"the prompt ({len(prompt)} tokens) plus max_new_tokens={gp.max_new_tokens} exceed the "
                f"{self.max_len} tokens of a continuous-batching slot; ask for fewer tokens",
                param="max_new_tokens",
            )
        rid = self._next_id
        self._next_id += 1
        self.policy.add(rid, len(prompt), len(prompt) + gp.max_new_tokens)
        streamer = None
        if row.streaming or gp.stop:
            streamer = BatchStreamer(self.model.tokenizer, 1, self.eos, gp.stop, _OneRow(row))
            streamer._prompt_seen = True  # the prompt is never pushed: tokens start with the first generated
        live = _Live(row, list(prompt), gp, streamer, hook=hook)
        live.warpers, live.generator = sampling_for(gp, self.device, seed_offset, self._random)
        self.rows[rid] = live
        return rid

    @property
    def running(self) -> int:
        return len(self.policy)

    @property
    def paused(self) -> list[Hashable]:
        return [rid for rid, live in self.rows.items() if live.saved is not None]

    def pause(self, rid: Hashable) -> bool:
        """Copy a decoding row's keys and values out and free its slot; False when it is not decoding."""
        live = self.rows.get(rid)
        if live is None or live.saved is not None or self.graphs is not None:
            return False  # CUDA graphs replay fixed slot layouts: rows are not paused under them
        if rid not in self.policy.rows or self.policy.phase(rid) != "decode":
            return False
        for src, dst, upto, swap in self.policy.take_moves():  # pending moves first: the slot is then current
            self.cache.move(src, dst, upto, swap)
        live.length = self.policy.rows[rid].length
        live.saved = self.cache.save(self.policy.slot(rid), live.length)
        self.policy.remove(rid)
        return True

    def resume(self, rid: Hashable) -> bool:
        live = self.rows.get(rid)
        if live is None or live.saved is None or self.policy.free_slots <= 0:
            return False
        for src, dst, upto, swap in self.policy.take_moves():
            self.cache.move(src, dst, upto, swap)
        slot, moves = self.policy.restore(rid, live.length, len(live.prompt) + live.gp.max_new_tokens)
        for src, dst, upto, swap in moves:
            self.cache.move(src, dst, upto, swap)
        self.cache.restore(slot, live.saved)
        live.saved = None
        return True

    def abort(self, error: BaseException) -> None:
        """A step failed: every row fails with the error and every slot is free again."""
        rows, self.rows = self.rows, {}
        for rid, live in rows.items():
            self.policy.remove(rid)
            live.row.fail(error)
        # A failed step may have left its moves half applied: the layout starts over (every slot is free).
        self.policy = SlotPolicy(*self._policy_args, **self._policy_kw)

    # one step -----------------------------------------------------------------------------------------------
    def step(self, count: Callable[[int], None] | None = None) -> int:
        """Run one iteration; returns the tokens generated, also handed to `count` before any row they end is
        answered (a caller that sees its result sees its tokens counted). Rows whose request ended leave first."""
        self._count = count
        with torch.inference_mode():
            return self._step()

    def _step(self) -> int:
        for rid, live in list(self.rows.items()):
            if live.row.stop_reason() is not None:  # cancelled, timed out, failed: the slot is free now
                self._drop(rid)
        plan = self.policy.plan()
        for src, dst, upto, swap in plan.moves:
            self.cache.move(src, dst, upto, swap)
        if plan.empty:
            return 0
        self.steps += 1
        done: list[Hashable] = []
        made = 0
        st = self.stats
        if plan.decode:
            t0 = time.perf_counter()
            rids = [rid for rid, _ in plan.decode]
            made += self._tokens(
                rids, self._decode(plan), done
            )  # its tokens reach the host: the step is done
            st["decode_steps"] += 1
            st["decode_rows"] += len(rids)
            st["decode_s"] += time.perf_counter() - t0
        if plan.prefill:
            t0 = time.perf_counter()
            logits = self._prefill(plan)
            last = [i for i, c in enumerate(plan.prefill) if c.last]
            if last:
                rids = [plan.prefill[i].row for i in last]
                made += self._tokens(rids, logits[last], done)
            st["prefills"] += 1
            st["prefill_tokens"] += sum(c.length for c in plan.prefill)
            st["prefill_s"] += time.perf_counter() - t0  # launch time only when no prompt ended in it
        self.policy.advance(plan)
        for rid in done:
            self._drop(rid)
        return made

    def _drop(self, rid: Hashable) -> None:
        self.rows.pop(rid, None)
        self.policy.remove(rid)

    def _range(self, n: int) -> torch.Tensor:
        t = self._arange.get(n)
        if t is None:
            t = self._arange[n] = torch.arange(n, device=self.device)
        return t

    def _mask(self, qpos: torch.Tensor, kv_len: int) -> torch.Tensor:
        """[rows, 1, queries, kv_len]: a query sees its own slot's positions up to its own position."""
        allowed = self._range(kv_len)[None, None, :] <= qpos[:, :, None]
        if self._bool_mask:
            return allowed[:, None]
        dtype = self.model.dtype
        zero = torch.zeros((), dtype=dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]

    def _run(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, plan: CachePlan) -> torch.Tensor:
        self.cache.plan = plan
        kwargs: dict[str, Any] = {self._cache_arg: self.cache, "use_cache": True}
        if self._keep:
            kwargs["logits_to_keep"] = 1
        try:
            out = self.module(input_ids=ids, position_ids=pos, attention_mask=mask, **kwargs)
        finally:
            self.cache.plan = None
        return out.logits[:, -1, :].float()

    def _decode(self, plan: StepPlan) -> torch.Tensor:
        if self.graphs is not None:
            ids_l = [self.rows[rid].next_token for rid, _ in plan.decode]
            logits = self.graphs.run(ids_l, [p for _, p in plan.decode])
            if logits is not None:
                return logits
        n = len(plan.decode)
        rows = self._range(n)
        ids = torch.tensor([[self.rows[rid].next_token] for rid, _ in plan.decode], device=self.device)
        pos = torch.tensor([[p] for _, p in plan.decode], device=self.device)
        cp = CachePlan(rows, rows * 0, rows, pos[:, 0], plan.decode_kv, lo=0, hi=n)
        return self._run(ids, pos, self._mask(pos, plan.decode_kv), cp)

    def _prefill(self, plan: StepPlan) -> torch.Tensor:
        width = plan.prefill_width
        ids = torch.full((len(plan.prefill), width), self.pad, dtype=torch.long)
        pos = torch.zeros((len(plan.prefill), width), dtype=torch.long)
        src_row: list[int] = []
        src_col: list[int] = []
        dst_slot: list[int] = []
        for i, c in enumerate(plan.prefill):
            off = width - c.length
            ids[i, off:] = torch.tensor(self.rows[c.row].prompt[c.start : c.start + c.length])
            pos[i, off:] = torch.arange(c.start, c.start + c.length)
            src_row += [i] * c.length
            src_col += range(off, width)
            dst_slot += [c.slot] * c.length
        real = ids.new_zeros(ids.shape, dtype=torch.bool)
        for i, c in enumerate(plan.prefill):
            real[i, width - c.length :] = True
        dev = self.device
        pos_d = pos.to(dev)
        cp = CachePlan(
            torch.tensor(src_row, device=dev),
            torch.tensor(src_col, device=dev),
            torch.tensor(dst_slot, device=dev),
            pos[real].to(dev),
            plan.prefill_kv,
            gather=torch.tensor([c.slot for c in plan.prefill], device=dev),
        )
        # Padding queries see position 0 only: a fully masked query would give NaN rows in sdpa.
        return self._run(ids.to(dev), pos_d, self._mask(pos_d, plan.prefill_kv), cp)

    # tokens -------------------------------------------------------------------------------------------------
    def _tokens(self, rids: list[Hashable], logits: torch.Tensor, done: list[Hashable]) -> int:
        lives = [self.rows[r] for r in rids]
        choice = logits.argmax(dim=-1)
        for i, live in enumerate(lives):
            if live.trace is not None:
                live.trace.append(logits[i].detach().cpu())
            if live.hook is not None:
                choice[i] = rowhook.sample(live.hook, logits[i : i + 1], live.warpers, live.generator)
            elif live.warpers is not None:
                scores = live.warpers(None, logits[i : i + 1])  # type: ignore[arg-type]
                probs = torch.softmax(scores, dim=-1)
                choice[i] = torch.multinomial(probs, 1, generator=live.generator)[0, 0]
        tokens = choice.tolist()
        if self._count is not None:
            self._count(len(tokens))
        for rid, live, tok in zip(rids, lives, tokens, strict=True):
            live.row.generated()
            if self._push(live, tok):
                done.append(rid)
        return len(lives)

    def _push(self, live: _Live, tok: int) -> bool:
        """Hand one token to its row; True when the row is finished (and answered)."""
        live.n += 1
        live.next_token = tok
        if live.streamer is not None:
            live.streamer.push([tok])
            finished = live.streamer.rows[0].done or live.n >= live.gp.max_new_tokens
        else:
            finished = tok in self.eos or live.n >= live.gp.max_new_tokens
            if tok not in self.eos:
                live.tokens.append(tok)
        if finished:
            live.row.finish(self._result(live, tok))
        return finished

    def _result(self, live: _Live, last: int) -> dict[str, Any]:
        if live.streamer is not None:
            live.streamer.end()
            text, reason, n = live.streamer.results()[0]
        else:
            text = self.model.tokenizer.decode(live.tokens, skip_special_tokens=True)
            reason, n = ("stop" if last in self.eos else "length"), live.n
        return {
            "generated_text": text,
            "finish_reason": reason,
            "prompt_tokens": len(live.prompt),
            "completion_tokens": n,
            **(live.hook.result(self.model.tokenizer, n, self.eos) if live.hook is not None else {}),
        }
