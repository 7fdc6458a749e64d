"""Retries inside a budget: backoff with jitter, the deadline, and a shared budget that bounds amplification."""

from __future__ import annotations

import pytest

from hf_provider.resilience.retry import RetryBudget, RetryPolicy, call_with_retries


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class Flaky(Exception):
    pass


def failing(counter: list[int], fails: int = 10**9):
    def fn() -> str:
        counter[0] += 1
        if counter[0] <= fails:
            raise Flaky(f"attempt {counter[0]}")
        return "ok"

    return fn


def transient(e: BaseException) -> bool:
    return isinstance(e, Flaky)


def test_all_failing_dependency_sees_at_most_1_2x_its_callers_attempts() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window_s=10, clock=clock)
    policy = RetryPolicy(attempts=4, budget=budget, sleep=clock.sleep, clock=clock, jitter=lambda: 0.0)
    calls = [0]
    for i in range(500):  # 500 callers over 50 s of fake time: 10 per second
        clock.now = i * 0.1
        with pytest.raises(Flaky):
            call_with_retries(failing(calls), policy, transient=transient)
    assert calls[0] <= 1.2 * 500 + budget.min_retries
    assert calls[0] > 500  # retries did happen, within the budget
    assert budget.refused > 0


def test_a_lone_call_still_gets_a_retry_and_the_window_refills() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window_s=10, min_retries=1, clock=clock)
    policy = RetryPolicy(attempts=5, budget=budget, sleep=clock.sleep, clock=clock, jitter=lambda: 1.0)
    calls = [0]
    assert call_with_retries(failing(calls, fails=1), policy, transient=transient) == "ok"
    assert calls[0] == 2
    calls = [0]
    with pytest.raises(Flaky):  # the window's one retry is spent: no second one
        call_with_retries(failing(calls, fails=1), policy, transient=transient)
    assert calls[0] == 1
    clock.now += 11  # the window slides past both
    calls = [0]
    assert call_with_retries(failing(calls, fails=1), policy, transient=transient) == "ok"


def test_no_retry_starts_past_the_deadline() -> None:
    clock = Clock()
    policy = RetryPolicy(
        attempts=10,
        initial_wait=1.0,
        max_wait=8.0,
        deadline=5.0,
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 1.0,
    )
    calls = [0]
    with pytest.raises(Flaky):
        call_with_retries(failing(calls), policy, transient=transient)
    # waits 1, 2 (t=3); the next wait of 4 would end at 7 > 5: stop after 3 attempts, before the deadline
    assert calls[0] == 3 and clock.now == 3.0


def test_permanent_errors_are_not_retried_nor_charged() -> None:
    budget = RetryBudget()
    calls = [0]

    def fn() -> None:
        calls[0] += 1
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        call_with_retries(fn, RetryPolicy(budget=budget, sleep=lambda _s: None), transient=transient)
    assert calls[0] == 1 and budget.counts() == (1, 0)


def test_backoff_is_exponential_with_equal_jitter() -> None:
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0])  # the wait is drawn before the stop check
    sleeps: list[float] = []
    policy = RetryPolicy(
        attempts=5, initial_wait=1.0, max_wait=4.0, sleep=sleeps.append, jitter=lambda: next(draws)
    )
    with pytest.raises(Flaky):
        call_with_retries(failing([0]), policy, transient=transient)
    assert sleeps == [0.5, 2.0, 3.0, 2.0]  # steps 1, 2, 4, 4 (capped) x (0.5 + 0.5 x draw)
