"""The three stages of dynamic batching for one model, each on its own supervised thread:

    Pending -> [collect + preprocess] -> [forward] -> [postprocess + settle requests]

Batches are bound late: while the device is busy the collector keeps waiting (unless a full batch is queued), so
under load each batch holds everything that queued during the previous forward pass instead of whatever arrived in
the first milliseconds; while the device is idle a batch leaves after at most `max_wait_ms`. A one-slot hand-off
lets a full batch be preprocessed while the previous one computes. A request past its deadline, or cancelled, is
dropped before its forward pass.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.scheduling.admit import Admission
from hf_provider.scheduling.completion import Completion
from hf_provider.scheduling.mixed import batch_of
from hf_provider.scheduling.observer import SchedulerObserver
from hf_provider.scheduling.pending import Pending
from hf_provider.scheduling.queue import Batch, Slot
from hf_provider.scheduling.threads import ThreadSetting
from hf_provider.types import TaskHandler

if TYPE_CHECKING:
    from hf_provider.scheduling.worker import StageRunner

_STOP = object()
BURST_GAP_S = 0.003  # a burst ends when no request arrived for this long


class StaticStages:
    def __init__(
        self,
        name: str,
        pending: Pending,
        admission: Admission,
        completion: Completion,
        runner: StageRunner,
        *,
        max_wait_s: Callable[[TaskHandler], float],
        follow_bursts: bool,
        observer: SchedulerObserver,
        supervisor: Supervisor,
        clock: Callable[[], float],
        threads: int | None = None,
    ) -> None:
        """`threads`: the forward thread's CPU thread count (the spec's `cpu_threads`); None leaves it as is."""
        self.name = name
        self.pending = pending
        self.admission = admission
        self.completion = completion
        self.runner = runner
        self.max_wait_s = max_wait_s
        self.follow_bursts = follow_bursts  # max_wait_ms left to its default: follow a burst of generations
        self.observer = observer
        self.supervisor = supervisor
        self.clock = clock
        self._handoff = threading.Semaphore(1)  # at most one preprocessed batch waits for the device
        self.threads = threads
        self._thread_setting = ThreadSetting()
        self._to_forward: queue.Queue[Any] = queue.Queue()
        self._to_post: queue.Queue[Any] = queue.Queue()

    def start(self) -> list[threading.Thread]:
        sv, n = self.supervisor, self.name
        return [
            sv.spawn(f"collect/{n}", self.collect_once, name=f"hfp-collect-{n}"),
            sv.spawn(f"forward/{n}", self.forward_once, name=f"hfp-forward-{n}"),
            sv.spawn(f"post/{n}", self.post_once, name=f"hfp-post-{n}"),
        ]

    # collect ----------------------------------------------------------------------------------------------------
    def collect_once(self) -> bool:
        self._handoff.acquire()
        slots = self._next_slots()
        if slots is None:
            self._to_forward.put(_STOP)
            return False
        batch = batch_of(slots, self.clock())
        batch.started, batch.counted = batch.formed_at, len(slots)
        try:
            self.runner.preprocess(batch)
        except BaseException as e:
            self._handoff.release()
            self.completion.fail(batch, e)
            return True
        self._to_forward.put(batch)
        return True

    def _next_slots(self) -> list[Slot] | None:
        p = self.pending
        with p.cv:
            while True:
                while not len(p.queue):
                    if p.closed:
                        return None
                    p.cv.wait()
                p.expire_due(self.clock())
                head = p.queue.oldest(self.clock())
                if head is None:
                    continue
                # Wait for the batch to fill: while the device is busy (it will want a batch when it is done), or,
                # while it is idle, up to max_wait after the oldest item arrived. For generation with the default
                # wait, a burst is followed while it lasts (items keep arriving less than BURST_GAP_S apart, up to
                # the generation wait): a generation that starts alone would hold the device for its whole length.
                deadline = head.enqueued + self.max_wait_s(head.request.handler)
                follow_burst = self.follow_bursts and deadline > head.enqueued
                limit = p.queue.max_batch_size
                while not p.closed and p.queue.compatible_count(head.request.key, limit) < limit:
                    if not head.queued:
                        break  # the head was cancelled or expired meanwhile: pick a new one
                    if p.device_busy:
                        p.cv.wait()
                        continue
                    until = min(deadline, p.last_arrival + BURST_GAP_S) if follow_burst else deadline
                    if (remaining := until - self.clock()) > 0:
                        p.cv.wait(remaining)
                    else:
                        break
                # Decided when the batch forms, with the rate measured up to now.
                self.admission.shed_hopeless(self.clock())
                if not head.queued:
                    continue
                peak = len(p.queue)
                slots = p.queue.take(self.clock())
                if slots:
                    depth = len(p.queue)
                    p.running_items += len(slots)
                    break
        for s in slots:
            s.request.mark_running()
        self.supervisor.call("observer", self.observer.queue_depth, self.name, peak)
        self.supervisor.call("observer", self.observer.queue_depth, self.name, depth)
        return slots

    # forward ----------------------------------------------------------------------------------------------------
    def forward_once(self) -> bool:
        batch = self._to_forward.get()
        self._handoff.release()
        if batch is _STOP:
            self._to_post.put(_STOP)
            return False
        try:
            try:
                live = self._live(batch)
            except BaseException as e:  # re-preprocessing the survivors failed: they fail with the real error
                self.completion.fail(batch, e)
                return True
            if live is None:
                return True  # every request of the batch ended while it waited: nothing to compute
            batch = live
            if self.threads is not None:
                self._thread_setting.ensure(self.threads)
            self.pending.set_busy(True)
            try:
                with FOREGROUND.forward_pass():
                    self.runner.forward(batch, self.completion.control(batch.slots))
            except BaseException as e:
                if self.runner.recoverable(e):
                    self.completion.recover(batch, e)
                else:
                    self.completion.fail(batch, e)
                return True
            self._to_post.put(batch)
        finally:
            if self._to_forward.empty():
                self.pending.set_busy(False)
        return True

    def _live(self, batch: Batch) -> Batch | None:
        """The batch without the items of requests that ended (or passed their deadline) since it was formed,
        re-preprocessed when some left: work nobody waits for is never computed."""
        now = self.clock()
        # When this pass will end, at the measured latency of a batch: a request that cannot wait that long is
        # refused now (429, retry later) instead of being computed and then timing out (504) while it runs. Not
        # for generation, whose length varies per request (a row that runs out of time stops at its next token).
        finish = now + (self.admission.rate.batch_s or 0.0) + self.admission.loop_lag_s
        for slot in batch.slots:
            req = slot.request
            if not req.check_deadline(now) and finish > req.deadline and not batch.handler.generative:
                self.admission.refuse_late(req, now, "this request cannot finish within its deadline")
        live = [s for s in batch.slots if not s.request.settled]
        batch.decided = now
        if len(live) == len(batch.slots):
            return batch
        if not live:
            self.completion.batch_done(batch)
            return None
        smaller = batch_of(live, batch.formed_at)  # its groups again: a group may have left
        smaller.started, smaller.counted, batch.counted = batch.started, batch.counted, 0
        smaller.decided = now
        self.runner.preprocess(smaller)
        return smaller

    # postprocess ------------------------------------------------------------------------------------------------
    def post_once(self) -> bool:
        batch = self._to_post.get()
        if batch is _STOP:
            return False
        try:
            results = self.runner.postprocess(batch)
        except BaseException as e:
            self.completion.fail(batch, e)
            return True
        try:
            self.completion.resolve(batch, results)
        except BaseException as e:  # a bug in our own bookkeeping: no request may be left unsettled by it
            self.completion.fail(batch, e)
            raise  # the supervisor logs and counts it; the loop goes on
        return True
