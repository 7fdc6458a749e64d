"""The heap is frozen after a load (full collections skip the long-lived objects) and unfrozen at an unload, so a
frozen model's reference cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hf_provider.memory import heap
from hf_provider.memory.release import release_memory


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_freeze_moves_live_objects_out_of_the_collected_generations() -> None:
    keep = [_Node() for _ in range(100)]
    heap.freeze()
    assert heap.frozen() >= 100
    assert all(gc.is_tracked(n) for n in keep)
    # A full collection now walks only what was created since: the frozen objects are not in any generation.
    assert sum(len(gc.get_objects(generation=g)) for g in range(3)) < heap.frozen()


def test_a_frozen_cycle_that_becomes_garbage_is_freed_by_the_release_after_an_unload() -> None:
    node = _Node()
    ref = weakref.ref(node)
    heap.freeze()
    del node
    gc.collect()
    assert ref() is not None  # frozen: a plain collection leaves it (why unload must unfreeze)
    release_memory("cpu", refreeze=True)
    assert ref() is None
    assert heap.frozen() > 0  # what is still alive is frozen again


def test_release_without_refreeze_collects_and_leaves_the_host_programs_frozen_heap_as_it_was() -> None:
    node = _Node()
    ref = weakref.ref(node)
    gc.freeze()  # the host program's own freeze (a library Provider does not freeze: freeze_heap off)
    frozen = heap.frozen()
    del node
    release_memory("cpu")
    assert heap.frozen() == frozen and ref() is not None  # not thawed, so its frozen garbage stays
    garbage = _Node()
    loose = weakref.ref(garbage)
    del garbage
    release_memory("cpu")
    assert loose() is None  # what is not frozen is still collected
