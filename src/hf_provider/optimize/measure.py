"""Timing of one variant through its task handler: p50 latency at batch 1 and throughput at the max batch.

Each timed call runs preprocess, forward and postprocess of a prepared batch (parsing is per request and the
same for every variant). The clock is injectable so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from hf_provider.optimize import guard
from hf_provider.runtime.tasks.base import BaseHandler


@dataclass(frozen=True)
class Timing:
    latency_ms_p50: float  # batch of 1
    throughput_per_s: float  # items per second at `batch`
    batch: int


def caller(handler: BaseHandler, n: int) -> Callable[[], object]:
    """One pass over a prepared batch of n probe inputs."""
    import torch

    inputs, params = guard.probe(handler, n)
    items, resolved, _ = handler.parse(inputs, params)

    def call() -> object:
        batch = handler.preprocess(items, resolved)
        with torch.inference_mode():
            out = handler.forward(batch, resolved)
        return handler.postprocess(batch, out, resolved)

    return call


def timed(call: Callable[[], object], repeats: int, clock: Callable[[], float]) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = clock()
        call()
        out.append(clock() - t0)
    return out


def measure(
    handler: BaseHandler,
    max_batch: int,
    *,
    repeats: int = 20,
    batch_repeats: int = 3,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    one, full = caller(handler, 1), caller(handler, max_batch)
    for _ in range(warmup):
        one()
        full()
    latency = statistics.median(timed(one, repeats, clock))
    spent = sum(timed(full, batch_repeats, clock))
    return Timing(
        latency * 1000.0, max_batch * batch_repeats / spent if spent > 0 else float("inf"), max_batch
    )
