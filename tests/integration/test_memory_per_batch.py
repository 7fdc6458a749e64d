"""Working memory accounted per batch (memory/working.py): a model is admitted with its weights plus one longest
input's working memory, and each batch reserves the rest from its real shape while it runs."""

from __future__ import annotations

import threading

import pytest
from tests.conftest import TINY_CACHE

from hf_provider.memory.budget import Accountant, MemoryBudget
from hf_provider.memory.oom import is_oom
from hf_provider.memory.working import BatchBudgetExceeded, BatchMemory, token_cap
from hf_provider.provider import Provider
from hf_provider.settings import MemorySettings, load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_sized_bert

MIB = 1 << 20


def test_a_batch_holds_its_bytes_while_it_runs_and_gives_them_back() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    acc.commit("m", "host", 600)
    mem = BatchMemory(acc, "host", "m", lambda rows, length, task: rows * length, admitted=10)
    with mem.hold(4, 50, "embeddings") as need:
        assert need == 190 and acc.used("host") == 790
        assert acc.snapshot()["models"]["m#batch"]["host"]["bytes"] == 190
    assert acc.used("host") == 600
    with mem.hold(1, 10, "embeddings") as need:  # within what the model was admitted with: nothing to reserve
        assert need == 0 and acc.used("host") == 600


def test_a_batch_that_cannot_fit_in_time_is_refused_as_out_of_memory_and_rooms_are_asked_for() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    acc.commit("m", "host", 600)
    acc.commit("other", "host", 300)
    asked: list[int] = []

    def make_room(deficit: int) -> bool:
        asked.append(deficit)
        return False

    mem = BatchMemory(acc, "host", "m", lambda r, n, t: r * n, admitted=0, make_room=make_room, wait_s=0.0)
    with pytest.raises(BatchBudgetExceeded) as info, mem.hold(2, 100, "embeddings"):
        pass
    assert is_oom(info.value)  # the scheduler's recovery splits the batch
    assert asked == [100] and mem.refused == 1 and acc.used("host") == 900


def test_a_waiting_batch_runs_when_another_batch_ends() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    acc.commit("a", "host", 400)
    acc.commit("b", "host", 400)
    work = lambda r, n, t: r * n  # noqa: E731
    mem_a = BatchMemory(acc, "host", "a", work, admitted=0, wait_s=30)
    mem_b = BatchMemory(acc, "host", "b", work, admitted=0, wait_s=30)
    started = threading.Event()
    order: list[str] = []
    with mem_a.hold(1, 150, "embeddings"):

        def run_b() -> None:
            started.set()
            with mem_b.hold(1, 150, "embeddings"):
                order.append("b")

        t = threading.Thread(target=run_b)
        t.start()
        started.wait(10)
        order.append("a")
    t.join(30)
    assert order == ["a", "b"] and mem_b.waited == 1 and acc.used("host") == 800


def test_token_cap_keeps_one_batch_within_the_room() -> None:
    assert token_cap(room=1000, per_item_at_max=100, max_length=128) == 10 * 128
    assert token_cap(room=50, per_item_at_max=100, max_length=128) == 128  # one input always forms a batch


@pytest.fixture(scope="module")
def bert_160mb():
    return build_sized_bert(TINY_CACHE, hidden=640, layers=8, name="bert-h640-l8")


def test_400mib_holds_two_of_four_160mb_classifiers_and_serves_them_in_rotation(bert_160mb) -> None:
    names = ["a", "b", "c", "d"]
    specs = [
        ModelSpec(name=n, source=str(bert_160mb), tasks=["text-classification"], device="cpu") for n in names
    ]
    memory = MemorySettings(host_budget="400MiB", min_residency_s=0, load_wait_s=120)
    settings = load_settings({"metrics_enabled": False, "load_on_start": False})
    settings.memory = memory
    with Provider(specs, settings=settings) as p:
        a = p.load("a")
        p.load("b")
        assert 150 * 10**6 < a["weight_bytes"] < 170 * 10**6
        assert p.manager.is_ready("a") and p.manager.is_ready("b")  # two at once
        e = p.manager.entry("a")
        assert e.accounted_bytes < a["weight_bytes"] * 1.25  # not a worst-case batch on top
        assert e.token_cap is not None and e.scheduler is not None
        failed: list[BaseException] = []
        texts = ["a fine day", "the harbour was rebuilt after the storm " * 6, "no"]

        def client(k: int) -> None:
            for i in range(4):
                try:
                    out = p.run(names[(k + i) % 4], "text-classification", texts * (1 + i % 3))
                    assert len(out) == 3 * (1 + i % 3)
                except BaseException as exc:  # collected and asserted below
                    failed.append(exc)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert failed == []
        loads = {n: p.manager.entry(n).loads for n in names}
        assert all(n >= 1 for n in loads.values()) and sum(loads.values()) > 4, loads  # evicted and reloaded
        budget = 400 * MIB
        assert 0 < p.manager.accountant.peak("host") <= budget
