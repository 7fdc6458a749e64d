"""Continuous (iteration-level) batching for generation: decoders and encoder-decoders.

    policy.py   which rows a step computes and where each row's KV lives (pure, unit-tested)
    cache.py    the slot KV cache: a transformers `Cache` of slots x max_len positions, allocated once
    engine.py   rows, sampling, streaming and the forward passes of each step (decoders)
    seq2seq.py  the encoder-decoder engine (T5, BART, Marian): rows in groups, paused and resumed
    encdec.py   its batched cache state (padding, merging, taking rows out)
    sampling.py one row's token choice, stop strings and streaming (the encoder-decoder engine's)

This module decides whether a loaded model gets an engine (`prepare`): the model's `batching.generation` mode
("auto": on CUDA only; the CPU keeps static `generate` by default, bench/gpu_generation.py SMOKE=1 compares the
two), a decoder whose attention takes a 4D mask and whose cache is plain full attention, and no checkpoint logits
processors `generate` would apply that the engine does not (repetition penalty, min length...). The KV cache's
bytes are sized from the memory the caller can give it and accounted with the model's. Encoder-decoder models get
a `Seq2SeqEngine` under the same mode, and also under "auto" on the CPU, where it is faster than `generate` (see
`wanted`) and lets one task's request start at the next token instead of behind another task's batch.
`Prepared.build` allocates the cache and checks the engine's logits against a plain forward pass once.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hf_provider.runtime.continuous.cache import LayerShape, SlotCache
from hf_provider.runtime.continuous.engine import Engine
from hf_provider.runtime.continuous.graphs import DecodeGraphs
from hf_provider.runtime.continuous.seq2seq import Seq2SeqEngine, check_signature

if TYPE_CHECKING:
    from hf_provider.runtime.model import LoadedModel

log = logging.getLogger(__name__)

#: Prompt tokens prefilled per step: a long prompt takes several steps while running rows keep decoding.
PREFILL_CHUNK = {"cuda": 512, "cpu": 128}
#: How long new prompts may wait for others to share a prefill forward while rows decode (policy.py): on a GPU a
#: small model's forward costs the same for one prompt or several; on a CPU compute grows with the prompts.
PREFILL_WAIT_S = {"cuda": 0.015, "cpu": 0.0}
#: Longest slot: models with long contexts (32k, 128k) would otherwise reserve that much KV per slot. A request
#: needing more (prompt + max_new_tokens) is refused with 400; `max_length` in the spec lowers it further.
MAX_SLOT_LEN = 4096
#: generation_config settings under which `generate` applies a logits processor the engine does not have.
_PROCESSORS = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "min_p": (None,),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
}


def wanted(model: LoadedModel) -> bool:
    """The model's `batching.generation` mode, resolved: "auto" is continuous on CUDA, and for encoder-decoders on
    the CPU too (bench/cpu_generation.py --model t5: continuous/static 1.27x tokens/s with staggered arrivals and
    3.3x in a burst, where a decoder's is 0.44x in a burst: `generate`'s per-step overhead is an encoder-decoder's
    cost on the CPU, and one task's rows never wait behind another task's whole batch)."""
    mode = model.spec.batching.generation
    if mode != "auto":
        return mode == "continuous"
    return model.device.type == "cuda" or bool(model.config.is_encoder_decoder)


def unsupported_reason(model: LoadedModel) -> str | None:
    """Why this model cannot use the engine (it then stays on static batching), or None."""
    cfg = model.config
    if cfg.is_encoder_decoder:
        return check_signature(model) or _processors(model)
    impl = getattr(model.module.config, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} does not take a 4D mask"
    if getattr(cfg, "sliding_window", None) or any(
        t != "full_attention" for t in getattr(cfg, "layer_types", None) or []
    ):
        return "sliding-window or hybrid attention layers"
    params = inspect.signature(model.module.forward).parameters
    if "position_ids" not in params or not ({"cache", "past_key_values"} & set(params)):
        return "the model's forward takes no position_ids or cache"
    return _processors(model)


def _processors(model: LoadedModel) -> str | None:
    gen = getattr(model.module, "generation_config", None)
    for name, defaults in _PROCESSORS.items():
        if gen is not None and getattr(gen, name, None) not in defaults:
            return f"the checkpoint's generation_config sets {name}"
    return None


def layer_shapes(model: LoadedModel) -> list[LayerShape] | str:
    """KV heads and head size of each layer, read from one token through a `DynamicCache` (so any layout of
    heads the model has is measured, not guessed from its config); a reason string when the cache is not plain."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    params = inspect.signature(model.module.forward).parameters
    arg = "cache" if "cache" in params else "past_key_values"
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([[model.tokenizer.eos_token_id or 0]], device=model.device)
    with torch.inference_mode():
        model.module(input_ids=ids, use_cache=True, **{arg: cache})
    shapes = []
    for layer in cache.layers:
        if type(layer) is not DynamicLayer or layer.keys is None or layer.values is None:
            return f"cache layer {type(layer).__name__} is not plain attention"
        if layer.keys.shape != layer.values.shape:
            return "keys and values differ in shape"
        shapes.append(LayerShape(int(layer.keys.shape[1]), int(layer.keys.shape[3])))
    return shapes or "the model filled no cache layers"


@dataclass
class Prepared:
    """An engine sized for its model, not yet allocated: `nbytes` is what the caller accounts for it."""

    model: LoadedModel
    shapes: list[LayerShape]
    slots: int
    max_len: int
    nbytes: int

    def build(self, clock: Callable[[], float] = time.monotonic) -> Engine | None:
        """Allocate the cache and check the engine against a plain forward; None (logged) if it fails. On CUDA
        (unless the spec turns `cuda_graphs` off) the decode steps are captured as CUDA graphs (graphs.py)."""
        m = self.model
        try:
            engine = Engine(
                m,
                self.shapes,
                slots=self.slots,
                max_len=self.max_len,
                prefill_chunk=PREFILL_CHUNK.get(m.device.type, 128),
                clock=clock,
                prefill_wait_s=PREFILL_WAIT_S.get(m.device.type, 0.0),
            )
            problem = check(engine)
        except Exception as e:  # an allocation out of memory, a model the engine cannot drive
            log.warning("continuous batching for %s is off: %s", m.name, type(e).__name__, exc_info=True)
            return None
        if problem is not None:
            log.warning("continuous batching for %s is off: %s", m.name, problem)
            return None
        if m.device.type == "cuda" and getattr(m.spec, "cuda_graphs", True):
            graphs = DecodeGraphs(engine)
            try:
                ok = graphs.prepare()
            except Exception as e:
                log.warning("decode graphs for %s failed (%s): eager steps", m.name, type(e).__name__)
                ok = 0
            engine.graphs = graphs if ok else None
            log.info("%s: %d of %d decode step shapes captured as CUDA graphs", m.name, ok, len(graphs.steps))
        log.info(
            "continuous batching for %s: %d slots x %d tokens, %d KV bytes",
            m.name,
            self.slots,
            self.max_len,
            self.nbytes,
        )
        return engine


def prepare(model: LoadedModel, budget: int | None = None, used: int = 0) -> Prepared | None:
    """Size an engine for the model within its pool's `budget` (None: unlimited) of which the model itself
    takes `used` bytes (other models can be evicted for it, as for the weights), or None when the model stays on
    static batching (the reason is logged). Slots are the model's `max_batch_size`, fewer if memory is short."""
    room = None if budget is None else budget - used
    if not wanted(model):
        return None
    if model.config.is_encoder_decoder:
        return _prepare_seq2seq(model, room)
    reason = unsupported_reason(model)
    shapes = layer_shapes(model) if reason is None else reason
    if isinstance(shapes, str):
        log.info("%s stays on static batching: %s", model.name, shapes)
        return None
    max_len = min(model.max_length, MAX_SLOT_LEN)
    per_slot = SlotCache.nbytes(shapes, 1, max_len, model.dtype)
    slots = model.spec.batching.max_batch_size
    if room is not None:
        slots = min(slots, max(0, room) // per_slot - 1)  # one more row: the scratch row of padded steps
    if slots < 1:
        log.warning(
            "%s stays on static batching: no memory left for one KV slot of %d bytes", model.name, per_slot
        )
        return None
    return Prepared(model, shapes, slots, max_len, per_slot * (slots + 1))


@dataclass
class PreparedSeq2Seq:
    """An encoder-decoder engine: its caches grow as rows decode; `nbytes` is `slots` rows at full length."""

    model: LoadedModel
    slots: int
    nbytes: int

    def build(self, clock: Callable[[], float] = time.monotonic) -> Seq2SeqEngine | None:
        m = self.model
        try:
            engine = Seq2SeqEngine(m, slots=self.slots, cross_task=m.spec.batching.cross_task)
            problem = check_seq2seq(engine)
        except Exception as e:
            log.warning("continuous batching for %s is off: %s", m.name, type(e).__name__, exc_info=True)
            return None
        if problem is not None:
            log.warning("continuous batching for %s is off: %s", m.name, problem)
            return None
        log.info("continuous batching for %s (encoder-decoder): %d rows", m.name, self.slots)
        return engine


def _prepare_seq2seq(model: LoadedModel, room: int | None) -> PreparedSeq2Seq | None:
    reason = unsupported_reason(model)
    if reason is not None:
        log.info("%s stays on static batching: %s", model.name, reason)
        return None
    cfg = model.config
    layers = int(getattr(cfg, "num_decoder_layers", None) or getattr(cfg, "decoder_layers", None) or 1)
    d_model = int(getattr(cfg, "d_model", None) or getattr(cfg, "hidden_size", 0))
    width = int(getattr(cfg, "d_kv", 0) * getattr(cfg, "num_heads", 0)) or d_model
    length = min(model.max_length, MAX_SLOT_LEN)
    itemsize = torch.empty((), dtype=model.dtype).element_size()
    # Per row at full length: self and cross keys and values of every decoder layer, plus the encoder output.
    per_row = (4 * layers * width + d_model) * length * itemsize
    slots = model.spec.batching.max_batch_size
    if room is not None:
        slots = min(slots, max(0, room) // per_row)
    if slots < 1:
        log.warning(
            "%s stays on static batching: no memory left for one row of %d bytes", model.name, per_row
        )
        return None
    return PreparedSeq2Seq(model, slots, per_row * slots)


class _ProbeRow:
    streaming = False

    def emit(self, delta: str) -> None:
        return None

    def stop_reason(self) -> str | None:
        return None

    def generated(self) -> None:
        return None

    def finish(self, result: object) -> None:
        return None

    def fail(self, error: BaseException) -> None:
        raise error


def check(engine: Engine) -> str | None:
    """Two rows of different lengths, generated together, against a plain forward pass over the same tokens:
    an engine whose mask, positions or cache a model ignores gives logits far off (None when they agree)."""
    from hf_provider.runtime.tasks.genparams import GenParams

    m = engine.model
    ids = m.tokenizer("The harbour was rebuilt after the storm of the century")["input_ids"]
    prompts = [ids[:3] or [0, 0, 0], ids[:9] or [0] * 9]
    lives = []
    with torch.inference_mode():
        for p in prompts:
            rid = engine.add(p, GenParams(max_new_tokens=3), _ProbeRow())
            live = engine.rows[rid]
            live.trace = []
            lives.append(live)
        while engine.busy:
            engine.step()
        tol = 1e-3 if m.dtype == torch.float32 else 0.1
        for p, live in zip(prompts, lives, strict=True):
            assert live.trace is not None
            seq = torch.tensor([p + live.tokens[: len(live.trace) - 1]], device=m.device)
            ref = m.module(input_ids=seq).logits[0, len(p) - 1 :].float().cpu()
            got = torch.stack(live.trace)
            err = float((got - ref[: len(got)]).abs().max() / (ref.abs().max() + 1e-6))
            if not err <= tol:
                return f"its logits differ from a plain forward pass by {err:.3g} (relative)"
    return None


def check_seq2seq(engine: Seq2SeqEngine) -> str | None:
    """Two rows of different lengths through the engine against a plain forward pass over the same tokens (the
    decoder's positions, masks and caches the engine drives): None when their logits agree."""
    from hf_provider.runtime.tasks.genparams import GenParams

    m = engine.model
    ids = m.tokenizer("The harbour was rebuilt after the storm of the century")["input_ids"]
    prompts = [ids[:3] or [0, 0, 0], ids[:9] or [0] * 9]
    seen: list[list[torch.Tensor]] = [[], []]

    class _Handler:
        task = "text2text-generation"

        @staticmethod
        def result(row: dict, out: str | None = None) -> dict:
            return row

    real = engine._tokens

    def traced(key: str, logits: torch.Tensor, only: list[int] | None = None) -> int:
        rids = only if only is not None else list(engine.groups[key].rids)
        for rid, row in zip(rids, logits, strict=True):
            seen[rid - first].append(row.detach().cpu())
        return real(key, logits, only)

    first = engine._next_id
    engine._tokens = traced  # type: ignore[method-assign]
    try:
        with torch.inference_mode():
            for i, p in enumerate(prompts):
                engine.add(p, GenParams(max_new_tokens=3), _ProbeRow(), handler=_Handler, out_key="t")
                if i == 0:
                    engine.step()  # the second row joins a running one: a merge with padding on both sides
            while engine.busy:
                engine.step()
            tol = 1e-3 if m.dtype == torch.float32 else 0.1
            for i, p in enumerate(prompts):
                got = torch.stack(seen[i])
                toks = [int(t.argmax()) for t in seen[i]]
                dec = torch.tensor([[engine.start_token, *toks[:-1]]], device=m.device)
                ref = m.module(input_ids=torch.tensor([p], device=m.device), decoder_input_ids=dec).logits[0]
                ref = ref.float().cpu()
                err = float((got - ref[: len(got)]).abs().max() / (ref.abs().max() + 1e-6))
                if not err <= tol:
                    return f"its logits differ from a plain forward pass by {err:.3g} (relative)"
    finally:
        del engine._tokens
    return None
