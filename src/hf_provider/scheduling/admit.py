"""Admission for one model's queue: refusal by time and by count when a request arrives, and late refusal of
accepted requests that can no longer finish by their deadline. The policies themselves are pure
(scheduling/shedding.py); this object holds what they need between calls (the Retry-After state, the last
event-loop lag) and reads the queue through `Pending`.

It raises or settles; it records nothing: a refusal raised here is recorded by the Provider, which refuses it
(provider/submission.py), and a late refusal is a settlement like any other (scheduling/batcher.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hf_provider.errors import Overloaded, ProviderError, ShuttingDown
from hf_provider.scheduling.pending import Pending
from hf_provider.scheduling.request import Request
from hf_provider.scheduling.shedding import RetryAfter, ServiceRate, refusal


class Admission:
    def __init__(
        self,
        name: str,
        pending: Pending,
        rate: ServiceRate,
        *,
        max_queue: int,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.pending = pending
        self.rate = rate
        self.max_queue = max_queue
        self.clock = clock
        self.retry_after = RetryAfter()  # guarded by pending.cv
        self.loop_lag_s = 0.0  # the event-loop lag passed with the last admission check
        self._random = rng or random.Random()

    def estimated_wait_s(self, priority: int = 0) -> float | None:
        """Seconds a new request's items would wait: the items served before them over the service rate."""
        q = self.pending.queue
        ahead = len(q) if priority else q.class_len(0)
        return self.rate.wait_s(ahead, q.max_batch_size)

    def check(self, task: str, priority: int, deadline: float, extra_wait_s: float = 0.0) -> None:
        """Raise Overloaded at once when a request's estimated queue wait does not fit its deadline. Called before
        the request is parsed, so a refusal costs no tokenization; `refusal_for` checks again with the items."""
        now = self.clock()
        with self.pending.cv:
            error = self._by_time(task, priority, deadline, now, extra_wait_s)
        if error is not None:
            raise error

    def refusal_for(self, req: Request, now: float, extra_wait_s: float) -> ProviderError | None:
        """Why `req` may not queue now, or None (caller holds pending.cv)."""
        n, queued = len(req.items), len(self.pending)
        if self.pending.closed:
            return ShuttingDown(f"model {self.name!r} is being unloaded", model=self.name, retry_after=1.0)
        if queued + n > self.max_queue:
            return Overloaded(
                f"model {self.name!r} has {queued} items queued (limit {self.max_queue}); retry shortly",
                model=self.name,
                task=req.handler.task,
                retry_after=1.0,
            )
        return self._by_time(req.handler.task, req.priority, req.deadline, now, extra_wait_s)

    def _by_time(
        self, task: str, priority: int, deadline: float, now: float, extra_wait_s: float
    ) -> ProviderError | None:
        # The items served before this one; its own service time is not waiting.
        self.loop_lag_s = extra_wait_s
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

    def shed_hopeless(self, now: float) -> None:
        """Refuse (429) queued requests that cannot finish before their deadline at the measured rate, instead of
        letting them time out (504): admission judged them on an estimate, and a burst of arrivals or a slower
        device can prove it wrong. Caller holds pending.cv; interactive first, roughly in queue order."""
        rate = self.rate.items_per_s
        q = self.pending.queue
        if not rate or len(q) < 2:
            return
        hopeless: list[Request] = []
        ahead = self.pending.running_items  # the batches taken and not done yet are served first
        # Its own items cost one batch (measured), not their count over the rate: a rate measured on lone
        # requests would refuse a large request on an idle server.
        own = self.rate.batch_s or 0.0
        for req in q.requests():
            # Its answer also waits for the event loop (its lag, last measured).
            wait = self.rate.wait_s(ahead, q.max_batch_size) or 0.0
            if now + wait + own + self.loop_lag_s > req.deadline:
                hopeless.append(req)
            ahead += len(req.items)
        for req in hopeless:
            self.refuse_late(req, now, "this request cannot finish within its deadline")

    def refuse_late(self, req: Request, now: float, why: str) -> None:
        """Settle an accepted request as refused (429 with Retry-After), before any compute is spent on it."""
        with self.pending.cv:
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
