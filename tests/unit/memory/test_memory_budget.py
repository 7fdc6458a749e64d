"""Size parsing, budgets from settings, and the accountant's ledger invariant."""

from __future__ import annotations

import threading

import pytest

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.memory.budget import Accountant, MemoryBudget, check_size, parse_size, pool_for_device

GIB = 1024**3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2GiB", 2 * GIB),
        ("512MB", 512_000_000),
        ("512MiB", 512 * 1024**2),
        ("1.5G", int(1.5 * GIB)),
        ("1.5 gb", 1_500_000_000),
        ("100k", 102_400),
        ("123456", 123_456),
        (123456, 123_456),
        (0, 0),
        ("64B", 64),
    ],
)
def test_parse_size_absolute(value: str | int | float, expected: int) -> None:
    assert parse_size(value, None) == expected


@pytest.mark.parametrize(("value", "expected"), [(0.8, 800), ("0.5", 500), (1.0, 1000), ("25%", 250)])
def test_parse_size_fraction_of_total(value: str | float, expected: int) -> None:
    assert parse_size(value, 1000) == expected


@pytest.mark.parametrize(
    "junk", ["", "lots", "2 GiBs", "-1GB", "1e3", "0%", "150%", True, -5, float("nan"), None]
)
def test_parse_size_rejects_junk(junk: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(junk, 1000)  # type: ignore[arg-type]


# A float above 1 is ambiguous (1.5: one byte or 150 %?), integer-valued ones too (2.0, 3e9): bytes are ints.
@pytest.mark.parametrize("value", [1.5, "1.5", 2.0, "2.0", 3e9, 0.0, "0.0", float("inf")])
def test_parse_size_refuses_floats_outside_the_fraction_range(value: str | float) -> None:
    with pytest.raises(ValueError, match="integer number of bytes"):
        parse_size(value, 1000)
    with pytest.raises(ValueError, match="integer number of bytes"):
        check_size(value)


@pytest.mark.parametrize("value", ["2GiB", "512MB", 123456, "123456", 0, 0.8, "0.5", 1.0, "25%"])
def test_check_size_accepts_every_form_without_a_total(value: str | int | float) -> None:
    check_size(value)  # a fraction is valid syntax even though parse_size(value, None) cannot resolve it


@pytest.mark.parametrize("junk", ["8 gigs", "lots", "-1GB", "150%", True, -5, None, [1]])
def test_check_size_names_the_allowed_forms(junk: object) -> None:
    with pytest.raises(ValueError, match=r"bytes such as '8GiB' or '512MB', an integer number of bytes"):
        check_size(junk)  # type: ignore[arg-type]


def test_fraction_without_total_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="2GiB"):
        parse_size(0.5, None)


def test_budget_from_settings_resolves_fractions() -> None:
    b = MemoryBudget.from_settings(0.5, 0.8, host_total=16 * GIB, gpu_totals={0: 80 * GIB, 1: 40 * GIB})
    assert b.host == 8 * GIB
    assert b.gpus == {0: int(80 * GIB * 0.8), 1: int(40 * GIB * 0.8)}
    assert b.for_pool("host") == 8 * GIB
    assert b.for_pool("cuda:1") == int(40 * GIB * 0.8)
    assert b.for_pool("cuda:7") is None
    with pytest.raises(ValueError, match="pool"):
        b.for_pool("tpu")


def test_budget_per_gpu_mapping_and_unlimited() -> None:
    b = MemoryBudget.from_settings(None, {0: "10GiB"}, gpu_totals={0: 80 * GIB})
    assert b.host is None and b.gpus == {0: 10 * GIB}
    assert MemoryBudget.from_settings(None, None) == MemoryBudget()


def test_budget_from_settings_uses_psutil_total_for_fractions() -> None:
    import psutil

    b = MemoryBudget.from_settings("50%", None)
    assert b.host == int(psutil.virtual_memory().total * 0.5)


def test_pool_for_device() -> None:
    assert pool_for_device("cpu") == "host"
    assert pool_for_device("cuda") == "cuda:0"
    assert pool_for_device("cuda:2") == "cuda:2"
    assert pool_for_device("mps") == "host"


def test_reserve_commit_release_cycle() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    assert acc.reserve("a", "host", 600)
    assert not acc.reserve("b", "host", 500)  # would exceed: refused, ledger unchanged
    assert acc.used("host") == 600 and acc.free("host") == 400
    acc.commit("a", "host", 550)  # actual replaces the estimate
    assert acc.used("host") == 550
    assert acc.reserve("b", "host", 450)
    snap = acc.snapshot()
    assert snap["pools"]["host"] == {
        "budget_bytes": 1000,
        "used_bytes": 1000,
        "committed_bytes": 550,
        "reserved_bytes": 450,
        "free_bytes": 0,
        "peak_bytes": 1000,
    }
    assert snap["models"]["a"]["host"] == {"bytes": 550, "state": "committed"}
    assert snap["models"]["b"]["host"]["state"] == "reserved"
    assert acc.release("a") == 550
    assert acc.used("host") == 450 and acc.release("missing") == 0


def test_commit_over_budget_raises_and_keeps_ledger() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    assert acc.reserve("a", "host", 500) and acc.reserve("b", "host", 400)
    with pytest.raises(MemoryBudgetExceeded, match="only 600 of the 1000-byte") as info:
        acc.commit("a", "host", 700)
    assert info.value.model == "a"
    assert acc.used("host") == 900
    acc.release("b")
    acc.commit("a", "host", 700)
    assert acc.used("host") == 700 and acc.peak("host") <= 1000


def test_reserve_again_replaces_reservation_but_not_a_commit() -> None:
    acc = Accountant(MemoryBudget(host=1000))
    assert acc.reserve("a", "host", 900)
    assert acc.reserve("a", "host", 1000)  # replaces its own reservation, not added to it
    acc.commit("a", "host", 800)
    with pytest.raises(ValueError, match="release"):
        acc.reserve("a", "host", 10)


def test_unlimited_pools_and_multiple_pools() -> None:
    acc = Accountant(MemoryBudget(host=None, gpus={0: 100}))
    assert acc.reserve("a", "host", 10**15) and acc.free("host") is None
    assert acc.reserve("a", "cuda:0", 100)
    assert not acc.reserve("b", "cuda:0", 1)
    assert acc.reserve("b", "cuda:1", 10**12)  # no budget for GPU 1
    assert acc.release("a", "cuda:0") == 100
    assert acc.used("host") == 10**15
    assert set(acc.snapshot()["pools"]) == {"host", "cuda:0", "cuda:1"}


def test_concurrent_reservations_never_exceed_budget() -> None:
    acc = Accountant(MemoryBudget(host=10_000))
    admitted: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(50):
            name = f"m{i}-{j}"
            if acc.reserve(name, "host", 300):
                with lock:
                    admitted.append(name)
                if j % 3 == 0:
                    acc.release(name)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert acc.peak("host") <= 10_000
    assert acc.used("host") <= 10_000
    assert admitted
