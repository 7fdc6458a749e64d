"""Admission on a real scheduler with a fake clock: refusal by estimated wait (bulk work first), the queue bound,
late refusal of queued requests that can no longer start in time, and no refusal of what fits one batch.
The scheduler raises its refusals; the Provider records them (tests/integration/test_outcomes.py)."""

from __future__ import annotations

import threading

import pytest
from tests.unit.scheduling.test_scheduler import WAIT, Clock, Prepared, make, submit

from hf_provider.errors import Overloaded


def test_admission_refuses_what_cannot_meet_its_deadline_and_sheds_batch_first() -> None:
    clock = Clock()
    sched, h, obs, _ = make(clock=clock)
    h.gate = threading.Event()
    submit(sched, h, 0)
    assert h.entered.wait(WAIT)
    sched.rate.items_per_s = 10.0  # measured service rate: 10 items/s
    for i in range(8):
        submit(sched, h, i, deadline=clock.now + 10)  # up to 0.7 s of queue ahead: fits a 10 s deadline
    with pytest.raises(Overloaded) as refused:
        submit(sched, h, 8, deadline=clock.now + 2.0)  # 0.8 s estimated wait > 25% of 2 s
    assert refused.value.retry_after and refused.value.retry_after >= 1
    submit(sched, h, 9, deadline=clock.now + 4.0)  # 0.8 s estimated: fits 25% of 4 s
    with pytest.raises(Overloaded):
        submit(sched, h, 9, priority=1, deadline=clock.now + 4.0)  # 0.9 s > 12.5% of 4 s: bulk is shed first
    # Raised, not recorded: the Provider records the refusals it gets (tests/unit/provider/test_outcomes.py).
    assert [o for o, _ in obs.outcomes].count("rejected") == 0
    assert sched.in_flight == 10  # refused requests never counted as in flight
    h.gate.set()
    sched.close()
    assert sched.in_flight == 0


def test_a_burst_that_fits_one_batch_is_not_refused_on_the_idle_rate() -> None:
    clock = Clock()
    h = Prepared()
    sched, h, obs, _ = make(h, clock=clock, max_batch_size=8)
    h.gate = threading.Event()
    submit(sched, h, 0)
    assert h.entered.wait(WAIT)
    # One full batch taken and preprocessed behind the running one: the collector now waits for the device to
    # take it, so it cannot form (or shed from) a batch while the burst arrives, and admission sees every item.
    submit(sched, h, list(range(8)))
    assert h.prepared.wait(WAIT)
    sched.rate.items_per_s, sched.rate.batch_s = 4.0, 0.05  # measured idle: lone requests, 50 ms each
    for i in range(9):  # the 9th waits for 8 items: 2 s at 4/s, but one batch of about 50 ms
        submit(sched, h, i, deadline=clock.now + 1.0)
    with pytest.raises(Overloaded):
        submit(sched, h, 9, deadline=clock.now + 1.0)  # past one batch the rate decides: 9 / 4 = 2.25 s
    assert [o for o, _ in obs.outcomes].count("rejected") == 0  # raised: the Provider records it
    h.gate.set()
    sched.close()


def test_a_large_request_on_an_idle_model_is_computed_not_refused_on_the_lone_request_rate() -> None:
    # The README's example: a first lone request measured 4 items/s; 64 items at that rate would take 16 s,
    # but they are one batch, served by the idle model at once.
    clock = Clock()
    sched, h, obs, _ = make(clock=clock, max_batch_size=64)
    sched.rate.items_per_s, sched.rate.batch_s = 4.0, 0.5
    req = submit(sched, h, list(range(64)), deadline=clock.now + 2.0)
    assert req.result(WAIT) is not None
    assert [o for o, _ in obs.outcomes] == ["ok"]
    sched.close()


def test_hard_queue_bound_still_applies() -> None:
    sched, h, _, _ = make(max_queue=3)
    h.gate = threading.Event()
    submit(sched, h, 0)
    assert h.entered.wait(WAIT)
    submit(sched, h, [1, 2, 3])
    with pytest.raises(Overloaded, match="limit 3"):
        submit(sched, h, 4)
    h.gate.set()
    sched.close()


def test_queued_requests_that_cannot_start_in_time_are_refused_not_timed_out() -> None:
    clock = Clock()
    sched, h, obs, _ = make(clock=clock)
    h.gate = threading.Event()
    submit(sched, h, 0)
    assert h.entered.wait(WAIT)
    sched.rate.items_per_s = 100.0  # admission believed 100 items/s...
    early = [submit(sched, h, i, deadline=clock.now + 10) for i in range(1, 4)]
    late = submit(sched, h, 4, deadline=clock.now + 1)  # 0.03 s ahead: admitted
    sched.rate.items_per_s, sched.rate.batch_s = (
        2.0,
        1.5,
    )  # ...then the device slowed down: a batch takes 1.5 s
    h.gate.set()
    with pytest.raises(Overloaded, match="cannot finish within its deadline") as e:
        late.result(WAIT)
    assert e.value.retry_after >= 1
    assert [r.result(WAIT) for r in early] == [2, 4, 6]
    assert 4 not in h.seen
    assert ("rejected", "Overloaded") in obs.outcomes and "timed_out" not in [o for o, _ in obs.outcomes]
    sched.close()
