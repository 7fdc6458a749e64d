"""Canary against the local Hub: the split, per-revision stats and error groups, promote, abort, and the
automatic abort of a candidate that fails."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hf_provider.errors import InvalidInput, VersionConflict
from hf_provider.provider import Provider
from hf_provider.settings import FaultRule, load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.hub_server import LocalHub, use_local_hub

TASK = "text-classification"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> Iterator[Any]:
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        h.v1 = h.add_commit("org/cls", tiny_models["bert-cls"], tag="v1")
        h.v2 = h.add_commit("org/cls", {"README.md": b"second revision"}, tag="v2")
        yield h


def make(config: dict[str, Any] | None = None) -> Provider:
    settings = load_settings({"metrics_enabled": False, **(config or {})})
    spec = ModelSpec(name="cls", source="org/cls", revision="v1", tasks=[TASK], device="cpu")
    return Provider([spec], settings=settings)


def burst(p: Provider, n: int, width: int = 25) -> tuple[Counter[str | None], Counter[str]]:
    """n requests, `width` at a time: revisions of the answers and outcomes."""
    revisions: Counter[str | None] = Counter()
    outcomes: Counter[str] = Counter()
    for start in range(0, n, width):
        reqs = [p.submit("cls", TASK, "a fine day") for _ in range(min(width, n - start))]
        for r in reqs:
            try:
                r.future.result(60)
                outcomes["ok"] += 1
            except Exception as e:
                outcomes[type(e).__name__] += 1
            revisions[r.revision] += 1
    return revisions, outcomes


def test_canary_needs_a_valid_percent_and_refuses_a_second_one(hub: Any) -> None:
    with make() as p:
        for bad in (0, 100, -1, "10", True):
            with pytest.raises(InvalidInput, match="percent"):
                p.lifecycle.start_canary("cls", "v2", bad)
        p.lifecycle.start_canary("cls", "v2", 10)
        with pytest.raises(VersionConflict, match="canary running"):
            p.lifecycle.start_canary("cls", "v2", 20)
        with pytest.raises(VersionConflict, match="canary running"):
            p.lifecycle.swap("cls", "v2")
        p.lifecycle.abort("cls")
        with pytest.raises(VersionConflict, match="no canary"):
            p.lifecycle.promote("cls")


def test_ten_percent_of_2000_requests_go_to_the_candidate(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        status = p.lifecycle.start_canary("cls", "v2", 10)
        assert status["canary"]["candidate"]["commit"] == hub.v2 and status["commit"] == hub.v1
        revisions, outcomes = burst(p, 2000)
        assert outcomes == {"ok": 2000}
        assert abs(revisions[hub.v2] - 200) <= 40  # the 10% +/- 2 points; the splitter is exact
        stats = p.lifecycle.status("cls")["canary"]
        assert stats["candidate"]["stats"]["outcomes"] == {"ok": revisions[hub.v2]}
        assert stats["primary"]["stats"]["outcomes"] == {"ok": revisions[hub.v1]}


def test_promote_makes_the_candidate_primary_and_keeps_the_old_one_warm(hub: Any) -> None:
    with make() as p:
        p.lifecycle.start_canary("cls", "v2", 50)
        p.lifecycle.promote("cls")
        revisions, _ = burst(p, 20)
        assert revisions == {hub.v2: 20}
        status = p.lifecycle.status("cls")
        assert status["canary"] is None and status["previous"]["commit"] == hub.v1
        assert status["revision"] == "v2"
        p.lifecycle.rollback("cls")  # straight back to the warm primary
        assert burst(p, 5)[0] == {hub.v1: 5}


def test_abort_drops_the_candidate(hub: Any) -> None:
    with make() as p:
        p.lifecycle.start_canary("cls", "v2", 50)
        p.lifecycle.abort("cls")
        assert burst(p, 20)[0] == {hub.v1: 20}
        assert set(p.manager.accountant.snapshot()["models"]) == {"cls"}
        actions = [(e["action"], e["actor"], e["detail"]) for e in p.lifecycle.events("cls")[:2]]
        assert actions == [
            ("abort", "python", "aborted by an operator"),
            ("canary", "python", "50% of requests"),
        ]


def test_a_failing_candidate_is_aborted_automatically_and_its_errors_grouped_apart(hub: Any) -> None:
    config = {
        "versioning": {"canary_min_requests": 10, "canary_abort_margin": 0.05},
        "faults": {"rules": [], "seed": 1},  # TESTING ONLY
    }
    with make(config) as p:
        p.load("cls")
        p.lifecycle.start_canary("cls", "v2", 50)
        # from now on every forward pass of revision v2 fails (its warm-up passed: it would not start otherwise)
        p.faults.set([FaultRule(phase="forward", model="cls@v2", rate=1.0)])
        deadline = time.monotonic() + 30
        revisions: Counter[str | None] = Counter()
        outcomes: Counter[str] = Counter()
        while p.lifecycle.status("cls")["canary"] is not None and time.monotonic() < deadline:
            r, o = burst(p, 10, width=1)
            revisions.update(r)
            outcomes.update(o)
        assert p.lifecycle.status("cls")["canary"] is None, "the canary was not aborted"
        assert outcomes["RuntimeError"] >= 1 and outcomes["ok"] >= 1  # only the candidate's share failed
        last = p.lifecycle.events("cls")[0]
        assert (last["action"], last["actor"], last["commit"]) == ("abort", "auto", hub.v2)
        assert "error rate" in last["detail"] or "circuit breaker" in last["detail"]
        assert burst(p, 10) == (Counter({hub.v1: 10}), Counter({"ok": 10}))  # the primary serves all again
        groups = [g for g in p.errors(model="cls") if g["exc_type"] == "RuntimeError"]
        assert groups and {g["revision"] for g in groups} == {hub.v2}


def test_keep_alive_and_eviction_leave_a_canarys_primary_loaded(hub: Any) -> None:
    # Reloaded, the primary would get a new scheduler that no longer counts its outcomes for the comparison.
    with make() as p:
        p.lifecycle.start_canary("cls", "v2", 10)
        assert p.manager.unload("cls", "idle", only_if_idle=True) is False
        assert [r.pinned for r in p.manager.admission.residents() if r.name == "cls"] == [True]
        burst(p, 20)
        assert p.lifecycle.status("cls")["canary"]["primary"]["stats"]["requests"] > 0
        p.lifecycle.abort("cls")
        assert p.manager.unload("cls", "idle", only_if_idle=True) is True
