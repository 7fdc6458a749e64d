"""The admin views as functions of a snapshot: taken from entries alone, or built by hand."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from hf_provider.memory.budget import Accountant, MemoryBudget
from hf_provider.models import views
from hf_provider.models.entry import Entry
from hf_provider.spec import ModelSpec


def state(name: str, **kw: Any) -> views.ModelState:
    base: dict[str, Any] = {
        "name": name,
        "spec": ModelSpec(name=name, source=f"org/{name}", priority=2, keep_alive=30.0),
        "state": "unloaded",
        "loaded": None,
        "weight_bytes": None,
        "scheduled": False,
        "queued": 0,
        "in_flight": 0,
        "estimated_bytes": None,
        "accounted_bytes": 0,
        "working_bytes": 0,
        "working_peak": None,
        "last_used": None,
        "loads": 0,
        "error": None,
        "quantization_cosine": None,
        "breaker": None,
        "runner": {},
    }
    base.update(kw)
    return views.ModelState(**base)


def test_a_snapshot_of_unloaded_entries_shows_their_specs_and_an_empty_ledger() -> None:
    accountant = Accountant(MemoryBudget(host=1000))
    entries = {"a": Entry(ModelSpec(name="a", source="org/a", tasks=["embeddings"]))}
    entries["a"].error = "it broke"
    snap = views.take(entries.items(), accountant, time.monotonic)
    [a] = views.describe(snap)
    assert (a["name"], a["source"], a["tasks"], a["state"], a["error"]) == (
        "a",
        "org/a",
        ["embeddings"],
        "failed",  # not serving because its last load failed: the error is its reason
        "it broke",
    )
    assert (
        a["commit"] is None and a["weight_bytes"] is None and a["last_used"] is None and a["breaker"] is None
    )
    assert views.memory_view(snap)["host_budget_bytes"] == 1000 and "gpus" not in views.memory_view(snap)
    assert (
        views.queued_items(snap) == 0
        and views.in_flight_by_model(snap) == {}
        and views.model_bytes(snap) == {}
    )


def test_the_snapshot_is_frozen_and_does_not_follow_the_entries() -> None:
    entries = {"a": Entry(ModelSpec(name="a", source="org/a"))}
    snap = views.take(entries.items(), Accountant(MemoryBudget()), time.monotonic)
    entries["a"].state = "loading"
    entries["b"] = Entry(ModelSpec(name="b", source="org/b"))
    assert [(m.name, m.state) for m in snap.models] == [("a", "unloaded")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.models[0].state = "ready"  # type: ignore[misc]


def test_a_loaded_model_shows_what_its_weights_scheduler_breaker_and_worker_report() -> None:
    loaded = {"commit": "c0ffee", "device": "cpu", "dtype": "float32", "weight_bytes": 400}
    breaker = {"state": "open", "failures": 3, "opened_at": 12.0, "retry_after_s": 5.0, "openings": 1}
    snap = views.Snapshot(
        models=(
            state(
                "a",
                state="ready",
                loaded=loaded,
                weight_bytes=400,
                scheduled=True,
                queued=3,
                in_flight=2,
                accounted_bytes=450,
                working_bytes=50,
                loads=1,
                breaker=breaker,
                runner={"pid": 4242, "restarts": 1, "state": "failed"},
            ),
            state("b"),
        ),
        pools={
            "host": {"budget_bytes": None, "used_bytes": 450},
            "cuda:0": {"budget_bytes": 8, "used_bytes": 0},
        },
    )
    a, b = views.describe(snap)
    assert (a["commit"], a["weight_bytes"], a["queued"], a["in_flight"]) == ("c0ffee", 400, 3, 2)
    assert (a["working_bytes_estimated"], a["priority"], a["keep_alive"]) == (50, 2, 30.0)
    assert (a["pid"], a["restarts"], a["state"]) == (4242, 1, "failed")  # the worker's view wins
    assert a["breaker"] == breaker and a["breaker"] is not breaker  # a copy: callers may change theirs
    assert (b["state"], b["pid"], b["restarts"], b["working_bytes_estimated"]) == ("unloaded", None, 0, None)
    assert views.queued_items(snap) == 3
    assert views.in_flight_by_model(snap) == {"a": 2}
    assert views.model_bytes(snap) == {"a": {"weight_bytes": 400, "accounted_bytes": 450}}
    memory = views.memory_view(snap)
    assert memory["host_used_bytes"] == 450 and memory["gpus"] == {
        "cuda:0": {"budget_bytes": 8, "used_bytes": 0}
    }
    assert set(memory["pools"]) == {"host", "cuda:0"}
