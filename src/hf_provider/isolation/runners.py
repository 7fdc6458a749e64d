"""Crash isolation: a model's stage runner for each `isolation` mode, and what a fatal device error does to it.

- "thread" (the default): `ThreadRunner` is the in-process StageRunner, plus one rule: a fatal device error (a CUDA
  illegal memory access, a device-side assert, a launch failure) poisons this process's device context for good,
  so the model is marked failed (503 `model_failed`, /readyz degraded) instead of answering the same error to
  every later request. Unloading it (or restarting the server) clears the mark.
- "process": `ProcessRunner` sends each batch to the model's child process (isolation/procworker.py). The parent
  keeps parsing (tokenization) and batching; the child runs preprocess, forward and postprocess. When the child
  dies, the batch it held is retried once on the restarted worker where that is safe (everything but sampled
  generation, and a stream that already sent text), within the request's deadline and the worker's retry budget
  (resilience/retry.py); otherwise its requests get 503 `worker_crashed` at once. Batches queued behind it wait
  for the restart when their deadline allows it, and new requests are refused with `worker_crashed` while it is
  down, so a fallback (resilience/fallback.py) can serve them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from hf_provider.errors import DeviceFailed, ProviderError, WorkerCrashed
from hf_provider.isolation.child import pack_error
from hf_provider.isolation.procworker import ProcessWorker
from hf_provider.reporting.reports import classify
from hf_provider.resilience.retry import RetryBudget
from hf_provider.scheduling.worker import StageRunner

if TYPE_CHECKING:
    from hf_provider.resilience.backoff import Backoff
    from hf_provider.resilience.faults import FaultInjector
    from hf_provider.resilience.supervisor import Supervisor
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.scheduling.queue import Batch
    from hf_provider.spec import ModelSpec
    from hf_provider.types import RowControl

# CUDA runtime names of sticky errors (cudaErrorIllegalAddress, cudaErrorLaunchFailure...) besides the messages
# reporting.classify knows ("illegal memory access", "device-side assert", "unspecified launch failure").
_CUDA_STICKY = re.compile(
    r"cudaError(IllegalAddress|LaunchFailure|Assert|IllegalInstruction|MisalignedAddress)"
)


def is_device_fatal(exc: BaseException) -> bool:
    """True for an error after which the device context of this process cannot be trusted again."""
    if isinstance(exc, DeviceFailed):
        return False  # our own verdict, raised after the fact
    if type(exc).__name__ == "AcceleratorError" or _CUDA_STICKY.search(str(exc)):
        return True
    return classify(exc) == "device_fatal"


class ThreadRunner(StageRunner):
    """The in-process runner; a fatal device error marks the model failed (see the module docstring)."""

    def __init__(self, model: LoadedModel, *, supervisor: Supervisor, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.supervisor = supervisor
        self.failed: str | None = None  # the fatal error's type and message, once seen

    def _forward(self, batch: Batch, control: RowControl | None = None) -> None:
        if self.failed is not None:
            raise self._failed_error()
        try:
            super()._forward(batch, control)
        except BaseException as exc:
            if not is_device_fatal(exc):
                raise
            self.failed = f"{type(exc).__name__}: {exc}"
            # /readyz names it until the model is unloaded (ModelScheduler.close forgets its components)
            self.supervisor.mark_down(f"model/{self.model.name}", "device_fatal")
            raise self._failed_error() from exc

    def _failed_error(self) -> DeviceFailed:
        return DeviceFailed(
            f"model {self.model.name!r} failed: a fatal device error poisoned its device context; unload and "
            'load it again (or restart the server), or set isolation = "process" so it restarts by itself',
            model=self.model.name,
            retry_after=30.0,
        )

    def refusal(self) -> ProviderError | None:
        return self._failed_error() if self.failed is not None else None

    def view(self) -> dict[str, Any]:
        return {"isolation": "thread", "pid": os.getpid(), "restarts": 0} | (
            {"state": "failed", "error": self._failed_error().message} if self.failed else {}
        )


class ProcessRunner(StageRunner):
    """Runs each batch whole in the model's worker process (see the module docstring)."""

    def __init__(
        self,
        model: LoadedModel,
        worker: ProcessWorker,
        *,
        faults: FaultInjector | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        super().__init__(model, faults=faults, measure_memory=False)
        self.worker = worker
        self.budget = budget or RetryBudget()
        self.retried = 0  # batches served by a retry after a crash

    def _preprocess(self, batch: Batch) -> None:
        if self.faults is not None:
            self.faults.check(self.model.name, "preprocess")
        batch.data = [s.item for s in batch.slots]  # the child pads and collates: only token ids cross

    def _forward(self, batch: Batch, control: RowControl | None = None) -> None:
        inject = None
        if self.faults is not None:
            try:
                self.faults.check(self.model.name, "forward")
            except BaseException as exc:
                if not is_device_fatal(exc):
                    raise
                inject = pack_error(exc)  # raised inside the child, which then dies as after a real one
        t0 = time.perf_counter()
        results, timings = self._call(batch, control, inject)
        batch.outputs = results
        batch.timings.update({k: v for k, v in timings.items() if k != "forward"})
        batch.timings["forward"] = (
            time.perf_counter() - t0
        )  # the pass as the parent waits for it, IPC included

    def _call(self, batch: Batch, control: RowControl | None, inject: bytes | None) -> tuple[list, dict]:
        deadline = min(s.request.deadline for s in batch.slots)
        sampled = batch.handler.generative and bool(batch.params.get("do_sample"))
        counting = _Counting(control) if control is not None else None
        attempt = 0
        self.budget.first_attempt()
        while True:
            self._await_worker(deadline)
            try:
                return self.worker.call(batch.handler.task, batch.data, dict(batch.params), counting, inject)
            except WorkerCrashed:
                attempt += 1
                # Once, and never for what would differ or repeat: a sampled generation, a stream that sent text.
                if attempt > 1 or sampled or (counting is not None and counting.emitted):
                    raise
                if not self.budget.try_retry():
                    raise
                inject = None
                self.retried += 1

    def _await_worker(self, deadline: float) -> None:
        """Return when the worker serves; raise WorkerCrashed at once when the restart will not be done before
        the deadline (the caller hears in milliseconds, not when its deadline ends)."""
        w = self.worker
        if w.ready:
            return
        if time.monotonic() + w.eta_s() > deadline or not w.wait_ready(deadline):
            raise w.crashed_error()

    def _postprocess(self, batch: Batch) -> list[Any]:
        if self.faults is not None:
            self.faults.check(self.model.name, "postprocess")
        results = batch.outputs
        batch.data = batch.outputs = None
        return results

    def refusal(self) -> ProviderError | None:
        return None if self.worker.ready else self.worker.crashed_error()

    def view(self) -> dict[str, Any]:
        return {"isolation": "process", **self.worker.view(), "retried_batches": self.retried}

    def close(self) -> None:
        self.worker.close()


class _Counting:
    """A RowControl that remembers whether text was streamed (a batch that sent text is not retried)."""

    def __init__(self, inner: RowControl) -> None:
        self.inner, self.emitted = inner, False

    @property
    def streaming(self) -> bool:
        return self.inner.streaming

    def emit(self, row: int, delta: str) -> None:
        self.emitted = True
        self.inner.emit(row, delta)

    def stop_reason(self, row: int) -> str | None:
        return self.inner.stop_reason(row)

    def generated(self, rows: Sequence[int]) -> None:
        self.inner.generated(rows)


def start_isolated(
    spec: ModelSpec,
    path: str,
    commit: str | None,
    *,
    supervisor: Supervisor,
    faults: FaultInjector | None = None,
    backoff: Backoff | None = None,
) -> tuple[LoadedModel, ProcessRunner, float | None]:
    """Start the model's worker process; returns the parent's copy of the model (tokenizer, config and task
    handlers, no weights), its runner, and the quantization guard's figure. The budget accounts the child's
    weights as the child measured them plus the working estimate (memory/estimate.py): estimate-based, since the
    child's own allocator is not observed from here."""
    import torch

    from hf_provider.runtime.model import LoadedModel
    from hf_provider.runtime.tasks import build_handler
    from hf_provider.runtime.tasks.encoding import fast_encoder

    worker = ProcessWorker(
        spec, path, commit, supervisor=supervisor, backoff=backoff, threads=torch.get_num_threads()
    )
    d = worker.start()
    try:
        st = SimpleNamespace(max_seq_length=d["st_max_seq_length"]) if d["has_st"] else None
        model = LoadedModel(
            spec=spec,
            path=Path(path),
            commit=d["commit"],
            module=SimpleNamespace(generation_config=d["generation_config"]),  # type: ignore[arg-type]
            config=d["config"],
            tokenizer=d["tokenizer"],
            device=torch.device(d["device"]),
            dtype=getattr(torch, d["dtype"]),
            weight_bytes=d["weight_bytes"],
            architecture=d["architecture"],
            sentence_model=st,
            load_seconds=d["load_seconds"],
            fast_encoder=fast_encoder(d["tokenizer"]) if d["tokenizer"] is not None else None,
            image_processor=d.get("image_processor"),
        )
        for task, known in d["facts"].items():
            handler = build_handler(task, model, spec.defaults.get(task))
            handler.__dict__.update(known)  # the child's cached answers: parse here as it would there
            model.handlers[task] = handler
    except BaseException:
        worker.close()
        raise
    return model, ProcessRunner(model, worker, faults=faults), d["quantization_cosine"]


def runner_view(runner: Any) -> dict[str, Any]:
    """`isolation`, `pid`, `restarts` (and `state: failed` with its `error`) for /v1/admin/models."""
    view = getattr(runner, "view", None)
    return view() if view is not None else {}


def check_serving(scheduler: Any) -> None:
    """Raise the refusal of a model whose worker is down or whose device failed (before parsing)."""
    refusal = getattr(getattr(scheduler, "runner", None), "refusal", None)
    error = refusal() if refusal is not None else None
    if error is not None:
        raise error
