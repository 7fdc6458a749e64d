"""Admission policy (pure): the service-rate estimate and the refusal rule."""

from __future__ import annotations

import pytest

from hf_provider.scheduling.shedding import RetryAfter, ServiceRate, refusal


def test_service_rate_uses_back_to_back_completions_under_backlog() -> None:
    r = ServiceRate(alpha=1.0)
    assert r.wait_s(10) is None  # no batch yet: nothing to refuse on
    r.observe(8, started=0.0, done=0.5)  # a lone batch: 16 items/s
    assert r.items_per_s == pytest.approx(16)
    r.observe(8, started=0.1, done=0.7)  # started while the previous one ran: 8 items in 0.2 s
    assert r.items_per_s == pytest.approx(40)
    assert r.wait_s(20) == pytest.approx(0.5)


def test_service_rate_smooths_and_ignores_empty_samples() -> None:
    r = ServiceRate(alpha=0.5)
    r.observe(10, 0.0, 1.0)
    r.observe(30, 1.0, 2.0)
    assert r.items_per_s == pytest.approx(20)
    r.observe(0, 2.0, 3.0)
    r.observe(5, 3.0, 3.0)
    assert r.items_per_s == pytest.approx(20)


@pytest.mark.parametrize(
    ("wait", "remaining", "priority", "refused"),
    [
        (None, 0.01, 0, False),  # unknown rate
        (0.0, 0.0001, 0, False),  # nothing ahead
        (0.2, 1.0, 0, False),  # interactive may wait up to 20% of the time left
        (0.25, 1.0, 0, True),
        (0.1, 1.0, 1, False),  # bulk only up to 10%: it is shed first
        (0.15, 1.0, 1, True),
    ],
)
def test_refusal(wait: float | None, remaining: float, priority: int, refused: bool) -> None:
    retry = refusal(wait, remaining, priority)
    assert (retry is not None) == refused
    if retry is not None:
        assert retry >= 1.0


def test_retry_after_grows_under_a_refusal_storm_and_shrinks_after() -> None:
    ra = RetryAfter(target_share=0.5)
    t = 0.0
    for _ in range(5):  # 5 seconds of 400 refusals/s against a service rate of 100/s (target 50/s)
        for _ in range(400):
            t += 1 / 400
            ra.refused(t, service_rate=100.0)
    assert ra.value_s >= 16  # doubled (the step limit) every second
    storm = ra.value_s
    for _ in range(10):  # then 5 refusals/s: below half the target
        for _ in range(5):
            t += 1 / 5
            ra.refused(t, service_rate=100.0)
    assert 1.0 <= ra.value_s < storm / 8
    assert ra.seconds(0.0) == max(1.0, 0.5 * ra.value_s) and ra.seconds(0.999) <= 1.5 * ra.value_s
    assert RetryAfter(value_s=1.0).seconds(0.0) == 1.0  # never below a second


def test_retry_after_is_capped_and_needs_a_rate() -> None:
    ra = RetryAfter(max_s=10.0)
    for i in range(10_000):
        ra.refused(i / 1000, service_rate=1.0)
    assert ra.value_s == 10.0
    # the spread around it stays under the cap too: keep_alive_s (65 s) must outlast the longest Retry-After
    assert max(ra.seconds(u / 100) for u in range(100)) == 10.0
    assert max(RetryAfter(value_s=60.0).seconds(0.999), RetryAfter().seconds(0.0)) == 60.0
    idle = RetryAfter()
    for i in range(1000):
        idle.refused(i / 100, service_rate=None)  # no measured rate yet: nothing to compare with
    assert idle.value_s == 1.0


def test_items_that_fit_one_batch_wait_one_batch_not_the_lone_request_rate() -> None:
    r = ServiceRate(alpha=1.0)
    r.observe(1, started=0.0, done=0.025)  # idle: one lone request in 25 ms, 40 items/s
    r.observe_batch(0.025)
    assert r.wait_s(32) == pytest.approx(0.8)  # the rate alone: a burst of 32 would wait 0.8 s
    assert r.wait_s(32, one_batch=32) == pytest.approx(0.025)  # they are served by one batch
    assert r.wait_s(33, one_batch=32) == pytest.approx(33 / 40)  # past one batch the rate decides
    assert ServiceRate().wait_s(5, one_batch=32) is None  # nothing measured yet
