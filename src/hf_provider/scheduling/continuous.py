"""The scheduler's side of continuous batching: one supervised thread (`generate/M`) that feeds the model's
`GenerationEngine` (runtime/continuous) from the queue and runs its steps.

It replaces the collect / forward / post stages for a model with an engine: between two steps it takes as many
queued items as the engine has free slots (service order, any parameters; deadlines expired first), so a request
joins the running batch at the next token, and each row answers its own request item (`item_done`) the step it
ends. Admission, priorities, deadlines and settlement stay the scheduler's; a cancelled or timed-out request's
rows leave at the next step (the engine asks `stop_reason` before each). A request for another task of the same
model (the engine does not take it) runs through the stage runner inline, as one batch. A failed step fails the
rows it held with the real error (each request settled once) and the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.scheduling.queue import Batch, Slot

if TYPE_CHECKING:
    from hf_provider.resilience.supervisor import Supervisor
    from hf_provider.scheduling.observer import SchedulerObserver
    from hf_provider.scheduling.queue import BatchQueue
    from hf_provider.scheduling.shedding import ServiceRate
    from hf_provider.scheduling.worker import StageRunner
    from hf_provider.types import GenerationEngine

log = logging.getLogger(__name__)


class _RequestRow:
    """A `types.GenRow`: one item of a request, running in the engine."""

    __slots__ = ("_sched", "ended", "slot", "started")

    def __init__(self, sched: ContinuousStage, slot: Slot, started: float) -> None:
        self._sched = sched
        self.slot = slot
        self.started = started
        self.ended = False  # counted out of the running items (once, however the row ends)

    @property
    def streaming(self) -> bool:
        return self.slot.request.streaming

    def emit(self, delta: str) -> None:
        self.slot.request.emit(delta, self._sched.clock())

    def stop_reason(self) -> str | None:
        reason = self.slot.request.stop_reason(self._sched.clock())
        if reason is not None:
            self._sched._row_ended(self, ok=False)
        return reason

    def finish(self, result: Any) -> None:
        self._sched._row_ended(self, ok=True)
        self.slot.request.item_done(self.slot.index, result, self._sched.clock())

    def fail(self, error: BaseException) -> None:
        self._sched._row_ended(self, ok=False)
        self.slot.request.fail(error, self._sched.clock())


class ContinuousStage:
    """Mixed into `ModelScheduler`, which sets these attributes."""

    name: str
    clock: Callable[[], float]
    observer: SchedulerObserver
    supervisor: Supervisor
    runner: StageRunner
    rate: ServiceRate
    engine: GenerationEngine | None
    batches: int
    last_batch_sizes: list[int]
    _queue: BatchQueue
    _cv: threading.Condition
    _closed: bool
    _running_items: int

    if TYPE_CHECKING:

        def _expire_due(self, now: float) -> None: ...
        def _control(self, slots: list[Slot]) -> Any: ...
        def _tokens_generated(self, task: str) -> Callable[[int], None]: ...
        def _resolve(self, batch: Batch, results: list[Any]) -> None: ...
        def _fail(self, batch: Batch, error: BaseException) -> None: ...

    def _continuous_once(self) -> bool:
        engine = self.engine
        assert engine is not None
        slots = self._take_rows(engine.free_slots, idle=not engine.busy)
        if slots is None:
            return False
        now = self.clock()
        inline: list[Slot] = []
        for s in slots:
            req = s.request
            if not req.mark_running():
                self._running_items_done(1)
            elif not engine.accepts(req.handler):
                inline.append(s)
            else:
                try:
                    engine.add_item(req.handler, s.item, req.params, _RequestRow(self, s, now))
                except Exception as e:  # a row that cannot fit a slot: its request fails, the others go on
                    self._running_items_done(1)
                    req.fail(e, now)
        if inline:
            self._run_inline(inline)
        if engine.busy:
            self._step(engine)
        return True

    def _take_rows(self, free: int, *, idle: bool) -> list[Slot] | None:
        """Up to `free` queued items; waits for work only while the engine is idle. None: closed and drained."""
        with self._cv:
            while True:
                if len(self._queue) and free > 0:
                    now = self.clock()
                    self._expire_due(now)
                    slots = self._queue.take_first(now, free)
                    if slots:
                        self._running_items += len(slots)
                        depth = len(self._queue)
                        break
                    continue
                if not idle:
                    return []
                if self._closed:
                    return None
                self._cv.wait()
        self.supervisor.call("observer", self.observer.queue_depth, self.name, depth)
        return slots

    def _step(self, engine: GenerationEngine) -> None:
        t0 = time.perf_counter()
        try:
            with FOREGROUND.forward_pass():
                made = engine.step(self._tokens_generated("text-generation"))
        except Exception as e:
            log.warning("a generation step of %s failed: %s", self.name, type(e).__name__)
            engine.abort(e)
            return
        dt = time.perf_counter() - t0
        if made:
            self.batches += 1
            self.last_batch_sizes = [*self.last_batch_sizes[-255:], made]
            self.supervisor.call(
                "observer",
                self.observer.batch_done,
                self.name,
                "text-generation",
                made,
                made,
                0.0,
                0.0,
                dt,
                0.0,
                None,
            )

    def _row_ended(self, row: _RequestRow, *, ok: bool) -> None:
        if row.ended:
            return
        row.ended = True
        self._running_items_done(1)
        if ok:
            self.rate.observe(1, row.started, self.clock())

    def _running_items_done(self, n: int) -> None:
        with self._cv:
            self._running_items -= n

    def _run_inline(self, slots: list[Slot]) -> None:
        """Items the engine does not take (another task of the model): one batch per request, through the
        stage runner as the static stages would run it."""
        groups: dict[int, list[Slot]] = {}
        for s in slots:
            groups.setdefault(id(s.request), []).append(s)
        for group in groups.values():
            req = group[0].request
            batch = Batch(slots=group, handler=req.handler, params=req.params, formed_at=self.clock())
            batch.started = batch.decided = batch.formed_at
            batch.counted = len(group)
            try:
                self.runner.preprocess(batch)
                with FOREGROUND.forward_pass():
                    self.runner.forward(batch, self._control(group))
                results = self.runner.postprocess(batch)
            except Exception as e:
                self._fail(batch, e)
                continue
            self._resolve(batch, results)
