"""Eviction order through the ModelManager with real models: priority, then least recently used;
pinned models are never evicted; a model with a request in flight is not evicted while busy; minimum residency
holds a model.

The manager runs on an injected clock, so residency and recency are set without sleeping."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import TINY_CACHE

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.models import views
from hf_provider.models.manager import ModelManager
from hf_provider.provider import Provider
from hf_provider.settings import MemorySettings, Settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_sized_bert
from hf_provider.testing.workload import accounted_estimate


class Clock:
    """The manager's injected clock. It also counts reads per thread: the admission loop reads it once per pass,
    so a test can wait until a loading thread has been through that loop and decided to wait, without sleeping.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self._reads: Counter[int] = Counter()
        self._read = threading.Condition()

    def __call__(self) -> float:
        with self._read:
            self._reads[threading.get_ident()] += 1
            self._read.notify_all()
        return self.now

    def wait_for_reads(self, thread: threading.Thread, n: int, timeout: float = 30) -> bool:
        """Block until `thread` has read the clock at least `n` times; False on timeout."""
        with self._read:
            return self._read.wait_for(lambda: self._reads[thread.ident or 0] >= n, timeout)


@pytest.fixture(scope="module")
def bert() -> Path:
    return build_sized_bert(TINY_CACHE, 128, 2)


def _spec(name: str, source: Path, **kw) -> ModelSpec:
    kw.setdefault("tasks", ["text-classification"])
    return ModelSpec(
        name=name,
        source=str(source),
        device="cpu",
        max_length=64,
        batching={"max_batch_size": kw.pop("batch", 4), "max_wait_ms": 1.0},
        **kw,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _manager(specs: list[ModelSpec], budget: int, clock: Clock, **memory) -> ModelManager:
    memory.setdefault("min_residency_s", 0)
    return ModelManager(
        specs, memory=MemorySettings(host_budget=budget, **memory), clock=clock, allow_adhoc=False
    )


@pytest.fixture
def managed() -> Iterator[list[ModelManager]]:
    made: list[ModelManager] = []
    yield made
    for m in made:
        m.close()


def _ready(m: ModelManager) -> set[str]:
    return {d["name"] for d in views.describe(m.snapshot()) if d["state"] == "ready"}


def _use(m: ModelManager, clock: Clock, name: str) -> None:
    clock.now += 1
    m.get(name)


def test_lowest_priority_then_least_recently_used(bert: Path, clock: Clock, managed: list) -> None:
    specs = [
        _spec("a", bert, priority=1),
        _spec("b", bert),
        _spec("c", bert),
        _spec("d", bert),
        _spec("e", bert),
    ]
    one = accounted_estimate(specs[0])
    m = _manager(specs, 3 * one + one // 2, clock)  # room for three
    managed.append(m)
    for name in "abc":
        _use(m, clock, name)
    _use(m, clock, "b")  # b is now more recent than c; a (priority 1) is the least recent of all
    _use(m, clock, "d")
    assert _ready(m) == {"a", "b", "d"}  # c: priority 0 and least recently used
    _use(m, clock, "e")
    assert _ready(m) == {"a", "d", "e"}  # b next; a outranks both by priority
    assert m.accountant.peak("host") <= 3 * one + one // 2


def test_pinned_model_is_never_evicted(bert: Path, clock: Clock, managed: list) -> None:
    specs = [_spec("p", bert, pinned=True), _spec("x", bert), _spec("y", bert)]
    one = accounted_estimate(specs[0])
    m = _manager(specs, 2 * one + one // 2, clock, load_wait_s=0.3)
    managed.append(m)
    for name in ("p", "x", "y", "x", "y"):
        _use(m, clock, name)
        assert "p" in _ready(m)
    assert views.describe(m.snapshot())[0]["loads"] == 1
    # Pin the other resident too: nothing is evictable, a third model cannot be admitted.
    m.set_pinned("y", True)
    with pytest.raises(MemoryBudgetExceeded) as info:
        m.get("x")
    assert info.value.retry_after and info.value.retry_after >= 1
    assert _ready(m) == {"p", "y"}
    m.set_pinned("y", False)
    _use(m, clock, "x")
    assert _ready(m) == {"p", "x"}


def test_minimum_residency_holds_a_fresh_model(bert: Path, clock: Clock, managed: list) -> None:
    specs = [_spec("a", bert), _spec("b", bert)]
    one = accounted_estimate(specs[0])
    m = _manager(specs, one + one // 2, clock, min_residency_s=30, load_wait_s=600)
    managed.append(m)
    _use(m, clock, "a")
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(m.get("b")))
    t.start()
    # Three admission passes on the unchanged clock: an eviction would have happened in the first one.
    assert clock.wait_for_reads(t, 3)
    assert not done and _ready(m) == {"a"}  # a was loaded 1 s ago on the manager's clock: it stays
    clock.now += 30
    t.join(30)
    assert done and _ready(m) == {"b"}


def test_busy_model_is_not_evicted_until_its_request_finishes(
    tiny_models: dict[str, Path], bert: Path, clock: Clock
) -> None:
    gen = _spec("gen", tiny_models["decoder"], tasks=["text-generation"], batch=1)
    specs = [gen, _spec("x", bert), _spec("y", bert)]
    sizes = {s.name: accounted_estimate(s) for s in specs}
    # Room for gen and one BERT, and short of a second BERT by less than gen's size.
    budget = sizes["gen"] // 2 + 2 * sizes["x"] - 1
    settings = Settings(
        memory=MemorySettings(host_budget=budget, min_residency_s=0, load_wait_s=600),
        metrics_enabled=False,
        history_enabled=False,
    )
    release, started = threading.Event(), threading.Event()

    def sink(delta: str | None) -> None:  # runs on the forward thread: holds the generation in flight
        started.set()
        release.wait(60)

    with Provider(specs, settings=settings, allow_adhoc=False) as p:
        p.manager.clock = clock
        fut = p.submit("gen", "text-generation", "Alice lives in", {"max_new_tokens": 8}, sink=sink)
        assert started.wait(30)
        clock.now += 1
        p.run("x", "text-classification", ["hello"])
        # gen is the least recently used, but busy: loading y evicts x instead.
        clock.now += 1
        p.run("y", "text-classification", ["hello"])
        assert _ready(p.manager) == {"gen", "y"}
        # Pin y: the only candidate left is busy, so loading x waits for the generation to finish.
        p.manager.set_pinned("y", True)
        loaded: list[object] = []

        def load_x() -> None:
            try:
                loaded.append(p.run("x", "text-classification", ["hi"]))
            except Exception as exc:
                loaded.append(exc)

        t = threading.Thread(target=load_x)
        t.start()
        # Three admission passes while gen is busy: an eviction would have happened in the first one.
        assert clock.wait_for_reads(t, 3)
        assert not loaded and "gen" in _ready(p.manager)
        release.set()
        fut.result(30)
        t.join(30)
        assert loaded and isinstance(loaded[0], list), loaded
        assert _ready(p.manager) == {"x", "y"}
        assert p.manager.accountant.peak("host") <= p.manager.accountant.budget.host
