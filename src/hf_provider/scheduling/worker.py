"""The three stages of a batch (preprocess on CPU, forward on the device, postprocess on CPU), timed, with the
out-of-memory recovery hook. Threads live in `batcher.py`; this module is what runs on them."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch

from hf_provider.memory.measure import DevicePeak, HostPeak
from hf_provider.memory.oom import is_oom, run_with_recovery
from hf_provider.memory.working import BatchMemory
from hf_provider.reporting.reports import tag
from hf_provider.scheduling.mixed import batch_of
from hf_provider.scheduling.queue import Batch, Slot
from hf_provider.types import RowControl

if TYPE_CHECKING:
    from hf_provider.resilience.faults import FaultInjector
    from hf_provider.runtime.model import LoadedModel


class StageRunner:
    """Runs a batch's stages for one model. `evict` and `to_cpu` are the memory manager's recovery actions.
    An exception leaving a stage is tagged with the stage's name and batch size for its error report; `faults`
    (TESTING ONLY) raises chosen errors at the start of a stage, `fault` a real OOM for chosen batch sizes."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        evict: Callable[[], bool] | None = None,
        to_cpu: Callable[[], bool] | None = None,
        fault: FaultInjector | None = None,
        measure_memory: bool = True,
        faults: FaultInjector | None = None,
    ) -> None:
        self.model = model
        self.evict = evict
        self.to_cpu = to_cpu
        self.fault = fault
        self.faults = faults
        self.measure_memory = measure_memory
        self.oom_recoveries = 0  # batches that hit out-of-memory and went through recovery
        self.working: BatchMemory | None = None  # the batch's working memory, reserved for its forward pass
        self._host: HostPeak | None = None

    def preprocess(self, batch: Batch) -> None:
        try:
            self._preprocess(batch)
        except BaseException as e:
            tag(e, "preprocess", batch.size)
            raise

    def forward(self, batch: Batch, control: RowControl | None = None) -> None:
        try:
            self._forward(batch, control)
        except BaseException as e:
            tag(e, "forward", batch.size)
            raise

    def postprocess(self, batch: Batch) -> list[Any]:
        try:
            return self._postprocess(batch)
        except BaseException as e:
            tag(e, "postprocess", batch.size)
            raise

    def _preprocess(self, batch: Batch) -> None:
        if self.faults is not None:
            self.faults.check(self.model.name, "preprocess")
        t0 = time.perf_counter()
        batch.data = batch.handler.preprocess([s.item for s in batch.slots], batch.params)
        batch.timings["preprocess"] = time.perf_counter() - t0

    def _forward(self, batch: Batch, control: RowControl | None = None) -> None:
        if self.faults is not None:
            self.faults.check(self.model.name, "forward")
        device = self.model.device
        cuda = device.type == "cuda"
        meter = self._meter
        base = meter.begin() if meter is not None else 0
        t0 = time.perf_counter()
        if self.fault is not None:
            self.fault.check_batch(batch.size)
        working = self.working
        # a mixed batch (runtime/tasks/trunk.py) is estimated as its costliest task
        task = getattr(batch.handler, "memory_task", batch.handler.task)
        hold = working.hold(batch.size, _length(batch), task) if working else nullcontext()
        with hold, torch.inference_mode():
            batch.outputs = batch.handler.forward(batch.data, batch.params, control)
            if cuda:
                torch.cuda.synchronize(device)  # the pass's memory is in use until the device is done
        batch.timings["forward"] = time.perf_counter() - t0
        if meter is not None:
            batch.timings["peak_bytes"] = meter.peak_above(base)

    @property
    def _meter(self) -> HostPeak | DevicePeak | None:
        """Measures the pass's working memory on the model's current device (it can move to the CPU)."""
        if not self.measure_memory:
            return None
        device = self.model.device
        if device.type == "cuda":
            return DevicePeak(device)
        if self._host is None:
            self._host = HostPeak()
        return self._host

    def _postprocess(self, batch: Batch) -> list[Any]:
        if self.faults is not None:
            self.faults.check(self.model.name, "postprocess")
        t0 = time.perf_counter()
        results = batch.handler.postprocess(batch.data, batch.outputs, batch.params)
        batch.timings["postprocess"] = time.perf_counter() - t0
        batch.data = batch.outputs = None  # free activations before the next batch
        return results

    @staticmethod
    def recoverable(error: BaseException) -> bool:
        return is_oom(error)

    def recover(
        self,
        batch: Batch,
        error: BaseException,
        control_for: Callable[[list[Slot]], RowControl | None] | None = None,
    ) -> list[Any]:
        """Re-run the batch's items through split / evict / CPU fallback (memory.oom.run_with_recovery)."""
        self.oom_recoveries += 1
        batch.data = batch.outputs = None

        def run(slots: list[Slot]) -> list[Any]:
            sub = batch_of(slots, batch.formed_at)
            self.preprocess(sub)
            self.forward(sub, control_for(slots) if control_for is not None else None)
            out = self.postprocess(sub)
            for k, v in sub.timings.items():
                batch.timings[k] = batch.timings.get(k, 0.0) + v
            return out

        try:
            return run_with_recovery(list(batch.slots), run, evict=self.evict, to_cpu=self.to_cpu)
        except BaseException as e:
            tag(e, "forward", batch.size)
            raise


def _length(batch: Batch) -> int:
    """Padded length of a batch's rows for its working memory; a generation's grows by its new tokens."""
    length = batch.padded_tokens // max(1, batch.size)
    if batch.handler.generative:
        length += int(batch.params.get("max_new_tokens", 0) or 0)
    return length
