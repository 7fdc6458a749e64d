"""Admission by time: estimate a new request's queue wait from the model's measured service rate and refuse at
once what would not be served within its deadline (pure policy; the scheduler feeds it, tests drive it directly).

A request refused here costs a dictionary lookup instead of a queue slot it would hold until its deadline, so under
overload the server keeps answering (fast 429s) and the work it accepts still meets its deadlines. Bulk work
(`batch` priority) may only use a smaller share of its deadline, so it is shed before interactive work.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Share of the time left to its deadline that an item's estimated queue wait may use, per priority class.
#: Below 1 because the estimate ignores HTTP time and the batch in progress: the margin keeps accepted
#: requests inside their deadline instead of timing out in the queue.
WAIT_SHARE: tuple[float, ...] = (0.5, 0.25)


@dataclass
class ServiceRate:
    """Items per second a model's scheduler completes, as an exponentially weighted moving average.

    Each sample is one batch: its size over the time since the later of its own start and the previous batch's
    completion. Under a backlog batches complete back to back, so this is the true throughput with every
    overhead included; when idle it is a lone batch's latency (the rate it could promise a new request)."""

    alpha: float = 0.2
    items_per_s: float | None = None
    last_done: float | None = None

    def observe(self, items: int, started: float, done: float) -> None:
        begin = started if self.last_done is None else max(started, self.last_done)
        self.last_done = done
        seconds = done - begin
        if items <= 0 or seconds <= 0:
            return
        rate = items / seconds
        prev = self.items_per_s
        self.items_per_s = rate if prev is None else prev + self.alpha * (rate - prev)

    def wait_s(self, items_ahead: int) -> float | None:
        """Estimated seconds until `items_ahead` queued items are served; None before the first batch."""
        if self.items_per_s is None:
            return None
        return items_ahead / self.items_per_s


def refusal(wait_s: float | None, remaining_s: float, priority: int) -> float | None:
    """Seconds to suggest in Retry-After when the request should be refused now, else None."""
    if wait_s is None or wait_s <= 0:  # nothing ahead: even a short deadline may be met
        return None
    share = WAIT_SHARE[min(priority, len(WAIT_SHARE) - 1)]
    if wait_s <= remaining_s * share:
        return None
    # By then the backlog that refused this request has been served.
    return max(1.0, wait_s - remaining_s * share)
