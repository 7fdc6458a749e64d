"""The scheduler's queued-token signal (the autoscaling policy's measure of generation work): the token budget
of every queued generation item, nothing for encoder models, nothing for what already runs.

No sleeps: the forward pass is held on an event, so what is queued is known exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.worker import StageRunner
from hf_provider.spec import BatchingSpec
from hf_provider.types import Item, RowControl

WAIT = 10.0


class Held:
    """A handler whose forward pass waits on `gate`; items cost `n_tokens` each (for a generative handler:
    prompt + max_new_tokens, as the real ones size them)."""

    task = "embeddings"
    streaming = False

    def __init__(self, generative: bool) -> None:
        self.generative = generative
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.prepared = threading.Semaphore(0)  # one release per batch the collector took and preprocessed

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        return [Item(x, n) for x, n in inputs], dict(params), False

    def batch_key(self, params: Mapping[str, Any]) -> Any:
        return ()

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        self.prepared.release()
        return [i.data for i in items]

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        self.entered.set()
        assert self.gate.wait(WAIT)
        return batch

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return outputs


def _scheduler() -> ModelScheduler:
    spec = SimpleNamespace(batching=BatchingSpec(max_wait_ms=0, max_batch_size=1))
    model = SimpleNamespace(name="m", spec=spec, commit=None, device=torch.device("cpu"))
    return ModelScheduler(
        model,  # type: ignore[arg-type]
        runner=StageRunner(model, measure_memory=False),  # type: ignore[arg-type]
        supervisor=Supervisor(),
    )


def _submit(sched: ModelScheduler, h: Held, inputs: list[tuple[str, int]]):
    items, params, single = h.parse(inputs, {})
    return sched.submit(h, items, params, single=single)


def test_queued_tokens_count_queued_generation_items_only() -> None:
    sched = _scheduler()
    gen, enc = Held(generative=True), Held(generative=False)
    try:
        assert sched.queued_tokens() == 0
        running = _submit(sched, gen, [("x", 9999)])
        assert gen.entered.wait(WAIT)  # taken off the queue and running: no longer queued work
        waiting = _submit(sched, gen, [("y", 5000)])
        # the collector took it and waits, with it, for the device: it can take nothing more meanwhile
        assert gen.prepared.acquire(timeout=WAIT) and gen.prepared.acquire(timeout=WAIT)
        assert sched.queued_tokens() == 0
        few_but_long = _submit(sched, gen, [("a", 100 + 2000), ("b", 100 + 2000)])
        short = _submit(sched, gen, [("c", 12 + 8)])
        encoder = _submit(sched, enc, [("d", 300)])  # an encoder's prompt tokens are not generation work
        assert sched.queue_depth == 4
        assert sched.queued_tokens() == 2 * 2100 + 20
        assert short.cancel(sched.clock())  # leaves the queue, and the signal with it
        assert sched.queued_tokens() == 2 * 2100
    finally:
        gen.gate.set()
        enc.gate.set()
    for req in (running, waiting, few_but_long, encoder):
        req.result(WAIT)
    assert sched.queued_tokens() == 0
    sched.close()
