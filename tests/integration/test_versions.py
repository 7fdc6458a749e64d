"""Swap, rollback and warm previous versions against the local Hub: a model's revision changes while it serves,
no request fails, a failed load changes nothing, a rollback to the warm previous version loads nothing."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hf_provider.errors import InvalidInput, ModelLoadError, VersionConflict
from hf_provider.lifecycle import loading
from hf_provider.models import manager as manager_module
from hf_provider.provider import Provider
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.hub_server import LocalHub, use_local_hub

TASK = "text-classification"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> Iterator[Any]:
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        h.v1 = h.add_commit("org/cls", tiny_models["bert-cls"], tag="v1")
        h.v2 = h.add_commit("org/cls", {"README.md": b"second revision"}, tag="v2")
        # a revision that resolves, downloads and verifies but does not load: its config does not fit the weights
        config = json.loads((tiny_models["bert-cls"] / "config.json").read_text())
        config["intermediate_size"] = config["intermediate_size"] * 2
        h.broken = h.add_commit("org/cls", {"config.json": json.dumps(config)}, branch="broken")
        yield h


def make(config: dict[str, Any] | None = None) -> Provider:
    settings = load_settings({"metrics_enabled": False, **(config or {})})
    spec = ModelSpec(name="cls", source="org/cls", revision="v1", tasks=[TASK], device="cpu")
    return Provider([spec], settings=settings)


def serve(p: Provider) -> tuple[Any, str | None]:
    req = p.submit("cls", TASK, "a fine day")
    return req.future.result(60), req.revision


def commit_of(p: Provider) -> str | None:
    return p.lifecycle.status("cls")["commit"]


def test_swap_to_an_unknown_revision_is_invalid_input_and_changes_nothing(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        with pytest.raises(InvalidInput, match="no revision 'nope'"):
            p.lifecycle.swap("cls", "nope")
        with pytest.raises(InvalidInput, match="revision must be"):
            p.lifecycle.swap("cls", "  ")
        assert commit_of(p) == hub.v1


def test_a_swap_whose_load_fails_leaves_the_old_version_serving(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        with pytest.raises(ModelLoadError, match="could not load model 'cls'"):
            p.lifecycle.swap("cls", "broken")
        assert commit_of(p) == hub.v1
        assert serve(p)[1] == hub.v1
        # nothing of the failed version is left in the budget
        assert set(p.manager.accountant.snapshot()["models"]) == {"cls"}
        last = p.lifecycle.events("cls")[0]
        assert (last["action"], last["outcome"], last["commit"]) == ("swap", "failed", hub.broken)
        assert "could not load model" in last["detail"] and last["actor"] == "python"


def test_swap_under_load_fails_no_request(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        stop = threading.Event()
        seen: Counter[str | None] = Counter()
        failures: list[BaseException] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    seen[serve(p)[1]] += 1
                except BaseException as e:  # any failure is the test's failure
                    failures.append(e)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for rev in ("v2", "v1", "v2"):
                p.lifecycle.swap("cls", rev)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert failures == []
        assert seen[hub.v1] > 0 and seen[hub.v2] > 0
        assert commit_of(p) == hub.v2 and serve(p)[1] == hub.v2
        actions = [(e["action"], e["revision"], e["outcome"]) for e in p.lifecycle.events("cls")]
        assert actions[:3] == [("swap", "v2", "ok"), ("swap", "v1", "ok"), ("swap", "v2", "ok")]
        assert actions[-1] == ("load", "v1", "ok")


def yielded(caplog: pytest.LogCaptureFixture) -> tuple[float, int]:
    """(seconds waited for forward passes, free slices) of the last swap's load, from its log line."""
    line = [r.getMessage() for r in caplog.records if "beside the serving version" in r.getMessage()][-1]
    found = re.search(r"waited ([0-9.]+) s for forward passes \((\d+) free slices\)", line)
    assert found is not None, line
    return float(found.group(1)), int(found.group(2))


def test_a_swap_loads_between_forward_passes_holding_no_lock_and_is_not_starved_by_a_model_that_never_stops(
    hub: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make() as p:
        p.load("cls")
        caplog.set_level(logging.INFO, logger="hf_provider.lifecycle.loading")
        owned: list[bool] = []  # at each wait of the load: whether it held the manager's lock
        real_wait = FOREGROUND.wait_idle

        def wait_idle(timeout: float) -> bool:
            owned.append(p.manager._lock._is_owned())  # type: ignore[attr-defined]
            return real_wait(timeout)

        monkeypatch.setattr(FOREGROUND, "wait_idle", wait_idle)
        with FOREGROUND.forward_pass():  # a forward pass that lasts the whole swap: no gap for the load
            p.lifecycle.swap("cls", "v2")
        assert commit_of(p) == hub.v2
        waited, slices = yielded(caplog)
        assert waited > 0 and slices > 0
        # each wait ran out (the pass never ends) and bought a free slice; none was under the event loop's lock
        assert len(owned) == slices and not any(owned)


@pytest.mark.parametrize("why", ["setting off", "cuda"])
def test_a_swap_that_must_not_yield_never_waits_for_forward_passes(
    hub: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    with make({"versioning": {"yield_to_requests": why == "cuda"}}) as p:
        p.load("cls")
        if why == "cuda":  # the swap's decision sees a CUDA device; the load itself stays on this CPU
            monkeypatch.setattr(loading, "pick_device", lambda _: torch.device("cuda", 0))
        caplog.set_level(logging.INFO, logger="hf_provider.lifecycle.loading")
        with FOREGROUND.forward_pass():
            p.lifecycle.swap("cls", "v2")
        assert commit_of(p) == hub.v2
        assert yielded(caplog) == (0.0, 0)


def test_a_debuggers_trace_function_set_during_a_swaps_load_is_still_installed_after_it(
    hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            calls.append(frame.f_code.co_name)
        return None

    with make() as p:
        p.load("cls")
        real_load = manager_module.load_model

        def load_model(*args: Any, **kwargs: Any) -> Any:  # breakpoint() in a loader step sets a tracer
            sys.settrace(tracer)
            return real_load(*args, **kwargs)

        monkeypatch.setattr(manager_module, "load_model", load_model)
        previous = sys.gettrace()
        try:
            with FOREGROUND.forward_pass():  # the load yields meanwhile
                p.lifecycle.swap("cls", "v2")
            assert sys.gettrace() is tracer
        finally:
            sys.settrace(previous)
        assert commit_of(p) == hub.v2
        assert "from_pretrained" in calls and "attach_tasks" in calls  # it traced the whole load


def test_rollback_without_a_previous_revision_is_a_conflict(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        with pytest.raises(VersionConflict, match="no previous revision"):
            p.lifecycle.rollback("cls")


def test_rollback_to_the_warm_previous_version_loads_nothing(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        status = p.lifecycle.status("cls")
        assert status["previous"]["commit"] == hub.v1 and status["previous"]["warm_for_s"] > 500
        loads = p.manager.entry("cls").loads
        hub.clear_requests()
        out = p.lifecycle.rollback("cls")
        assert out["commit"] == hub.v1 and out["revision"] == "v1"
        assert hub.paths == []  # no Hub request: the weights were in memory
        assert serve(p)[1] == hub.v1
        assert p.manager.entry("cls").loads == loads + 1  # a switch, counted as a (re)load of the entry
        assert p.lifecycle.status("cls")["previous"]["commit"] == hub.v2  # and back again is warm too
        p.lifecycle.rollback("cls")
        assert serve(p)[1] == hub.v2
        last = p.lifecycle.events("cls")[0]
        assert (last["action"], last["revision"], last["detail"]) == (
            "rollback",
            "v2",
            "warm previous version",
        )


def test_a_swap_back_to_the_warm_revision_is_a_switch(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        loading_before = hub.paths
        out = p.lifecycle.swap("cls", "v1")
        assert out["commit"] == hub.v1 and out["previous"]["commit"] == hub.v2
        assert not any("/resolve/" in path for path in hub.paths[len(loading_before) :])  # nothing downloaded
        last = p.lifecycle.events("cls")[0]
        assert (last["action"], last["revision"], last["detail"]) == ("swap", "v1", "warm previous version")


def test_warm_previous_expires_and_a_later_rollback_loads_from_the_cache(hub: Any) -> None:
    with make({"versioning": {"warm_previous": "10m"}}) as p:
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        now = p.manager.clock()
        assert p.lifecycle.expire(now + 599) == []
        assert p.lifecycle.expire(now + 601) == ["cls"]
        assert p.lifecycle.status("cls")["previous"] is None
        assert set(p.manager.accountant.snapshot()["models"]) == {"cls"}
        p.lifecycle.rollback("cls")  # loaded again, beside the serving one
        assert serve(p)[1] == hub.v1


def test_warm_previous_zero_drops_the_old_version_once_drained(hub: Any) -> None:
    with make({"versioning": {"warm_previous": 0}}) as p:
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        assert p.lifecycle.status("cls")["previous"] is None
        assert set(p.manager.accountant.snapshot()["models"]) == {"cls"}


def test_a_load_reclaims_warm_previous_memory_before_evicting(hub: Any, tiny_models: dict[str, Path]) -> None:
    other = ModelSpec(name="other", source=str(tiny_models["bert-cls"]), tasks=[TASK], device="cpu")
    probe = make()
    probe.manager.add(other)
    serving = probe.manager.get("cls").accounted_bytes
    weights = probe.manager.get("cls").model.weight_bytes
    needs = probe.manager.get("other").estimated_bytes
    probe.close()
    # room for cls, its warm previous version (weights only) and `other`'s estimate, less one byte
    with make({"memory": {"host_budget": serving + weights + needs - 1}}) as p:
        p.manager.add(other)
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        assert p.lifecycle.status("cls")["previous"]["accounted_bytes"] == weights
        assert p.lifecycle.warm.reclaim("cuda:0", 1) is False  # nothing parked there
        p.load("other")
        assert p.lifecycle.status("cls")["previous"] is None  # the warm version made room
        assert p.manager.is_ready("cls") and p.manager.is_ready("other")  # nothing serving was evicted
        assert p.manager.accountant.peak("host") <= serving + weights + needs - 1


def test_sequential_swap_when_the_budget_holds_one_version(hub: Any) -> None:
    probe = make()
    one = probe.manager.get("cls").accounted_bytes
    probe.close()
    with make({"memory": {"host_budget": int(one * 1.5)}}) as p:
        p.load("cls")
        stop = threading.Event()
        seen: Counter[str | None] = Counter()
        failures: list[BaseException] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    seen[serve(p)[1]] += 1
                except BaseException as e:
                    failures.append(e)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            p.lifecycle.swap("cls", "v2")  # no room beside: requests wait while it switches
            with pytest.raises(ModelLoadError):
                p.lifecycle.swap("cls", "broken")  # the old commit is loaded again
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert failures == []
        assert seen[hub.v2] > 0
        assert commit_of(p) == hub.v2 and serve(p)[1] == hub.v2
        assert p.manager.accountant.peak("host") <= int(one * 1.5)


def test_a_second_operation_on_the_same_model_is_a_conflict(hub: Any) -> None:
    with make() as p:
        p.load("cls")
        with p.lifecycle._operation("cls"), pytest.raises(VersionConflict, match="another swap"):
            p.lifecycle.swap("cls", "v2")
        assert p.lifecycle.swap("cls", "v2")["commit"] == hub.v2


@pytest.mark.parametrize(
    ("folder", "tasks", "sample"),
    [
        ("t5", ["summarization", "translation", "text2text-generation"], "The harbour was rebuilt."),
        ("decoder", ["text-generation"], "Once upon a time"),
        ("bert-mlm", ["fill-mask"], "The harbour was [MASK]."),
        ("bert-qa", ["question-answering"], {"question": "What was rebuilt?", "context": "The harbour was."}),
        ("bert-ner", ["token-classification"], "Ada lives in Paris."),
    ],
)
def test_every_task_family_warms_up_and_serves_after_a_swap(
    hub: Any, tiny_models: dict[str, Path], folder: str, tasks: list[str], sample: Any
) -> None:
    repo = f"org/{folder}"
    hub.add_commit(repo, tiny_models[folder], tag="v1")
    v2 = hub.add_commit(repo, {"README.md": b"second revision"}, tag="v2")
    spec = ModelSpec(name="m", source=repo, revision="v1", tasks=tasks, device="cpu")
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("m")
        assert p.lifecycle.swap("m", "v2")["commit"] == v2
        for task in tasks:
            params = (
                {"max_new_tokens": 2}
                if task not in ("fill-mask", "question-answering", "token-classification")
                else {}
            )
            req = p.submit("m", task, sample, params)
            req.future.result(60)
            assert req.revision == v2


def test_a_dropped_version_gives_its_weights_back_without_a_full_collection(hub: Any) -> None:
    import gc
    import weakref

    with make({"memory": {"freeze_heap": True}}) as p:  # as the server does
        p.load("cls")  # frozen by the manager (memory/heap.py): its cycles wait for a full pass
        p.lifecycle.swap("cls", "v2")
        warm = p.lifecycle.warm.get("cls")
        module = warm.entry.model.module
        weights = [weakref.ref(t) for t in module.parameters()]
        assert gc.get_freeze_count() > 0 and all(w() is not None for w in weights)
        p.lifecycle.expire(p.manager.clock() + 10_000)
        assert all(w() is None for w in weights)  # freed at once, not waiting for a full collection
        assert all(t.device.type == "meta" for t in module.parameters())
        assert warm.entry.model is None and warm.entry.scheduler is None
