"""`Completion`: what a batch's end does to its requests, shared by the static stages (scheduling/stages.py) and
the continuous loop (scheduling/continuous.py): results answer their items, a failure fails every request of the
batch with the real error, an out-of-memory error goes through recovery first, and the batch's measurements
(service rate, batch metrics, working memory) are taken once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.observer import SchedulerObserver
from hf_provider.scheduling.pending import Pending
from hf_provider.scheduling.queue import Batch, Slot
from hf_provider.scheduling.rows import BatchRows
from hf_provider.scheduling.shedding import ServiceRate
from hf_provider.types import RowControl, RowFailed

if TYPE_CHECKING:
    from hf_provider.scheduling.worker import StageRunner

log = logging.getLogger(__name__)


class Completion:
    def __init__(
        self,
        name: str,
        pending: Pending,
        rate: ServiceRate,
        runner: StageRunner,
        *,
        observer: SchedulerObserver,
        supervisor: Supervisor,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.pending = pending
        self.rate = rate
        self.runner = runner
        self.observer = observer
        self.supervisor = supervisor
        self.clock = clock
        self.batches = 0
        self.last_batch_sizes: list[int] = []  # recent sizes, for tests and the admin view
        # batches that held items of more than one request: dynamic batching at work (the pairs of several
        # rerank requests, the hypotheses of several zero-shot requests), shown in the admin view
        self.shared_batches = 0
        self.peak_working_bytes: int | None = None  # largest measured working memory of a pass since load

    def control(self, slots: list[Slot]) -> RowControl | None:
        handler = slots[0].request.handler
        if not handler.generative:
            return None
        return BatchRows(slots, self.clock, self.tokens_counter(handler.task))

    def tokens_counter(self, task: str) -> Callable[[int], None]:
        """The live count of generated tokens (`hfp_tokens_generated_total`)."""
        hook = self.observer.tokens_generated

        def count(n: int) -> None:
            if n:
                self.supervisor.call("observer", hook, self.name, task, n)

        return count

    def batch_done(self, batch: Batch) -> None:
        """The batch's items no longer count as running (once per batch, whichever way it ended)."""
        if batch.counted:
            self.pending.running_done(batch.counted)
            batch.counted = 0

    def counted(self, size: int) -> None:
        """A batch of `size` rows ran (static stages or one engine step)."""
        self.batches += 1
        self.last_batch_sizes = [*self.last_batch_sizes[-255:], size]

    def recover(self, batch: Batch, error: BaseException) -> None:
        """Out-of-memory on a batch: split / evict / fall back (memory.oom), then resolve or fail its requests."""
        try:
            results = self.runner.recover(batch, error, self.control)
        except BaseException as e:
            self.fail(batch, e)
            return
        self.resolve(batch, results)

    def resolve(self, batch: Batch, results: list[Any]) -> None:
        self.batch_done(batch)
        now = self.clock()
        self.counted(batch.size)
        if len({id(s.request) for s in batch.slots}) > 1:
            self.shared_batches += 1
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
            if type(result) is RowFailed:  # its group failed alone in a mixed batch; the others answer
                req.fail(result.error, now)
            else:
                req.item_done(slot.index, result, now)

    def fail(self, batch: Batch, error: BaseException) -> None:
        self.batch_done(batch)
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
