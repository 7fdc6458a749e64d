"""The scheduler's side of admission: refusal by time and by count when a request arrives, and late refusal of
accepted requests that can no longer finish by their deadline. A mixin so `ModelScheduler` keeps one lock and one
queue while this module holds the overload side of its job; the policies themselves are pure (shedding.py)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.errors import Overloaded, ProviderError, ShuttingDown
from hf_provider.scheduling.request import Request
from hf_provider.scheduling.shedding import RetryAfter, ServiceRate, refusal

if TYPE_CHECKING:
    from hf_provider.resilience.supervisor import Supervisor
    from hf_provider.scheduling.observer import SchedulerObserver
    from hf_provider.scheduling.queue import BatchQueue


class Admission:
    # Set by ModelScheduler.__init__.
    name: str
    model: Any
    clock: Callable[[], float]
    observer: SchedulerObserver
    supervisor: Supervisor
    max_queue: int
    rate: ServiceRate
    retry_after: RetryAfter
    _queue: BatchQueue
    _cv: threading.Condition
    _closed: bool
    _random: random.Random
    _loop_lag_s: float
    _running_items: int

    def estimated_wait_s(self, priority: int = 0) -> float | None:
        """Seconds a new request's items would wait: the items served before them over the service rate."""
        ahead = len(self._queue) if priority else self._queue.class_len(0)
        return self.rate.wait_s(ahead, self._queue.max_batch_size)

    def queued_tokens(self) -> int:
        """Token budget (prompt + max_new_tokens) of the generation items waiting in the queue: the work they
        hold, which an item count hides (one may ask for 8 new tokens, the next for 2000)."""
        with self._cv:
            return self._queue.generation_tokens()

    def _record_refusal(
        self, task: str, now: float, error: ProviderError, items: int = 0, tokens: int = 0
    ) -> None:
        self.supervisor.call(
            "observer",
            self.observer.request_done,
            self.name,
            task,
            self.model.commit,
            "rejected",
            0.0,
            items,
            tokens,
            type(error).__name__,
        )
        error.recorded = True

    def check_admission(self, task: str, priority: int, deadline: float, extra_wait_s: float = 0.0) -> None:
        """Refuse at once (Overloaded, recorded as rejected) a request whose estimated queue wait does not fit
        its deadline. Called before the request is parsed, so a refusal costs no tokenization; `submit` checks
        again with the items in hand."""
        now = self.clock()
        with self._cv:
            error = self._by_time(task, priority, deadline, now, extra_wait_s)
        if error is not None:
            self._record_refusal(task, now, error)
            raise error

    def _admission(self, req: Request, now: float, extra_wait_s: float) -> ProviderError | None:
        n = len(req.items)
        if self._closed:
            return ShuttingDown(f"model {self.name!r} is being unloaded", model=self.name, retry_after=1.0)
        if len(self._queue) + n > self.max_queue:
            return Overloaded(
                f"model {self.name!r} has {len(self._queue)} items queued (limit {self.max_queue}); "
                "retry shortly",
                model=self.name,
                task=req.handler.task,
                retry_after=1.0,
            )
        return self._by_time(req.handler.task, req.priority, req.deadline, now, extra_wait_s)

    def _by_time(
        self, task: str, priority: int, deadline: float, now: float, extra_wait_s: float
    ) -> ProviderError | None:
        # The items served before this one; its own service time is not waiting.
        self._loop_lag_s = extra_wait_s
        wait = self.estimated_wait_s(priority)
        if wait:  # a lagging event loop delays answers too, but only matters behind a queue
            wait += extra_wait_s
        retry = refusal(wait, deadline - now, priority)
        if retry is None:
            return None
        self.retry_after.refused(now, self.rate.items_per_s)
        retry = max(retry, self.retry_after.seconds(self._random.random()))
        return Overloaded(
            f"model {self.name!r} is overloaded: the estimated queue wait of {wait:.2f}s does not fit this "
            f"request's deadline of {deadline - now:.2f}s; retry after {retry:.0f}s",
            model=self.name,
            task=task,
            retry_after=retry,
        )

    def _shed_hopeless(self, now: float) -> None:
        """Refuse (429) queued requests that cannot finish before their deadline at the measured rate, instead of
        letting them time out (504): admission judged them on an estimate, and a burst of arrivals or a slower
        device can prove it wrong. Guarded by _cv; items are taken roughly in queue order, interactive first."""
        rate = self.rate.items_per_s
        if not rate or len(self._queue) < 2:
            return
        hopeless: list[Request] = []
        ahead = self._running_items  # the batches taken and not done yet are served first
        # Its own items cost one batch (measured), not their count over the rate: a rate measured on lone
        # requests would refuse a large request on an idle server.
        own = self.rate.batch_s or 0.0
        for req in self._queue.requests():
            # Its answer also waits for the event loop (its lag, last measured).
            wait = self.rate.wait_s(ahead, self._queue.max_batch_size) or 0.0
            if now + wait + own + self._loop_lag_s > req.deadline:
                hopeless.append(req)
            ahead += len(req.items)
        for req in hopeless:
            self._refuse_late(req, now, "this request cannot finish within its deadline")

    def _refuse_late(self, req: Request, now: float, why: str) -> None:
        """Settle an accepted request as refused (429 with Retry-After), before any compute is spent on it."""
        with self._cv:
            self.retry_after.refused(now, self.rate.items_per_s)
            retry = max(1.0, self.retry_after.seconds(self._random.random()))
        req.fail(
            Overloaded(
                f"model {self.name!r} is overloaded: {why}; retry after {retry:.0f}s",
                model=self.name,
                task=req.handler.task,
                retry_after=retry,
            ),
            now,
            outcome="rejected",
        )
