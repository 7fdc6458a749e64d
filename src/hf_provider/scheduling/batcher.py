"""Dynamic batching for one loaded model: a queue, then three stages on their own threads.

    submit() -> BatchQueue -> [collect + preprocess] -> [forward] -> [postprocess + resolve futures]

Batches are bound late: while the device is busy the collector keeps waiting (unless a full batch is queued), so
under load each batch holds everything that queued during the previous forward pass instead of whatever arrived in
the first milliseconds; while the device is idle a batch leaves after at most `max_wait_ms`. A one-slot hand-off
lets a full batch be preprocessed while the previous one computes. Futures are `concurrent.futures.Future`, so
the same scheduler serves synchronous callers and asyncio (`asyncio.wrap_future`) without an event loop of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from hf_provider.errors import ShuttingDown, Unavailable
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import DeltaSink, Item, TaskHandler
from hf_provider.scheduling.observer import NullObserver, SchedulerObserver
from hf_provider.scheduling.queue import Batch, BatchQueue, Request
from hf_provider.scheduling.worker import StageRunner

log = logging.getLogger(__name__)
_STOP = object()
GENERATIVE_TASKS = frozenset(
    {"text-generation", "text2text-generation", "translation", "summarization", "question-answering"}
)
GENERATION_WAIT_S = 0.050  # longest a generation batch follows a burst of arrivals
BURST_GAP_S = 0.003  # a burst ends when no request arrived for this long


class ModelScheduler:
    def __init__(
        self,
        model: LoadedModel,
        *,
        observer: SchedulerObserver | None = None,
        runner: StageRunner | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        b = model.spec.batching
        self.model = model
        self.observer = observer or NullObserver()
        self.runner = runner or StageRunner(model)
        self.clock = clock
        self._max_wait_s = None if b.max_wait_ms is None else b.max_wait_ms / 1000.0
        self.max_queue = b.max_queue
        self._queue = BatchQueue(max_batch_size=b.max_batch_size, max_batch_tokens=b.max_batch_tokens)
        self._cv = threading.Condition()
        self._handoff = threading.Semaphore(1)  # at most one preprocessed batch waits for the device
        self._to_forward: queue.Queue[Any] = queue.Queue()
        self._to_post: queue.Queue[Any] = queue.Queue()
        self._resolve_lock = threading.Lock()
        self._closed = False
        self._in_flight = 0
        self._device_busy = False  # guarded by _cv; the forward stage sets it around each batch
        self._last_arrival = 0.0  # guarded by _cv
        self.batches = 0
        self.last_batch_sizes: list[int] = []  # recent sizes, for tests and the admin view
        self._threads = [
            threading.Thread(target=self._collect_loop, name=f"hfp-collect-{model.name}", daemon=True),
            threading.Thread(target=self._forward_loop, name=f"hfp-forward-{model.name}", daemon=True),
            threading.Thread(target=self._post_loop, name=f"hfp-post-{model.name}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # public -----------------------------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def max_wait_s(self, handler: TaskHandler) -> float:
        if self._max_wait_s is not None:
            return self._max_wait_s
        generative = getattr(handler, "generative", handler.task in GENERATIVE_TASKS)  # QA can be either way
        return GENERATION_WAIT_S if generative else 0.0

    def submit(
        self,
        handler: TaskHandler,
        items: list[Item],
        params: dict[str, Any],
        *,
        single: bool,
        priority: int = 0,
        sinks: list[DeltaSink] | None = None,
    ) -> Future:
        fut: Future = Future()
        now = self.clock()
        req = Request(
            handler=handler,
            items=items,
            params=params,
            key=(handler.task, handler.batch_key(params)),
            single=single,
            priority=priority,
            future=fut,
            submitted=now,
            sinks=sinks,
        )
        with self._cv:
            if self._closed:
                raise ShuttingDown(
                    f"model {self.model.name!r} is being unloaded", model=self.model.name, retry_after=1.0
                )
            if len(self._queue) + len(items) > self.max_queue:
                raise Unavailable(
                    f"model {self.model.name!r} has {len(self._queue)} items queued (limit {self.max_queue}); "
                    "retry shortly",
                    model=self.model.name,
                    task=handler.task,
                    retry_after=1.0,
                )
            self._queue.push(req, now)
            self._last_arrival = now
            self._in_flight += 1
            self._cv.notify()
        # No observer call per request here: in-flight counts are read from this object at scrape time and the
        # queue depth is reported once per batch (its peak, just before the batch leaves).
        return fut

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting work, finish what is queued, stop the threads."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)

    # stages -----------------------------------------------------------------------------------------------------
    def _collect_loop(self) -> None:
        while True:
            self._handoff.acquire()
            slots = self._next_slots()
            if slots is None:
                self._to_forward.put(_STOP)
                return
            first = slots[0].request
            batch = Batch(slots=slots, handler=first.handler, params=first.params, formed_at=self.clock())
            try:
                self.runner.preprocess(batch)
            except BaseException as e:
                self._handoff.release()
                self._fail(batch, e)
                continue
            self._to_forward.put(batch)

    def _next_slots(self):
        with self._cv:
            while True:
                while not len(self._queue):
                    if self._closed:
                        return None
                    self._cv.wait()
                self._queue.drop_cancelled(lambda r: r.future.cancelled())
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
                    if self._device_busy:
                        self._cv.wait()
                        continue
                    until = min(deadline, self._last_arrival + BURST_GAP_S) if follow_burst else deadline
                    if (remaining := until - self.clock()) > 0:
                        self._cv.wait(remaining)
                    else:
                        break
                peak = len(self._queue)
                slots = self._queue.take(self.clock())
                if slots:
                    depth = len(self._queue)
                    break
        self.observer.queue_depth(self.model.name, peak)
        self.observer.queue_depth(self.model.name, depth)
        return slots

    def _forward_loop(self) -> None:
        while True:
            batch = self._to_forward.get()
            self._handoff.release()
            if batch is _STOP:
                self._to_post.put(_STOP)
                return
            self._set_busy(True)
            try:
                self.runner.forward(batch, self._sinks(batch))
            except BaseException as e:
                if self.runner.recoverable(e):
                    self._recover(batch, e)
                else:
                    self._fail(batch, e)
                continue
            finally:
                if self._to_forward.empty():
                    self._set_busy(False)
            self._to_post.put(batch)

    def _set_busy(self, busy: bool) -> None:
        with self._cv:
            self._device_busy = busy
            if not busy:
                self._cv.notify_all()

    def _post_loop(self) -> None:
        while True:
            batch = self._to_post.get()
            if batch is _STOP:
                return
            try:
                results = self.runner.postprocess(batch)
            except BaseException as e:
                self._fail(batch, e)
                continue
            self._resolve(batch, results)

    # helpers ----------------------------------------------------------------------------------------------------
    def _sinks(self, batch: Batch) -> list[DeltaSink] | None:
        if not any(s.request.sinks for s in batch.slots):
            return None
        return [s.request.sinks[s.index] if s.request.sinks else _noop for s in batch.slots]

    def _recover(self, batch: Batch, error: BaseException) -> None:
        """Out-of-memory on a batch: split / evict / fall back (memory.oom), then resolve or fail its requests."""
        try:
            results = self.runner.recover(batch, error, self._sinks(batch))
        except BaseException as e:
            self._fail(batch, e)
            return
        self._resolve(batch, results)

    def _resolve(self, batch: Batch, results: list[Any]) -> None:
        self.batches += 1
        self.last_batch_sizes = [*self.last_batch_sizes[-255:], batch.size]
        now = self.clock()
        t = batch.timings
        queue_s = sum(batch.formed_at - s.enqueued for s in batch.slots) / batch.size
        self.observer.batch_done(
            self.model.name,
            batch.handler.task,
            batch.size,
            batch.padded_tokens,
            queue_s,
            t.get("preprocess", 0.0),
            t.get("forward", 0.0),
            t.get("postprocess", 0.0),
            t.get("peak_bytes"),
        )
        done: list[Request] = []
        with self._resolve_lock:
            for slot, result in zip(batch.slots, results, strict=True):
                req = slot.request
                req.results[slot.index] = result
                req.remaining -= 1
                if req.remaining == 0 and not req.future.done():
                    req.future.set_result(req.results[0] if req.single else req.results)
                    done.append(req)
        for req in done:
            self._finish(req, "ok", now)

    def _fail(self, batch: Batch, error: BaseException) -> None:
        log.warning(
            "batch of %d for %s/%s failed: %s",
            batch.size,
            self.model.name,
            batch.handler.task,
            type(error).__name__,
        )
        now = self.clock()
        seen: set[int] = set()
        for slot in batch.slots:
            req = slot.request
            if id(req) in seen:
                continue
            seen.add(id(req))
            if req.sinks:
                for sink in req.sinks:
                    sink(None)
            with self._resolve_lock:
                first = not req.future.done()
                if first:
                    req.future.set_exception(error)
            if first:
                self._finish(req, "error", now, type(error).__name__)

    def _finish(self, req: Request, outcome: str, now: float, error_type: str | None = None) -> None:
        with self._cv:
            self._in_flight -= 1
        self.observer.request_done(
            self.model.name,
            req.handler.task,
            self.model.commit,
            outcome,
            now - req.submitted,
            len(req.items),
            req.tokens,
            error_type,
        )


def _noop(_: str | None) -> None:
    pass
