"""CUDA graphs for the decode step: one replay instead of a few hundred kernel launches from Python.

Why: a small decoder's decode step on a GPU is bound by launching kernels from Python (GPT-2 124M: about 250
per step), so steps cost about the same for 1 row or 128, and a 256-token request takes 256 of them. A captured
graph replays the whole step with one call.

How: the step is padded to a bucket (rows to a power of two up to the slot count, keys to a multiple of
`KV_STEP`), so a few graphs cover every step; they are all captured when the engine is built (its slots are all
free then), each checked against the eager step on the same inputs, sharing one memory pool (they never run
concurrently). The step's inputs live in one static buffer (token ids, positions, live row count) filled with
one copy per step; the mask and the write positions are computed inside the graph. Padding rows write their
keys to a scratch slot past the last real one and attend to their position 0 only. A bucket whose capture or
check fails runs eagerly, as does every step when CUDA graphs are off (`ModelSpec.cuda_graphs`) or off CUDA.

`capture=False` runs the same padded function eagerly at the bucket's shape: the tests use it on the CPU to check
that padding, the scratch slot and the in-graph mask do not change a single token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hf_provider.runtime.continuous.cache import CachePlan

if TYPE_CHECKING:
    from hf_provider.runtime.continuous.engine import Engine

log = logging.getLogger(__name__)

KV_STEP = 128  # key lengths of captured steps are multiples of this (at most the slot length)


@dataclass(eq=False)
class _Step:
    rows: int  # padded row count
    kv_len: int
    buf: torch.Tensor  # [2 * rows + 1] int64: ids, positions, live row count
    out: torch.Tensor | None = None
    graph: Any = None


class DecodeGraphs:
    def __init__(self, engine: Engine, *, capture: bool = True) -> None:
        self.engine = engine
        self.capture = capture
        self.scratch = engine.slots  # the cache has one row more than the slots: padding rows write there
        self.steps: dict[tuple[int, int], _Step | None] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self._host: dict[int, torch.Tensor] = {}

    def bucket(self, n: int, kv: int) -> tuple[int, int]:
        rows = min(1 << max(0, (n - 1).bit_length()), self.engine.slots)
        return rows, min(-(-kv // KV_STEP) * KV_STEP, self.engine.max_len)

    def buckets(self) -> list[tuple[int, int]]:
        out, rows = [], 1
        while True:
            rows = min(rows, self.engine.slots)
            for kv in range(KV_STEP, self.engine.max_len + KV_STEP, KV_STEP):
                out.append(self.bucket(rows, min(kv, self.engine.max_len)))
            if rows == self.engine.slots:
                return sorted(set(out))
            rows *= 2

    def prepare(self) -> int:
        """Build (capture and check) every bucket's step; returns how many work. Only while no row runs."""
        return sum(self._build(b) is not None for b in self.buckets())

    # one step -----------------------------------------------------------------------------------------------
    def run(self, ids: list[int], pos: list[int]) -> torch.Tensor | None:
        """Logits [len(ids), vocab] of a decode step, or None when this step's bucket runs eagerly."""
        n = len(ids)
        key = self.bucket(n, max(pos) + 1)
        if key not in self.steps:
            self._build(key)
        step = self.steps.get(key)
        if step is None:
            return None
        self._load(step, ids, pos)
        if step.graph is not None:
            step.graph.replay()
            assert step.out is not None
            out = step.out
        else:
            out = self._forward(step)
        return out[:n].float().clone()  # the graph's output is overwritten by its next replay

    def _load(self, step: _Step, ids: list[int], pos: list[int]) -> None:
        rows, n = step.rows, len(ids)
        host = self._host.get(rows)
        if host is None:
            host = torch.zeros(2 * rows + 1, dtype=torch.long)
            if self.capture:
                host = host.pin_memory()
            self._host[rows] = host
        host.zero_()
        host[:n] = torch.tensor(ids)
        host[rows : rows + n] = torch.tensor(pos)
        host[2 * rows] = n
        step.buf.copy_(host, non_blocking=True)

    def _forward(self, step: _Step) -> torch.Tensor:
        """The padded decode step on `step.buf` (what the graph captures)."""
        e, rows = self.engine, step.rows
        ids = step.buf[:rows].view(rows, 1)
        pos = step.buf[rows : 2 * rows].view(rows, 1)
        idx = e._range(rows)
        slot = torch.where(idx < step.buf[2 * rows], idx, self.scratch)
        plan = CachePlan(idx, idx * 0, slot, pos[:, 0], step.kv_len, lo=0, hi=rows)
        return e._run(ids, pos, e._mask(pos, step.kv_len), plan)

    # building -----------------------------------------------------------------------------------------------
    def _build(self, key: tuple[int, int]) -> _Step | None:
        rows, kv_len = key
        e = self.engine
        step = _Step(rows, kv_len, torch.zeros(2 * rows + 1, dtype=torch.long, device=e.device))
        self.steps[key] = None
        (
            e._range(rows),
            e._range(kv_len),
        )  # created outside any capture: a graph's tensors hold no data until replay
        try:
            with torch.inference_mode():
                if self.capture:
                    self._capture(step)
                if not self._agrees(step):
                    log.warning("decode graph %s differs from the eager step; it runs eagerly", key)
                    return None
        except Exception as exc:  # an operation that cannot be captured: this bucket runs eagerly
            e.cache.plan = None
            log.warning("decode graph %s not captured (%s); it runs eagerly", key, type(exc).__name__)
            return None
        self.steps[key] = step
        return step

    def _capture(self, step: _Step) -> None:
        step.buf.zero_()  # no live rows: warm-up passes write only to the scratch slot
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(step)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (other models on this GPU) may launch work while this one captures.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            step.out = self._forward(step)
        step.graph = graph

    def _agrees(self, step: _Step) -> bool:
        """The step against the eager path on the same inputs (all slots are free while buckets are built)."""
        e = self.engine
        n = step.rows
        gen = torch.Generator().manual_seed(n * 7919 + step.kv_len)
        vocab = int(e.module.get_input_embeddings().weight.shape[0])
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        pos = torch.randint(0, step.kv_len, (n,), generator=gen).tolist()
        pos[0] = step.kv_len - 1
        self._load(step, ids, pos)
        if step.graph is not None:
            step.graph.replay()
            assert step.out is not None
            got = step.out.float().clone()
        else:
            got = self._forward(step).float()
        idx = e._range(n)
        p = torch.tensor(pos, device=e.device).view(n, 1)
        plan = CachePlan(idx, idx * 0, idx, p[:, 0], step.kv_len, lo=0, hi=n)
        ref = e._run(torch.tensor(ids, device=e.device).view(n, 1), p, e._mask(p, step.kv_len), plan)
        err = float((got - ref).abs().max() / (ref.abs().max() + 1e-6))
        return err <= (1e-4 if e.model.dtype == torch.float32 else 2e-2)
