"""MemoryAdmission built alone: a ledger, a table of entries and an unload callback, no manager, no models."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.memory.budget import Accountant, MemoryBudget
from hf_provider.models.admission import MemoryAdmission, cpu_fallback
from hf_provider.models.entry import Entry
from hf_provider.settings import MemorySettings
from hf_provider.spec import ModelSpec

NOW = 1000.0


class Table:
    """Entries resident in a host budget, and the admission over them; `unloads` records each unload asked."""

    def __init__(self, budget: int, *, load_wait_s: float = 0.2, reclaim: Any = None) -> None:
        self.accountant = Accountant(MemoryBudget(host=budget))
        self.entries: dict[str, Entry] = {}
        self.unloads: list[tuple[str, str, bool]] = []
        settings = MemorySettings(min_residency_s=0, load_wait_s=load_wait_s)
        self.admission = MemoryAdmission(
            self.accountant, settings, self.entries, unload=self.unload, reclaim=reclaim, clock=lambda: NOW
        )

    def resident(self, name: str, nbytes: int, *, last_used: float = 900.0, **spec: Any) -> Entry:
        e = Entry(ModelSpec(name=name, source=name, **spec), state="ready", pool="host")
        e.accounted_bytes, e.last_used = nbytes, last_used
        assert self.accountant.reserve(name, "host", nbytes)
        self.accountant.commit(name, "host", nbytes)
        self.entries[name] = e
        return e

    def unload(self, name: str, reason: str = "manual", *, only_if_idle: bool = False) -> bool:
        self.unloads.append((name, reason, only_if_idle))
        e = self.entries[name]
        e.state, e.accounted_bytes = "unloaded", 0
        self.accountant.release(name)
        return True


def test_a_load_that_fits_is_reserved_without_eviction() -> None:
    t = Table(1000)
    t.resident("a", 400)
    t.admission.admit("new", "host", 500)
    assert t.unloads == [] and t.accountant.used("host") == 900


def test_a_load_that_does_not_fit_evicts_the_least_recently_used_idle_model() -> None:
    t = Table(1000)
    t.resident("old", 400, last_used=100.0)
    t.resident("recent", 400, last_used=950.0)
    t.admission.admit("new", "host", 500)
    assert t.unloads == [("old", "evicted", True)]
    assert t.entries["recent"].state == "ready" and t.accountant.used("host") == 900


def test_warm_versions_are_reclaimed_before_a_serving_model_is_evicted() -> None:
    asked: list[tuple[str, int]] = []

    def reclaim(pool: str, nbytes: int) -> bool:
        asked.append((pool, nbytes))
        return t.accountant.release("warm@c1") > 0  # the warm version's ledger line goes; next call: nothing

    t = Table(1000, reclaim=reclaim)
    t.resident("serving", 400)
    t.accountant.reserve("warm@c1", "host", 500)
    t.admission.admit("new", "host", 500)
    assert asked == [("host", 400)] and t.unloads == []


def test_a_need_above_the_whole_budget_is_refused_at_once() -> None:
    t = Table(1000, load_wait_s=30)
    t0 = time.monotonic()
    with pytest.raises(MemoryBudgetExceeded, match="raise the budget") as exc:
        t.admission.admit("huge", "host", 2000)
    assert time.monotonic() - t0 < 1 and exc.value.model == "huge"


def test_pinned_busy_and_canary_models_are_never_evicted_and_the_load_gives_up_after_load_wait_s() -> None:
    t = Table(1000, load_wait_s=0.1)
    t.resident("pinned", 300, pinned=True)
    t.resident("busy", 300).leases = 1
    t.resident("canary", 300).canary = object()
    assert {r.name: r.pinned for r in t.admission.residents()} == {
        "pinned": True,
        "busy": False,
        "canary": True,
    }
    with pytest.raises(MemoryBudgetExceeded, match="pinned, busy or within their minimum residency") as exc:
        t.admission.admit("new", "host", 500)
    assert t.unloads == [] and exc.value.retry_after == 1.0


def test_evict_declines_a_model_that_became_busy_or_pinned_after_the_plan() -> None:
    t = Table(1000)
    t.resident("busy", 100).leases = 1
    t.resident("pinned", 100, pinned=True)
    t.resident("gone", 100).state = "evicting"
    assert [t.admission.evict(n) for n in ("busy", "pinned", "gone", "unknown")] == [False] * 4
    assert t.unloads == []


def test_oom_recovery_unloads_the_lowest_priority_then_coldest_other_model_of_the_pool() -> None:
    t = Table(1000)
    t.resident("me", 100)
    t.resident("important", 100, priority=5, last_used=1.0)
    t.resident("cold", 100, last_used=10.0)
    t.resident("warm", 100, last_used=500.0)
    t.resident("working", 100, last_used=0.0).leases = 1  # in flight: never taken from under a request
    assert t.admission.evict_for_oom("me") is True
    assert t.unloads == [("cold", "evicted", True)]


def test_oom_recovery_with_nothing_else_to_unload_says_so() -> None:
    t = Table(1000)
    t.resident("me", 100)
    t.resident("pinned", 100, pinned=True)
    assert t.admission.evict_for_oom("me") is False and t.unloads == []


def test_commit_of_more_than_reserved_evicts_others_and_raises_when_none_can_go() -> None:
    t = Table(2000)
    t.resident("coldest", 700, last_used=1.0)
    t.resident("colder", 700, last_used=2.0)
    assert t.accountant.reserve("new", "host", 500)
    t.admission.commit("new", "host", 700)  # the measured weights are larger than the estimate
    assert t.unloads == [("coldest", "evicted", True)] and t.accountant.used("host") == 1400

    t2 = Table(1000)
    t2.resident("pinned", 400, pinned=True)
    assert t2.accountant.reserve("new", "host", 500)
    with pytest.raises(MemoryBudgetExceeded):
        t2.admission.commit("new", "host", 900)


def test_cpu_fallback_only_when_the_spec_allows_it() -> None:
    assert cpu_fallback(Entry(ModelSpec(name="m", source="m"))) is None
    move = cpu_fallback(Entry(ModelSpec(name="m", source="m", fallback_to_cpu=True)))
    assert move is not None and move() is False  # nothing loaded: nothing to move
