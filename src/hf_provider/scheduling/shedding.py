"""Admission by time: estimate a new request's queue wait from the model's measured service rate and refuse at
once what would not be served within its deadline (pure policy; the scheduler feeds it, tests drive it directly).

A request refused here costs a dictionary lookup instead of a queue slot it would hold until its deadline, so under
overload the server keeps answering (fast 429s) and the work it accepts still meets its deadlines. Bulk work
(`batch` priority) may only use a smaller share of its deadline, so it is shed before interactive work.
`RetryAfter` tells refused clients how long to stay away, adapted to the overload.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Share of the time left to its deadline that an item's estimated queue wait may use, per priority class.
#: Well below 1: the estimate leaves out the request's own batch, the batch in progress, the HTTP answer and the
#: slowdown a burst of arrivals causes, and the event loop's lag in parsing and answering (p50 of accepted requests
#: under bench/overload.py is about 0.4 s of a 1 s deadline with 0.25, whose p99 then came within 5% of the deadline;
#: 0.2 keeps a margin). The queue still holds two batches or more.
WAIT_SHARE: tuple[float, ...] = (0.2, 0.1)


@dataclass
class ServiceRate:
    """Items per second a model's scheduler completes: exponentially weighted sums of items and of seconds, and
    their ratio (a mean of per-batch rates would be biased high by short intervals).

    Each sample is one batch: its size, and the time since the later of its own start and the previous batch's
    completion. Under a backlog batches complete back to back, so this is the true throughput with every
    overhead included; when idle it is a lone batch's latency (the rate it could promise a new request)."""

    alpha: float = 0.2
    items_per_s: float | None = None
    last_done: float | None = None
    batch_s: float | None = None
    _items: float = 0.0
    _seconds: float = 0.0

    def observe(self, items: int, started: float, done: float) -> None:
        begin = started if self.last_done is None else max(started, self.last_done)
        self.last_done = done
        seconds = done - begin
        if items <= 0 or seconds <= 0:
            return
        if self.items_per_s is None:
            self._items, self._seconds = float(items), seconds
        else:
            self._items += self.alpha * (items - self._items)
            self._seconds += self.alpha * (seconds - self._seconds)
        self.items_per_s = self._items / self._seconds

    def observe_batch(self, seconds: float) -> None:
        """One batch's latency, from the forward stage taking it to its answers (smoothed like the rate)."""
        if seconds >= 0:
            self.batch_s = (
                seconds if self.batch_s is None else self.batch_s + self.alpha * (seconds - self.batch_s)
            )

    def wait_s(self, items_ahead: int, one_batch: int | None = None) -> float | None:
        """Estimated seconds until `items_ahead` queued items are served; None before the first batch.

        Items that fit in one batch (`one_batch`: the batch size limit) wait about one batch: after an idle spell
        the rate is a lone request's, and would refuse the first burst that batching absorbs."""
        if self.items_per_s is None:
            return None
        wait = items_ahead / self.items_per_s
        if one_batch is not None and items_ahead <= one_batch and self.batch_s is not None:
            return min(wait, self.batch_s)
        return wait


def refusal(wait_s: float | None, remaining_s: float, priority: int) -> float | None:
    """Seconds to suggest in Retry-After when the request should be refused now, else None."""
    if wait_s is None or wait_s <= 0:  # nothing ahead: even a short deadline may be met
        return None
    share = WAIT_SHARE[min(priority, len(WAIT_SHARE) - 1)]
    if wait_s <= remaining_s * share:
        return None
    # By then the backlog that refused this request has been served.
    return max(1.0, wait_s - remaining_s * share)


@dataclass
class RetryAfter:
    """How long refused clients are told to stay away, adapted to the overload (pure; clock and random injected).

    Every refusal costs the server CPU (on 2 cores a 429 costs about a tenth of a served request), and clients that
    honour Retry-After come back when told: told all the same number, they return together in waves. So the value
    grows while refusals per second exceed `target_share` of the service rate and shrinks when they fall below
    half of it (a multiplicative controller, one step per second, at most 2x per step), and each refusal gets a
    value spread uniformly over [0.5, 1.5] x the current one. A quarter: at half, refusals cost bench/overload.py
    about a tenth of its goodput; a queue that runs dry shrinks the value again within seconds."""

    target_share: float = 0.25
    max_s: float = 60.0
    period_s: float = 1.0
    value_s: float = 1.0
    _count: int = 0
    _since: float | None = None

    def refused(self, now: float, service_rate: float | None) -> None:
        if self._since is None:
            self._since = now
        self._count += 1
        elapsed = now - self._since
        if elapsed < self.period_s or not service_rate:
            return
        per_s = self._count / elapsed
        target = max(1.0, self.target_share * service_rate)
        if per_s > target:
            self.value_s = min(self.max_s, self.value_s * min(2.0, per_s / target))
        elif per_s < target / 2:
            self.value_s = max(1.0, self.value_s * max(0.5, per_s / target))
        self._count, self._since = 0, now

    def seconds(self, uniform: float) -> float:
        """The value for one refusal; `uniform` is a random number in [0, 1). Never past `max_s`: the server's
        `keep_alive_s` (65 s) outlasts it, so a client that waits as told finds its connection still open."""
        return min(self.max_s, max(1.0, self.value_s * (0.5 + uniform)))
