"""Admission policy (pure): the service-rate estimate and the refusal rule."""

from __future__ import annotations

import pytest

from hf_provider.scheduling.shedding import ServiceRate, refusal


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
        (0.4, 1.0, 0, False),
        (0.6, 1.0, 0, True),
        (0.2, 1.0, 1, False),
        (0.3, 1.0, 1, True),  # bulk is shed first
    ],
)
def test_refusal(wait: float | None, remaining: float, priority: int, refused: bool) -> None:
    retry = refusal(wait, remaining, priority)
    assert (retry is not None) == refused
    if retry is not None:
        assert retry >= 1.0
