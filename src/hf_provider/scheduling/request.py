"""Request: one call to a model, owned by its scheduler from submit to settlement.

States go queued -> running -> settled; the outcome is one of `types.OUTCOMES`. Whatever ends a request (its
last item's result, a failed batch, a cancel from the caller's thread, a deadline seen by a timer or by a stage
thread) goes through `_settle`, which wins exactly once under the request's lock. The winner closes the stream,
calls the scheduler's `on_settle` (in-flight count, queue removal, then one `types.Outcome` to the recorder that
metrics, history, reports, breakers and traces listen to) and completes the future.
Losers return False and do nothing, so completion and cancellation can race from any threads.

The future is put in the running state at creation: `Future.cancel()` then cannot bypass settlement (asyncio's
`wrap_future` cancels the concurrent future when the awaiting task is cancelled); cancellation goes through
`Request.cancel()` instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from hf_provider.context import CALL, PIPELINE_STEP, REQUEST_ID, TRACE
from hf_provider.errors import Cancelled, DeadlineExceeded
from hf_provider.reporting.reports import tag
from hf_provider.types import DeltaSink, Item, TaskHandler

log = logging.getLogger(__name__)

QUEUED, RUNNING, SETTLED = "queued", "running", "settled"


class Request:
    __slots__ = (
        "_lock",
        "_on_settle",
        "_sink",
        "arrived",
        "deadline",
        "fallback_reason",
        "future",
        "generated",
        "handler",
        "http",
        "items",
        "key",
        "model",
        "outcome",
        "params",
        "pipeline_step",
        "priority",
        "remaining",
        "request_id",
        "results",
        "revision",
        "settled_at",
        "single",
        "slots",
        "state",
        "submitted",
        "ticket",
        "trace",
    )

    def __init__(
        self,
        handler: TaskHandler,
        items: list[Item],
        params: dict[str, Any],
        *,
        key: Hashable,
        single: bool,
        priority: int = 0,
        submitted: float = 0.0,
        deadline: float = float("inf"),
        sink: DeltaSink | None = None,
        model: str = "",
        on_settle: Callable[[Request, str, BaseException | None], None] | None = None,
    ) -> None:
        self.handler = handler
        self.items = items
        self.params = params
        self.key = key
        self.single = single
        self.priority = priority
        self.submitted = submitted
        self.deadline = deadline
        self.model = model
        # the HTTP request's id, for its error report (None outside a server)
        self.request_id = REQUEST_ID.get()
        # (pipeline, step) when a pipeline's step submitted it (pipelines/run.py): its error report names them
        self.pipeline_step = PIPELINE_STEP.get()
        # Who set its deadline, and from when: an HTTP request's counts from its arrival (X-Request-Timeout), a
        # Python call's from just before its submission (timeout=); its message names the one the caller can set.
        call = CALL.get()
        self.http = call is not None
        self.arrived = submitted if call is None else min(call.arrived, submitted)
        self.results: list[Any] = [None] * len(items)
        self.remaining = len(items)
        self.generated = 0  # tokens generated for it so far (RowControl.generated; one writer: its stage)
        self.slots: list[Any] = []  # queue.Slot objects, set when queued
        self.state = QUEUED
        self.outcome: str | None = None
        self.ticket: Any = (
            None  # the model's circuit-breaker ticket (resilience/breaker.py), judged at settlement
        )
        self.settled_at: float | None = None
        # why a fallback serves this request (resilience/fallback.py), set by the Provider; None: the model asked
        self.fallback_reason: str | None = None
        # the commit (or revision) of the version that serves it, set by the Provider: x-hfp-revision
        self.revision: str | None = None
        self.future: Future = Future()
        self.future.set_running_or_notify_cancel()
        # Its spans (observability/tracing.py), made at settlement; None unless this request is traced.
        self.trace = None if (t := TRACE.get()) is None else t.request(submitted)
        if self.trace is not None and sink is not None:
            sink = self.trace.wrap(sink, time.monotonic)
        self._sink = sink
        self._on_settle = on_settle
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        """Its budget: input tokens plus the new tokens it may generate (admission, queued work)."""
        return sum(i.n_tokens for i in self.items)

    @property
    def input_tokens(self) -> int:
        return sum(i.n_tokens - i.new_tokens for i in self.items)

    @property
    def served_by(self) -> str:
        """The model that serves the request (a fallback's name when `fallback_reason` is set)."""
        return self.model

    @property
    def settled(self) -> bool:
        return self.state == SETTLED

    @property
    def streaming(self) -> bool:
        return self._sink is not None

    # the future's view, so a Request is the caller's handle -------------------------------------------------
    def result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self.future.exception(timeout)

    def done(self) -> bool:
        return self.future.done()

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        self.future.add_done_callback(fn)

    # transitions --------------------------------------------------------------------------------------------
    def mark_running(self) -> bool:
        """queued -> running when a batch takes one of its items; False once settled."""
        with self._lock:
            if self.state == SETTLED:
                return False
            self.state = RUNNING
        if self.trace is not None:
            self.trace.running(time.monotonic())
        return True

    def item_done(self, index: int, result: Any, now: float) -> bool:
        """Record one item's result; settles ok with the last one. False when the request had already ended."""
        with self._lock:
            if self.state == SETTLED:
                return False
            self.results[index] = result
            self.remaining -= 1
            if self.remaining:
                return False
        # A task whose answer is more than its items' results side by side (a ranking, labels grouped per
        # input) assembles it here, once, from all of them; a failure there fails this request alone.
        assemble = getattr(self.handler, "assemble", None)
        try:
            result = (
                assemble(self.results, self.params, self.single)
                if assemble is not None
                else (self.results[0] if self.single else self.results)
            )
        except Exception as exc:
            return self._settle("error", now, error=exc)
        return self._settle("ok", now, result=result)

    def fail(self, error: BaseException, now: float, outcome: str = "error") -> bool:
        return self._settle(outcome, now, error=error)

    def cancel(self, now: float, reason: str = "the caller went away") -> bool:
        """The caller gave up (client disconnected, asyncio cancellation, stream closed early)."""
        return self._settle(
            "cancelled", now, error=Cancelled(f"request cancelled: {reason}", model=self.model)
        )

    def expire(self, now: float) -> bool:
        """The deadline passed: queued work is dropped, a running generation row stops at its next token."""
        return self._settle("timed_out", now, error=self.deadline_error())

    def deadline_error(self) -> DeadlineExceeded:
        task = getattr(self.handler, "task", None)
        length = max(self.deadline - self.arrived, 0.0)
        longer = "send a longer X-Request-Timeout header" if self.http else "pass a longer timeout="
        return DeadlineExceeded(
            f"{self.model}/{task} did not finish within its deadline of {length:.3g}s; {longer} (the server's "
            "request_timeout_s caps it) or fewer inputs",
            model=self.model,
            task=task,
        )

    def check_deadline(self, now: float) -> bool:
        """True when the request is (now) settled; expires it first if its deadline has passed."""
        if self.state != SETTLED and now >= self.deadline:
            self.expire(now)
        return self.state == SETTLED

    def stop_reason(self, now: float) -> str | None:
        """For a running generation row: why it should stop now ("cancelled", "timeout", "error"), or None."""
        if not self.check_deadline(now):
            return None
        return {"timed_out": "timeout", "ok": None}.get(self.outcome or "", self.outcome)

    # streaming ----------------------------------------------------------------------------------------------
    def emit(self, delta: str, now: float) -> None:
        """Hand a delta to the sink unless the request has ended. A sink that raises fails this request only
        (its row then stops at the next step); it never reaches the stage thread."""
        with self._lock:
            sink = self._sink if self.state != SETTLED else None
            if sink is None:
                return
            try:
                sink(delta)
                return
            except Exception as exc:
                error = exc
        tag(error, "stream")
        log.warning(
            "stream sink of a %s request raised %s; failing that request", self.model, type(error).__name__
        )
        self.fail(error, now)

    # settlement ---------------------------------------------------------------------------------------------
    def _settle(
        self, outcome: str, now: float, *, result: Any = None, error: BaseException | None = None
    ) -> bool:
        with self._lock:
            if self.state == SETTLED:
                return False
            was = self.state
            self.state, self.outcome, self.settled_at = SETTLED, outcome, now
            sink, self._sink = self._sink, None
        # Outside the lock: the sink, the future's callbacks and on_settle may take other locks.
        if sink is not None:
            try:
                sink(None)
            except Exception:
                log.warning("closing the stream sink of a %s request raised", self.model, exc_info=True)
        # Accounted before the future completes: a caller that sees the result also sees the in-flight count
        # released and the outcome recorded.
        if self._on_settle is not None:
            try:
                self._on_settle(self, was, error)
            except Exception:
                log.exception("settling a %s request failed in its accounting", self.model)
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)
        return True
