"""The circuit breaker's state machine with a fake clock: no sleeps."""

from __future__ import annotations

import threading

import pytest

from hf_provider import errors as E
from hf_provider.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, Ticket, verdict
from hf_provider.spec import BreakerSpec, ModelSpec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticket(b: Breaker) -> Ticket:
    t = b.allow()
    assert isinstance(t, Ticket), f"refused, retry in {t}"
    return t


def opened(failures: int = 3, cooldown: float = 10.0, probes: int = 1) -> tuple[Breaker, Clock, list]:
    clock, changes = Clock(), []
    b = Breaker(
        failures, cooldown, probes, clock=clock, on_change=lambda old, new: changes.append((old, new))
    )
    for _ in range(failures):
        b.record(ticket(b), False)
    assert b.state == OPEN
    return b, clock, changes


def test_opens_after_threshold_of_consecutive_failures() -> None:
    clock = Clock()
    b = Breaker(3, 10.0, clock=clock)
    for _ in range(2):
        b.record(ticket(b), False)
    b.record(ticket(b), True)  # a success resets the run
    for _ in range(2):
        b.record(ticket(b), False)
    assert b.state == CLOSED and b.describe()["failures"] == 2
    b.record(ticket(b), False)
    assert b.state == OPEN and b.openings == 1
    left = b.allow()
    assert left == pytest.approx(10.0)
    clock.now += 4
    assert b.allow() == pytest.approx(6.0)
    view = b.describe()
    assert view["state"] == "open" and view["retry_after_s"] == pytest.approx(6.0)
    assert view["opened_at"] == 1000.0 and view["failures"] == 3


def test_client_errors_refusals_and_cancellations_are_not_failures() -> None:
    b = Breaker(2, 10.0, clock=Clock())
    not_counted = [
        ("error", E.InvalidInput("bad")),
        ("error", E.TaskNotSupported("m", "t", [])),
        ("rejected", E.Overloaded("busy")),
        ("error", E.Overloaded("busy")),
        ("cancelled", E.Cancelled("left")),
        ("timed_out", E.DeadlineExceeded("late")),
        ("error", E.ShuttingDown("bye")),
    ]
    for outcome, error in not_counted * 3:
        assert verdict(outcome, error) is None
        b.settle(ticket(b), outcome, error)
    assert b.state == CLOSED and b.describe()["failures"] == 0
    # 5xx classes: internal errors, unrecovered OOM, device errors
    for error in (
        RuntimeError("boom"),
        E.OutOfMemory("oom"),
        RuntimeError("CUDA error: illegal memory access"),
    ):
        assert verdict("error", error) is False
    assert verdict("ok", None) is True
    b.settle(ticket(b), "error", RuntimeError("boom"))
    b.settle(ticket(b), "error", E.OutOfMemory("oom"))
    assert b.state == OPEN


def test_cooldown_then_half_open_admits_probes_and_closes_on_success() -> None:
    b, clock, changes = opened(cooldown=10.0)
    clock.now += 9.999
    assert isinstance(b.allow(), float)
    clock.now += 0.001
    assert b.state == HALF_OPEN
    probe = ticket(b)
    assert probe.probe
    assert isinstance(b.allow(), float)  # the one probe is out
    b.record(probe, True)
    assert b.state == CLOSED
    assert not ticket(b).probe
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert b.describe() == {
        "state": "closed",
        "failures": 0,
        "opened_at": None,
        "retry_after_s": None,
        "openings": 1,
    }


def test_failed_probe_reopens_for_a_new_cooldown() -> None:
    b, clock, _ = opened(cooldown=10.0)
    clock.now += 10
    b.record(ticket(b), False)
    assert b.state == OPEN and b.openings == 2
    assert b.allow() == pytest.approx(10.0)  # counted from the probe's failure


def test_probe_released_without_verdict_gives_its_ticket_back() -> None:
    b, clock, _ = opened()
    clock.now += 10
    probe = ticket(b)
    assert isinstance(b.allow(), float)
    b.settle(probe, "cancelled", E.Cancelled("left"))  # no verdict: the ticket goes back
    assert b.state == HALF_OPEN
    again = ticket(b)
    b.settle(again, "timed_out", E.DeadlineExceeded("late"))
    b.release(ticket(b))  # refused at admission, or failed parsing: never queued
    b.record(ticket(b), True)
    assert b.state == CLOSED


def test_k_probes_must_all_succeed() -> None:
    b, clock, _ = opened(probes=2)
    clock.now += 10
    p1, p2 = ticket(b), ticket(b)
    assert isinstance(b.allow(), float)
    b.record(p1, True)
    assert b.state == HALF_OPEN
    b.record(p2, True)
    assert b.state == CLOSED


def test_verdicts_of_requests_admitted_before_a_transition_are_ignored() -> None:
    clock = Clock()
    b = Breaker(2, 10.0, clock=clock)
    old = [ticket(b) for _ in range(3)]
    b.record(old[0], False)
    b.record(old[1], False)
    assert b.state == OPEN
    clock.now += 10
    probe = ticket(b)
    b.record(old[2], False)  # a slow request from before the opening fails now: not a probe's verdict
    assert b.state == HALF_OPEN
    b.record(probe, True)
    assert b.state == CLOSED


def race(b: Breaker, callers: int = 100) -> list[Ticket | float]:
    """`callers` threads released together, each calling allow() once."""
    start = threading.Barrier(callers)
    got: list[Ticket | float] = []

    def call() -> None:
        start.wait()
        got.append(b.allow())

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


@pytest.mark.parametrize("probes", [1, 3])
def test_exactly_k_probes_among_100_concurrent_callers(probes: int) -> None:
    for _ in range(50):
        b, clock, _ = opened(probes=probes)
        clock.now += 10
        got = race(b)
        tickets = [t for t in got if isinstance(t, Ticket)]
        assert len(got) == 100 and len(tickets) == probes and all(t.probe for t in tickets)
        assert all(isinstance(x, float) and x >= 1.0 for x in got if not isinstance(x, Ticket))


def test_disabled_admits_everything() -> None:
    b = Breaker(0, 10.0, clock=Clock())
    for _ in range(20):
        b.record(ticket(b), False)
    assert b.state == CLOSED and b.describe()["state"] == "disabled"


def test_invalid_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="0 disables"):
        Breaker(-1)
    with pytest.raises(ValueError, match="probes"):
        Breaker(probes=0)


def test_spec_parses_durations_and_defaults() -> None:
    assert ModelSpec(name="m", source="s").breaker == BreakerSpec(failures=5, cooldown=30.0, probes=1)
    spec = ModelSpec(name="m", source="s", breaker={"failures": 3, "cooldown": "250ms", "probes": 2})
    assert spec.breaker is not None and spec.breaker.cooldown == 0.25
    assert ModelSpec(name="m", source="s", breaker=None).breaker is None
    with pytest.raises(ValueError, match="invalid duration"):
        ModelSpec(name="m", source="s", breaker={"cooldown": "soon"})
    with pytest.raises(ValueError):
        ModelSpec(name="m", source="s", breaker={"probes": 0})
