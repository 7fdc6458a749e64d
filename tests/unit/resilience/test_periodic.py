"""The one background writer (resilience/periodic.py): due actions run in turn, a failing one is counted and
retried at its next turn, and stop ends the thread. A fake clock drives `run_due`: no sleeps."""

from __future__ import annotations

import pytest

from hf_provider.resilience.periodic import Periodic
from hf_provider.resilience.supervisor import Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_action_runs_at_its_own_interval_and_a_late_turn_is_not_replayed() -> None:
    clock, ran = Clock(), []
    p = Periodic("t", clock=clock)
    p.every(1.0, "fast", lambda: ran.append("fast"))
    p.every(5.0, "slow", lambda: ran.append("slow"), first_s=5.0)
    for t in p._tasks:  # as start() would set them, without a thread
        t.due += clock.now
    assert p.run_due() == 101.0 and ran == ["fast"]
    clock.now = 104.5
    assert p.run_due() == 105.0 and ran == ["fast", "fast"]  # four missed turns run once
    clock.now = 105.0
    p.run_due()
    assert ran == ["fast", "fast", "fast", "slow"]


def test_a_failing_action_is_counted_under_its_component_and_runs_again() -> None:
    clock, calls, errors = Clock(), [], []

    def flaky() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("disk full")

    p = Periodic("t", clock=clock, on_error=errors.append)
    p.every(1.0, "history-writer", flaky)
    p.run_due()
    clock.now += 1
    p.run_due()
    assert errors == ["history-writer"] and len(calls) == 2


def test_with_a_supervisor_a_failure_marks_the_component_and_the_next_run_clears_it() -> None:
    clock, sv, fail = Clock(), Supervisor(), [True]

    def action() -> None:
        if fail[0]:
            raise OSError("locked")

    p = Periodic("t", clock=clock)
    p.supervisor = sv
    p.every(1.0, "error-reports", action)
    p.run_due()
    assert sv.errors["error-reports"] == 1 and "error-reports" in sv.down()
    fail[0] = False
    clock.now += 1
    p.run_due()
    assert "error-reports" not in sv.down()


def test_stop_ends_the_thread_and_a_stopped_writer_does_not_start_again() -> None:
    p = Periodic("t")
    p.every(0.01, "tick", lambda: None)
    p.start()
    assert p.running
    p.stop(timeout=5)
    assert not p._thread.is_alive()  # type: ignore[union-attr]


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Periodic("t").every(0, "x", lambda: None)
