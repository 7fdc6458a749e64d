"""OOM recovery: split, evict, CPU fallback, final typed error; driven by genuine allocator errors."""

from __future__ import annotations

import logging

import pytest
import torch

from hf_provider.errors import OutOfMemory
from hf_provider.memory.oom import is_oom, run_with_recovery
from hf_provider.resilience.faults import FaultInjector


def test_fault_injector_raises_the_real_allocator_error() -> None:
    inj = FaultInjector.parse("8,16")
    assert inj.batch_sizes == {8, 16}
    inj.check_batch(7)
    with pytest.raises(RuntimeError) as info:
        inj.check_batch(8)
    assert type(info.value) in (RuntimeError, torch.OutOfMemoryError)
    assert is_oom(info.value)


def test_fault_injector_parse_ranges_and_junk() -> None:
    assert FaultInjector.parse("4-6, 9").batch_sizes == {4, 5, 6, 9}
    assert FaultInjector.parse("").batch_sizes == frozenset()
    with pytest.raises(ValueError, match="'8,16'"):
        FaultInjector.parse("eight")
    with pytest.raises(ValueError, match="positive"):
        FaultInjector(batch_sizes=[0])


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError(), True),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),
        (KeyError("x"), False),
    ],
)
def test_is_oom(exc: BaseException, expected: bool) -> None:
    assert is_oom(exc) is expected


def doubling_run(inj: FaultInjector, calls: list[int]):
    def run(batch: list[int]) -> list[int]:
        calls.append(len(batch))
        inj.check_batch(len(batch))
        return [x * 2 for x in batch]

    return run


def test_recovery_splits_and_keeps_order(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    inj = FaultInjector(batch_sizes=range(4, 1000))  # every batch of 4 or more runs out of memory
    items = list(range(13))
    with caplog.at_level(logging.WARNING):
        out = run_with_recovery(items, doubling_run(inj, calls))
    assert out == [x * 2 for x in items]
    assert max(c for c in calls if c < 4) <= 3 and calls[0] == 13
    assert "out of memory on a batch of 13" in caplog.text


def test_no_oom_runs_once() -> None:
    calls: list[int] = []
    assert run_with_recovery([1, 2, 3], doubling_run(FaultInjector(), calls)) == [2, 4, 6]
    assert calls == [3]
    assert run_with_recovery([], doubling_run(FaultInjector(), calls)) == []


def test_single_item_oom_evicts_then_succeeds() -> None:
    state = {"crowded": True, "evictions": 0}

    def run(batch: list[int]) -> list[int]:
        if state["crowded"]:
            FaultInjector(batch_sizes=[len(batch)]).check_batch(len(batch))
        return list(batch)

    def evict() -> bool:
        state["evictions"] += 1
        state["crowded"] = False
        return True

    assert run_with_recovery([1, 2], run, evict=evict, to_cpu=lambda: pytest.fail("not needed")) == [1, 2]
    assert state["evictions"] == 1


def test_cpu_fallback_after_eviction_frees_nothing() -> None:
    state = {"device": "gpu"}
    evictions: list[int] = []

    def run(batch: list[int]) -> list[str]:
        if state["device"] == "gpu":
            FaultInjector(batch_sizes=[len(batch)]).check_batch(len(batch))
        return [f"{x}@{state['device']}" for x in batch]

    def to_cpu() -> bool:
        state["device"] = "cpu"
        return True

    out = run_with_recovery([1, 2, 3], run, evict=lambda: evictions.append(1) or False, to_cpu=to_cpu)
    assert out == ["1@cpu", "2@cpu", "3@cpu"]
    assert evictions == [1]


def test_final_out_of_memory_is_typed_and_chained() -> None:
    evictions: list[int] = []

    def run(batch: list[int]) -> list[int]:
        FaultInjector(batch_sizes=[len(batch)]).check_batch(len(batch))
        return batch

    with pytest.raises(OutOfMemory) as info:
        run_with_recovery(
            [1, 2],
            run,
            evict=lambda: evictions.append(1) is None,  # claims to free memory every time
            to_cpu=lambda: False,
            model="m",
            retry_after=7.0,
            max_evictions=3,
        )
    err = info.value
    assert err.retry_after == 7.0 and err.model == "m" and isinstance(err, MemoryError)
    assert is_oom(err.__cause__) and "can't allocate memory" in str(err.__cause__)
    assert len(evictions) == 3


def test_non_oom_errors_propagate_unchanged() -> None:
    boom = ValueError("bad input")

    def run(batch: list[int]) -> list[int]:
        if len(batch) > 2:
            FaultInjector(batch_sizes=[len(batch)]).check_batch(len(batch))
        raise boom

    with pytest.raises(ValueError) as info:
        run_with_recovery([1, 2, 3, 4], run, evict=lambda: pytest.fail("no eviction for non-OOM"))
    assert info.value is boom
