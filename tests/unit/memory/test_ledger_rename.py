"""Accountant.rename: a swap re-labels two versions' bytes without freeing them in between."""

from __future__ import annotations

import pytest

from hf_provider.memory.budget import Accountant, MemoryBudget


def test_rename_onto_a_held_name_is_refused_and_changes_nothing() -> None:
    a = Accountant(MemoryBudget(host=1000))
    assert a.reserve("m", "host", 300) and a.reserve("m@new", "host", 300)
    with pytest.raises(ValueError, match="already holds bytes"):
        a.rename("m@new", "m")
    assert a.snapshot()["models"] == {
        "m": {"host": {"bytes": 300, "state": "reserved"}},
        "m@new": {"host": {"bytes": 300, "state": "reserved"}},
    }


def test_rename_moves_every_pool_and_keeps_the_total() -> None:
    a = Accountant(MemoryBudget(host=1000, gpus={0: 1000}))
    a.commit("m", "host", 200)
    a.commit("m", "cuda:0", 500)
    a.commit("m@v2", "cuda:0", 400)
    a.rename("m", "m@v1")
    a.rename("m@v2", "m")
    models = a.snapshot()["models"]
    assert models["m@v1"] == {
        "host": {"bytes": 200, "state": "committed"},
        "cuda:0": {"bytes": 500, "state": "committed"},
    }
    assert models["m"] == {"cuda:0": {"bytes": 400, "state": "committed"}}
    assert a.used("cuda:0") == 900 and a.free("cuda:0") == 100
    a.rename("absent", "x")  # nothing held: nothing moves
    assert "x" not in a.snapshot()["models"]
