"""Five models whose total accounted size is 2.5 times the host budget, served in rotation by several
threads: no request fails, the accounted memory never exceeds the budget, and models are evicted and loaded
again."""

from __future__ import annotations

import torch
from tests.conftest import TINY_CACHE
from transformers import PreTrainedModel

from hf_provider.testing.workload import run_rotation


def test_rotating_workload_over_2_5_times_the_budget() -> None:
    tie_weights, normal_ = PreTrainedModel.tie_weights, torch.nn.init.normal_
    result = run_rotation(TINY_CACHE, ratio=2.5, threads=4, rounds=10)

    assert result.failed == 0, result.errors[:5]
    assert result.requests == 40
    assert 2.4 <= result.total_bytes / result.budget_bytes <= 2.6
    assert 0 < result.peak_bytes <= result.budget_bytes, result.summary()
    assert any(n > 1 for n in result.loads.values()), result.loads  # evicted and loaded again
    assert sum(result.loads.values()) > len(result.loads)
    # Loads on several threads must not leave transformers' load-time patches installed (manager._LOAD_LOCK).
    assert PreTrainedModel.tie_weights is tie_weights
    assert torch.nn.init.normal_ is normal_
