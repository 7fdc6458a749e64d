"""Retries inside a budget: transient failures are retried only while retries stay a small share of attempts.

Unbounded retries turn a failing dependency into a multiplied load on it (every caller tries n times); Envoy and
Finagle bound them with a budget instead of a per-call count. tenacity does the per-call part (backoff with jitter,
the stop conditions); it has no notion of a budget shared by many calls, so the budget is written here: a sliding
window of first attempts and retries, where a retry is allowed while retries <= ratio x first attempts.

`min_retries` lets a lone call retry once per window when traffic is too thin for the ratio to allow any (a single
load that hits a Hub blip); above `min_retries / ratio` first attempts per window, the ratio alone bounds the load:
an all-failing dependency sees at most (1 + ratio) x the attempts its callers make.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

T = TypeVar("T")


@dataclass
class RetryBudget:
    """Shared by every call to one dependency (one model's loads, one worker's requests). Thread-safe."""

    ratio: float = 0.2
    window_s: float = 10.0
    min_retries: int = 1
    clock: Callable[[], float] = time.monotonic
    _firsts: deque[float] = field(default_factory=deque, repr=False)
    _retries: deque[float] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    refused: int = 0  # retries the budget turned down, for the admin view and tests

    def first_attempt(self) -> None:
        with self._lock:
            now = self.clock()
            self._trim(now)
            self._firsts.append(now)

    def try_retry(self) -> bool:
        """Spend one retry if the window allows it; False (and counted) when it does not."""
        with self._lock:
            now = self.clock()
            self._trim(now)
            allowed = max(self.ratio * len(self._firsts), float(self.min_retries))
            if len(self._retries) + 1 > allowed:
                self.refused += 1
                return False
            self._retries.append(now)
            return True

    def counts(self) -> tuple[int, int]:
        """(first attempts, retries) in the current window."""
        with self._lock:
            self._trim(self.clock())
            return len(self._firsts), len(self._retries)

    def _trim(self, now: float) -> None:
        edge = now - self.window_s
        for q in (self._firsts, self._retries):
            while q and q[0] <= edge:
                q.popleft()


@dataclass(frozen=True)
class RetryPolicy:
    """Per call: how many attempts at most, the backoff, and the time by which the last attempt must start."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    deadline: float | None = None  # on `clock`; no retry is started whose backoff would end past it
    budget: RetryBudget | None = None
    sleep: Callable[[float], None] = time.sleep  # injectable so tests need no real sleeps
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random  # in [0, 1]; a constant 1.0 gives the plain exponential

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Exponential backoff with equal jitter: half the step is fixed, half random, so callers that failed
        together do not come back together, yet none retries at once."""
        step = min(self.max_wait, self.initial_wait * 2 ** (state.attempt_number - 1))
        return step * (0.5 + 0.5 * self.jitter())


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    transient: Callable[[BaseException], bool],
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> T:
    """fn() with retries of transient failures: exponential backoff with jitter, at most `attempts`, never
    past the deadline, and each retry paid from the budget. The last failure is re-raised as is."""
    budget = policy.budget
    if budget is not None:
        budget.first_attempt()

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= max(1, policy.attempts):
            return True
        upcoming = state.upcoming_sleep or 0.0
        if policy.deadline is not None and policy.clock() + upcoming >= policy.deadline:
            return True
        return budget is not None and not budget.try_retry()

    retrying = tenacity.Retrying(
        stop=stop,
        wait=policy.wait,
        retry=tenacity.retry_if_exception(transient),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
