"""CUDA graphs for encoder forward passes: one replay per batch instead of hundreds of kernel launches from Python.

Why: an encoder's forward pass on a GPU is bound by Python, not by the device. BERT-base launches several hundred
kernels per pass, each from Python under the GIL; with the event loop and the other stage threads taking the GIL
too, the served forward pass took 3.5x the raw one on an H200 (bench/gpu_encoder.py). A captured graph replays all
of them with one call.

How: a batch is padded up to a bucket (batch size to a power of two, length to a multiple of LENGTH_STEP), so a few
graphs cover every shape; a bucket's graph is captured the first time it is needed, on the thread that replays it,
after a warm-up pass on a side stream (as torch.cuda.graphs' documentation asks). All graphs share one memory pool:
they never run concurrently (one forward thread per model), so the intermediates of one graph may reuse another's.
Padded rows attend to their first position only and are dropped from the output; padded positions are masked, as
in any padded batch. The output is copied out of the graph's static buffer before the next replay can overwrite
it. A bucket whose capture fails (an operation that cannot be captured) is run eagerly from then on, and so is a
batch larger than the largest bucket; `torch.cuda.graphs` and transformers' capture checks do the heavy lifting,
what is written here is only the bucketing and the bookkeeping that neither library provides.

Runs on any device: off CUDA (`capture=False`) a bucket's "graph" is the eager function at the bucket's shape, which
is what the tests use to check that padding to buckets does not change the results.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)

LENGTH_STEP = 32  # sequence lengths are padded to a multiple of this
MAX_GRAPHS = 48  # captured graphs per model at most; past it, new shapes run eagerly


def bucket(n: int, step: int | None = None) -> int:
    """Batch sizes go to the next power of two, lengths (with `step`) to the next multiple of `step`."""
    if step:
        return -(-n // step) * step
    return 1 << max(0, (n - 1).bit_length())


class _Graph:
    def __init__(self, inputs: dict[str, torch.Tensor], output: torch.Tensor, graph: Any) -> None:
        self.inputs, self.output, self.graph = inputs, output, graph


class GraphRunner:
    """Runs `fn(batch) -> Tensor[batch, ...]` through captured graphs, one per (batch, length) bucket.

    `fills` gives each input's padding value (input_ids: the pad token id; masks and token types: 0). Returns None
    when the batch must run eagerly (the caller then calls `fn` itself).
    """

    def __init__(
        self,
        fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        fills: Mapping[str, int],
        *,
        max_batch: int,
        max_length: int,
        capture: bool,
    ) -> None:
        self.fn = fn
        self.fills = dict(fills)
        self.max_batch = bucket(max_batch)
        self.max_length = max_length
        self.capture = capture
        self._graphs: dict[tuple[int, int], _Graph | None] = {}  # None: this bucket runs eagerly
        self._pool: Any = None
        self._lock = threading.Lock()  # captures and replays of one model never overlap
        self.replays = 0
        self.captured = 0
        self.failed = 0

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        ids = batch["input_ids"]
        rows, length = int(ids.shape[0]), int(ids.shape[1])
        key = (bucket(rows), min(bucket(length, LENGTH_STEP), max(self.max_length, length)))
        if key[0] > self.max_batch:
            return None
        with self._lock:
            g = self._graphs.get(key, False)
            if g is False:
                g = self._graphs[key] = self._make(key, batch) if len(self._graphs) < MAX_GRAPHS else None
            if g is None:
                return None
            for name, static in g.inputs.items():
                static.fill_(self.fills.get(name, 0))
                static[:rows, :length].copy_(batch[name], non_blocking=True)
            if rows < key[0] and "attention_mask" in g.inputs:
                # padded rows attend to one position: no empty softmax
                g.inputs["attention_mask"][rows:, 0] = 1
            if g.graph is not None:
                g.graph.replay()
                out = g.output[:rows].clone()  # the next replay overwrites the static output
            else:
                out = self.fn(g.inputs)[:rows]
            self.replays += 1
            return out

    def _make(self, key: tuple[int, int], like: Mapping[str, torch.Tensor]) -> _Graph | None:
        inputs = {
            name: torch.full(key, self.fills.get(name, 0), dtype=t.dtype, device=t.device)
            for name, t in like.items()
            if isinstance(t, torch.Tensor) and t.dim() == 2
        }
        if "attention_mask" in inputs:
            inputs["attention_mask"][:, 0] = 1
        if not self.capture:
            return _Graph(inputs, torch.empty(0), None)
        try:
            graph = self._capture(inputs)
        except Exception as e:  # an operation that cannot be captured: this bucket runs eagerly from now on
            self.failed += 1
            log.warning("CUDA graph capture for batch %d x length %d failed, running eagerly: %s", *key, e)
            torch.cuda.synchronize()
            return None
        self.captured += 1
        return graph

    def _capture(self, inputs: dict[str, torch.Tensor]) -> _Graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up: lazy initialisation and kernel choice happen outside the capture
                self.fn(inputs)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self.fn(inputs)
        return _Graph(inputs, output, graph)
