"""Dynamic batching for one loaded model: a queue, then three stages on their own supervised threads.

    submit() -> BatchQueue -> [collect + preprocess] -> [forward] -> [postprocess + settle requests]

Batches are bound late: while the device is busy the collector keeps waiting (unless a full batch is queued), so
under load each batch holds everything that queued during the previous forward pass instead of whatever arrived in
the first milliseconds; while the device is idle a batch leaves after at most `max_wait_ms`. A one-slot hand-off
lets a full batch be preprocessed while the previous one computes.

Every request is a `Request` owned by this scheduler and settled exactly once (scheduling/request.py); `_on_settle`
is the one place that releases the in-flight count, takes a settled request's items out of the queue and records
the outcome. Admission refuses at once what the measured service rate cannot serve within the request's deadline
(scheduling/shedding.py); a request past its deadline, or cancelled, is dropped before its forward pass.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.errors import ProviderError
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.scheduling.admit import Admission
from hf_provider.scheduling.continuous import ContinuousStage
from hf_provider.scheduling.observer import NullObserver, SchedulerObserver
from hf_provider.scheduling.queue import Batch, BatchQueue, Slot
from hf_provider.scheduling.request import Request
from hf_provider.scheduling.rows import BatchRows
from hf_provider.scheduling.shedding import RetryAfter, ServiceRate
from hf_provider.types import DeltaSink, GenerationEngine, Item, RowControl, TaskHandler

if TYPE_CHECKING:
    from hf_provider.reporting.reporter import Reporter
    from hf_provider.resilience.breaker import Breaker
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.scheduling.worker import StageRunner

log = logging.getLogger(__name__)
_STOP = object()
_REPORTED = frozenset({"error", "rejected", "timed_out"})  # cancelled: the caller left, nothing failed
GENERATION_WAIT_S = 0.050  # longest a generation batch follows a burst of arrivals
BURST_GAP_S = 0.003  # a burst ends when no request arrived for this long


#: Schedulers not closed yet, stopped at interpreter exit (below).
_open: weakref.WeakSet[ModelScheduler] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """A program that ends (or dies of an uncaught exception) without closing its Provider: stop the stage
    threads before the interpreter finalizes. A daemon thread still inside a torch call then would take the
    process down with "terminate called without an active exception" (SIGABRT) instead of a clean exit."""
    for sched in list(_open):
        sched.abandon("the process is exiting")


class ModelScheduler(Admission, ContinuousStage):
    def __init__(
        self,
        model: LoadedModel,
        *,
        observer: SchedulerObserver | None = None,
        runner: StageRunner | None = None,
        clock: Callable[[], float] = time.monotonic,
        supervisor: Supervisor | None = None,
        on_done: Callable[[], None] | None = None,
        reporter: Reporter | None = None,
        breaker: Breaker | None = None,
        engine: GenerationEngine | None = None,
    ) -> None:
        if runner is None:
            from hf_provider.scheduling.worker import StageRunner

            runner = StageRunner(model)
        b = model.spec.batching
        self.model = model
        self.name = model.name
        self.observer = observer or NullObserver()
        self.runner = runner
        self.clock = clock
        self.supervisor = supervisor or Supervisor()
        self.on_done = on_done  # called after each settlement (keep-alive idles from a request's end)
        self.reporter = reporter  # error reports of failed requests, made at settlement
        self.breaker = breaker  # the model's circuit breaker: the Provider asks it, settlement gives verdicts
        self.engine = engine  # continuous batching (scheduling/continuous.py) replaces the three stages
        self._max_wait_s = None if b.max_wait_ms is None else b.max_wait_ms / 1000.0
        self.max_queue = b.max_queue
        self._queue = BatchQueue(max_batch_size=b.max_batch_size, max_batch_tokens=b.max_batch_tokens)
        self._cv = (
            threading.Condition()
        )  # an RLock underneath: settlement may run while the collector holds it
        self._handoff = threading.Semaphore(1)  # at most one preprocessed batch waits for the device
        self._to_forward: queue.Queue[Any] = queue.Queue()
        self._to_post: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._in_flight = 0  # guarded by _cv; the one count of accepted, unsettled requests
        self._next_deadline = float("inf")  # guarded by _cv; earliest deadline among queued requests
        self._device_busy = False  # guarded by _cv; the forward stage sets it around each batch
        self._last_arrival = 0.0  # guarded by _cv
        self.rate = ServiceRate()
        self.retry_after = RetryAfter()  # guarded by _cv
        self._loop_lag_s = 0.0  # the event-loop lag passed with the last admission check
        self._running_items = 0  # guarded by _cv; items of batches taken and not yet resolved or failed
        self._random = random.Random()
        self.batches = 0
        self.last_batch_sizes: list[int] = []  # recent sizes, for tests and the admin view
        self.peak_working_bytes: int | None = None  # largest measured working memory of a pass since load
        sv = self.supervisor
        if engine is not None:
            self._threads = [
                sv.spawn(f"generate/{self.name}", self._continuous_once, name=f"hfp-generate-{self.name}")
            ]
        else:
            self._threads = [
                sv.spawn(f"collect/{self.name}", self._collect_once, name=f"hfp-collect-{self.name}"),
                sv.spawn(f"forward/{self.name}", self._forward_once, name=f"hfp-forward-{self.name}"),
                sv.spawn(f"post/{self.name}", self._post_once, name=f"hfp-post-{self.name}"),
            ]
        _open.add(self)

    # public -----------------------------------------------------------------------------------------------------
    def cap_batch_tokens(self, tokens: int) -> None:
        """Form no batch of more padded tokens than this (memory/working.py: so one batch fits its budget)."""
        with self._cv:
            self._queue.max_batch_tokens = min(self._queue.max_batch_tokens, max(1, tokens))

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def max_wait_s(self, handler: TaskHandler) -> float:
        if self._max_wait_s is not None:
            return self._max_wait_s
        return GENERATION_WAIT_S if handler.generative else 0.0

    def submit(
        self,
        handler: TaskHandler,
        items: list[Item],
        params: dict[str, Any],
        *,
        single: bool,
        priority: int = 0,
        deadline: float = float("inf"),
        sink: DeltaSink | None = None,
        extra_wait_s: float = 0.0,
        ticket: Any = None,
    ) -> Request:
        """Queue one request, or raise Overloaded / ShuttingDown at once (recorded as `rejected`). `ticket`, the
        breaker's (resilience/breaker.py), is judged at settlement; a refused request's stays with the caller."""
        now = self.clock()
        req = Request(
            handler,
            items,
            params,
            key=(handler.task, handler.batch_key(params)),
            single=single,
            priority=priority,
            submitted=now,
            deadline=deadline,
            sink=sink,
            model=self.name,
            on_settle=self._on_settle,
        )
        req.ticket = ticket  # before the push: the request may be settled on another thread at once
        with self._cv:
            error = self._admission(req, now, extra_wait_s)
            if error is None:
                self._queue.push(req, now)
                self._last_arrival = now
                self._in_flight += 1
                self._next_deadline = min(self._next_deadline, deadline)
                self._cv.notify()
        if error is not None:
            req.state = "settled"
            self._record_refusal(req.handler.task, now, error, len(req.items), req.tokens)
            raise error
        return req

    def abandon(self, why: str) -> None:
        """Cancel every queued request (nobody will read its answer), then close."""
        now = self.clock()
        with self._cv:
            queued = list(self._queue.requests())
        for req in queued:
            req.cancel(now, why)
        self.close(timeout=10.0)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting work, finish what is queued, stop the threads."""
        _open.discard(self)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)
        self.supervisor.forget(self.name)
        if (close_runner := getattr(self.runner, "close", None)) is not None:
            close_runner()  # a worker process (isolation/runners.py) ends with its scheduler

    # settlement -------------------------------------------------------------------------------------------------
    def _on_settle(self, req: Request, was: str, error: BaseException | None) -> None:
        """The one place a settled request is accounted for; runs once per request, on whichever thread won."""
        with self._cv:
            if req.slots:
                self._queue.remove(req)
            self._in_flight -= 1
            self._cv.notify()
        self._record(req, req.outcome or "error", req.settled_at or self.clock(), error)
        if req.trace is not None:  # its spans (observability/tracing.py); tracing off: this check is all
            self.supervisor.call("tracing", req.trace.settled, req, error)
        if req.ticket is not None and self.breaker is not None:
            self.supervisor.call("breaker", self.breaker.settle, req.ticket, req.outcome or "error", error)
        if error is not None and req.outcome in _REPORTED and self.reporter is not None:
            self.supervisor.call("reporter", self._report, req, was, error)
        if isinstance(error, ProviderError):
            error.recorded = True  # the server must not count it again when it answers
        if self.on_done is not None:
            self.supervisor.call("settle-hook", self.on_done)

    def _record(self, req: Request, outcome: str, now: float, error: BaseException | None) -> None:
        self.supervisor.call(
            "observer",
            self.observer.request_done,
            self.name,
            req.handler.task,
            self.model.commit,
            outcome,
            now - req.submitted,
            len(req.items),
            req.tokens,
            None if error is None else type(error).__name__,
        )

    def _report(self, req: Request, was: str, error: BaseException) -> None:
        m = self.model
        assert self.reporter is not None
        self.reporter.report(
            error,
            model=self.name,
            phase="queue" if was == "queued" else "forward",  # unless a stage tagged the error itself
            revision=m.commit,
            request_id=req.request_id,
            device=str(m.device),
            dtype=str(m.dtype).removeprefix("torch."),
            input_shape=[len(req.items), max((i.n_tokens for i in req.items), default=0)],
            inputs=[i.data for i in req.items],
        )

    def _expire_due(self, now: float) -> None:
        """Settle queued requests whose deadline passed (guarded by _cv; a no-op until the earliest is due)."""
        if now < self._next_deadline:
            return
        earliest = float("inf")
        for req in self._queue.requests():
            if now >= req.deadline:
                req.expire(now)  # on_settle takes it out of the queue (the condition's lock is re-entrant)
            else:
                earliest = min(earliest, req.deadline)
        self._next_deadline = earliest

    # stages -----------------------------------------------------------------------------------------------------
    def _collect_once(self) -> bool:
        self._handoff.acquire()
        slots = self._next_slots()
        if slots is None:
            self._to_forward.put(_STOP)
            return False
        first = slots[0].request
        batch = Batch(slots=slots, handler=first.handler, params=first.params, formed_at=self.clock())
        batch.started, batch.counted = batch.formed_at, len(slots)
        try:
            self.runner.preprocess(batch)
        except BaseException as e:
            self._handoff.release()
            self._fail(batch, e)
            return True
        self._to_forward.put(batch)
        return True

    def _next_slots(self) -> list[Slot] | None:
        with self._cv:
            while True:
                while not len(self._queue):
                    if self._closed:
                        return None
                    self._cv.wait()
                self._expire_due(self.clock())
                head = self._queue.oldest(self.clock())
                if head is None:
                    continue
                # Wait for the batch to fill: while the device is busy (it will want a batch when it is done), or,
                # while it is idle, up to max_wait after the oldest item arrived. For generation with the default
                # wait, a burst is followed while it lasts (items keep arriving less than BURST_GAP_S apart, up to
                # GENERATION_WAIT_S): a generation that starts alone would hold the device for its whole length.
                handler = head.request.handler
                deadline = head.enqueued + self.max_wait_s(handler)
                follow_burst = self._max_wait_s is None and deadline > head.enqueued
                limit = self._queue.max_batch_size
                while not self._closed and self._queue.compatible_count(head.request.key, limit) < limit:
                    if not head.queued:
                        break  # the head was cancelled or expired meanwhile: pick a new one
                    if self._device_busy:
                        self._cv.wait()
                        continue
                    until = min(deadline, self._last_arrival + BURST_GAP_S) if follow_burst else deadline
                    if (remaining := until - self.clock()) > 0:
                        self._cv.wait(remaining)
                    else:
                        break
                # Decided when the batch forms, with the rate measured up to now.
                self._shed_hopeless(self.clock())
                if not head.queued:
                    continue
                peak = len(self._queue)
                slots = self._queue.take(self.clock())
                if slots:
                    depth = len(self._queue)
                    self._running_items += len(slots)
                    break
        for s in slots:
            s.request.mark_running()
        self.supervisor.call("observer", self.observer.queue_depth, self.name, peak)
        self.supervisor.call("observer", self.observer.queue_depth, self.name, depth)
        return slots

    def _forward_once(self) -> bool:
        batch = self._to_forward.get()
        self._handoff.release()
        if batch is _STOP:
            self._to_post.put(_STOP)
            return False
        try:
            batch = self._live(batch)
            if batch is None:
                return True  # every request of the batch ended while it waited: nothing to compute
            self._set_busy(True)
            try:
                with FOREGROUND.forward_pass():
                    self.runner.forward(batch, self._control(batch.slots))
            except BaseException as e:
                if self.runner.recoverable(e):
                    self._recover(batch, e)
                else:
                    self._fail(batch, e)
                return True
            self._to_post.put(batch)
        finally:
            if self._to_forward.empty():
                self._set_busy(False)
        return True

    def _live(self, batch: Batch) -> Batch | None:
        """The batch without the items of requests that ended (or passed their deadline) since it was formed,
        re-preprocessed when some left: work nobody waits for is never computed."""
        now = self.clock()
        # When this pass will end, at the measured latency of a batch: a request that cannot wait that long is
        # refused now (429, retry later) instead of being computed and then timing out (504) while it runs. Not
        # for generation, whose length varies per request (a row that runs out of time stops at its next token).
        finish = now + (self.rate.batch_s or 0.0) + self._loop_lag_s
        for slot in batch.slots:
            req = slot.request
            if not req.check_deadline(now) and finish > req.deadline and not batch.handler.generative:
                self._refuse_late(req, now, "this request cannot finish within its deadline")
        live = [s for s in batch.slots if not s.request.settled]
        batch.decided = now
        if len(live) == len(batch.slots):
            return batch
        if not live:
            self._batch_done(batch)
            return None
        smaller = Batch(slots=live, handler=batch.handler, params=batch.params, formed_at=batch.formed_at)
        smaller.started, smaller.counted, batch.counted = batch.started, batch.counted, 0
        smaller.decided = now
        self.runner.preprocess(smaller)
        return smaller

    def _set_busy(self, busy: bool) -> None:
        with self._cv:
            self._device_busy = busy
            if not busy:
                self._cv.notify_all()

    def _post_once(self) -> bool:
        batch = self._to_post.get()
        if batch is _STOP:
            return False
        try:
            results = self.runner.postprocess(batch)
        except BaseException as e:
            self._fail(batch, e)
            return True
        try:
            self._resolve(batch, results)
        except BaseException as e:  # a bug in our own bookkeeping: no request may be left unsettled by it
            self._fail(batch, e)
            raise  # the supervisor logs and counts it; the loop goes on
        return True

    # helpers ----------------------------------------------------------------------------------------------------
    def _control(self, slots: list[Slot]) -> RowControl | None:
        handler = slots[0].request.handler
        if not handler.generative:
            return None
        return BatchRows(slots, self.clock, self._tokens_generated(handler.task))

    def _tokens_generated(self, task: str) -> Callable[[int], None]:
        hook = getattr(self.observer, "tokens_generated", None)  # observers written before this hook lack it

        def count(n: int) -> None:
            if n and hook is not None:
                self.supervisor.call("observer", hook, self.name, task, n)

        return count

    def _recover(self, batch: Batch, error: BaseException) -> None:
        """Out-of-memory on a batch: split / evict / fall back (memory.oom), then resolve or fail its requests."""
        try:
            results = self.runner.recover(batch, error, self._control)
        except BaseException as e:
            self._fail(batch, e)
            return
        self._resolve(batch, results)

    def _batch_done(self, batch: Batch) -> None:
        """The batch's items no longer count as running (once per batch, whichever way it ended)."""
        if batch.counted:
            with self._cv:
                self._running_items -= batch.counted
            batch.counted = 0

    def _resolve(self, batch: Batch, results: list[Any]) -> None:
        self._batch_done(batch)
        now = self.clock()
        self.batches += 1
        self.last_batch_sizes = [*self.last_batch_sizes[-255:], batch.size]
        self.rate.observe(batch.size, batch.started, now)
        if batch.decided is not None and not batch.handler.generative:  # a generation's length is its own
            self.rate.observe_batch(now - batch.decided)
        t = batch.timings
        if (peak := t.get("peak_bytes")) is not None:
            self.peak_working_bytes = max(int(peak), self.peak_working_bytes or 0)
        queue_s = sum(batch.formed_at - s.enqueued for s in batch.slots) / batch.size
        self.supervisor.call(
            "observer",
            self.observer.batch_done,
            self.name,
            batch.handler.task,
            batch.size,
            batch.padded_tokens,
            queue_s,
            t.get("preprocess", 0.0),
            t.get("forward", 0.0),
            t.get("postprocess", 0.0),
            t.get("peak_bytes"),
        )
        for slot, result in zip(batch.slots, results, strict=True):
            req = slot.request
            if req.trace is not None:
                req.trace.batch(batch, now)
            req.item_done(slot.index, result, now)

    def _fail(self, batch: Batch, error: BaseException) -> None:
        self._batch_done(batch)
        log.warning(
            "batch of %d for %s/%s failed: %s",
            batch.size,
            self.name,
            batch.handler.task,
            type(error).__name__,
        )
        now = self.clock()
        for req in {id(s.request): s.request for s in batch.slots}.values():
            if req.trace is not None:
                req.trace.batch(batch, now)
            req.fail(error, now)
