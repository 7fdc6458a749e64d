"""Canary policy: the counter-based split, the abort rule, the per-revision tally."""

from __future__ import annotations

import threading

import pytest

from hf_provider.lifecycle.canary import Counts, Splitter, Tally, abort_reason
from hf_provider.types import Outcome


@pytest.mark.parametrize("percent", [0, 100, -5, 150])
def test_percent_out_of_range_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        Splitter(percent)


@pytest.mark.parametrize("percent", [10, 1, 33.3, 50, 99])
def test_split_is_exact_over_every_100_calls(percent: float) -> None:
    s = Splitter(percent)
    picks = [s.candidate() for _ in range(2000)]
    assert sum(picks) == round(2000 * percent / 100)
    for start in range(0, 2000, 100):  # not only on average: every window of 100 carries its share
        assert abs(sum(picks[start : start + 100]) - percent) <= 1


def test_split_under_threads_keeps_the_total() -> None:
    s = Splitter(10)
    hits: list[int] = []

    def run() -> None:
        hits.append(sum(s.candidate() for _ in range(500)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(hits) == 200


def _counts(**outcomes: int) -> Counts:
    c = Counts()
    for outcome, n in outcomes.items():
        for _ in range(n):
            c.add(outcome, 0.01)
    return c


def test_no_verdict_before_min_requests() -> None:
    assert abort_reason(_counts(error=19), _counts(ok=100), margin=0.05, min_requests=20) is None


def test_abort_when_the_candidate_fails_more_than_the_margin() -> None:
    why = abort_reason(_counts(ok=14, error=6), _counts(ok=100), margin=0.05, min_requests=20)
    assert why is not None and "30.0%" in why and "0.0%" in why


def test_no_abort_within_the_margin_of_the_primary() -> None:
    # both fail 20%: the candidate is no worse
    assert abort_reason(_counts(ok=16, error=4), _counts(ok=80, error=20), 0.05, 20) is None
    # 4 points worse, margin 5
    assert abort_reason(_counts(ok=76, error=24), _counts(ok=80, error=20), 0.05, 20) is None


def test_rejections_and_cancellations_are_not_judged() -> None:
    c = _counts(ok=20, rejected=50, cancelled=50, timed_out=0)
    assert c.judged == 20 and c.error_rate == 0.0
    assert abort_reason(c, _counts(ok=10), 0.05, 20) is None
    assert _counts(ok=10, timed_out=10).error_rate == 0.5  # a deadline missed is the server's failure


def test_tally_counts_each_outcome_and_judges() -> None:
    judged: list[int] = []
    counts = Counts()
    t = Tally(counts, lambda: judged.append(1))
    t(Outcome("m", "embeddings", "ok", 0.02, 1, 3, "abc"))
    t(Outcome("m", "embeddings", "error", 0.04, 1, 3, "abc", error=RuntimeError("x")))
    assert counts.outcomes == {"ok": 1, "error": 1} and len(judged) == 2
    assert counts.describe()["mean_latency_ms"] == 30.0
