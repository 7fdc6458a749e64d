"""The one backoff policy: doubling to a cap within a streak, a new streak after success or a long enough run, and
each caller's numbers (a failed load, a dead worker process, a dead server)."""

from __future__ import annotations

import threading

import pytest

from hf_provider.resilience.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_failure_of_a_streak_doubles_the_wait_up_to_the_cap_and_success_starts_over() -> None:
    b = Backoff(first=1.0, cap=30.0)
    assert [b.failed() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.streak == 7
    b.succeeded()
    assert b.streak == 0 and b.failed() == 1.0


def test_without_reset_s_time_alone_never_ends_a_streak() -> None:
    clock = Clock()
    b = Backoff(first=1.0, cap=30.0, clock=clock)
    b.failed()
    clock.now += 10**6
    assert b.failed() == 2.0


def test_a_run_of_reset_s_before_the_failure_starts_a_new_streak_on_the_injected_clock() -> None:
    clock = Clock()
    b = Backoff(first=0.25, cap=30.0, reset_s=60.0, clock=clock)
    assert [b.failed(), b.failed()] == [0.25, 0.5]
    b.started()
    clock.now += 59.9  # not quite a minute
    assert b.failed() == 1.0
    b.started()
    clock.now += 60.0
    assert b.failed() == 0.25
    assert b.failed(ran_s=60.0) == 0.25  # a run the caller measured itself counts the same
    assert b.failed(ran_s=1.0) == 0.5


def test_a_very_long_streak_stays_at_the_cap() -> None:
    # 2 ** 1024 does not fit a float: the hand-written curves raised OverflowError after ~1000 failures
    b = Backoff(first=1.0, cap=30.0)
    b.streak = 5000
    assert b.failed() == 30.0


def test_concurrent_failures_each_count_once() -> None:
    b = Backoff(first=0.0, cap=0.0)
    threads = [threading.Thread(target=lambda: [b.failed() for _ in range(200)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.streak == 1600


@pytest.mark.parametrize(("first", "cap"), [(-1.0, 30.0), (5.0, 1.0)])
def test_an_impossible_curve_is_refused_at_construction(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(first=first, cap=cap)


def test_each_caller_keeps_its_numbers() -> None:
    from hf_provider.isolation.procworker import ProcessWorker
    from hf_provider.models.entry import LOAD_BACKOFF_S, Entry
    from hf_provider.resilience.respawn import Respawner
    from hf_provider.spec import ModelSpec

    spec = ModelSpec(name="m", source="org/m")  # nothing is loaded or started
    load = Entry(spec).load_backoff  # a failed load: 1, 2, 4... 30 s, until a load works
    assert LOAD_BACKOFF_S == (1.0, 30.0) and load.reset_s is None
    assert [load.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    worker = ProcessWorker(spec, "unused", None).backoff  # a dead worker process
    assert (worker.first, worker.cap, worker.reset_s) == (0.25, 30.0, 60.0)
    server = Respawner(["serve"]).backoff  # a dead server under `hfp serve`
    assert (server.first, server.cap, server.reset_s) == (0.5, 30.0, 60.0)
