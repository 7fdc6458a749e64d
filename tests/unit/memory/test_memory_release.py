"""Unloading gives memory back: garbage is collected, freed heap pages go back to the OS (glibc malloc_trim),
and RSS returns close to its level before the load."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import weakref
from collections.abc import Iterator

import psutil
import pytest
import torch

from hf_provider.memory.release import release_memory, trim_host_heap

MiB = 2**20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _has_malloc_trim() -> bool:
    libc = _libc()
    return libc is not None and hasattr(libc, "malloc_trim")  # glibc has it; musl and macOS do not


@pytest.fixture
def gc_off() -> Iterator[None]:
    """Automatic collection off, so only an explicit collection can free a reference cycle."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: reference counting alone never frees it


def test_trim_host_heap_reports_whether_libc_has_malloc_trim() -> None:
    assert trim_host_heap() is _has_malloc_trim()


def test_rss_returns_after_release() -> None:
    if not trim_host_heap():
        pytest.skip("malloc_trim is glibc-only")
    proc = psutil.Process()
    release_memory("cpu")
    before = proc.memory_info().rss
    # ~200 MiB in 1 MiB tensors: below glibc's mmap threshold, so they live in malloc arenas.
    module = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(512, 512)) for _ in range(200)])
    loaded = proc.memory_info().rss
    assert loaded - before > 150 * MiB
    del module
    release_memory("cpu")
    after = proc.memory_info().rss
    assert after <= before * 1.10, (
        f"RSS before {before >> 20} MiB, loaded {loaded >> 20}, after {after >> 20}"
    )


def test_release_memory_returns_freed_heap_pages_to_the_os() -> None:
    libc = _libc()
    if libc is None or not _has_malloc_trim():
        pytest.skip("malloc_trim is glibc-only")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    proc = psutil.Process()
    block = 64 * 1024  # below the mmap threshold: served from the heap, not mmapped
    blocks, pins = [], []
    for _ in range(1024):  # 64 MiB, each block followed by a small live one so free() cannot shrink the heap
        b = libc.malloc(block)
        assert b
        ctypes.memset(b, 1, block)
        blocks.append(b)
        pins.append(libc.malloc(32))
    try:
        for b in blocks:
            libc.free(b)
        freed = proc.memory_info().rss
        release_memory("cpu")
        after = proc.memory_info().rss
    finally:
        for p in pins:
            libc.free(p)
    assert freed - after >= 48 * MiB, f"RSS after free {freed >> 20} MiB, after release {after >> 20} MiB"


@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu"), "cuda:0"])
def test_release_memory_collects_garbage(gc_off: None, device: str | torch.device | None) -> None:
    node = _Node()
    ref = weakref.ref(node)
    del node
    assert ref() is not None  # the cycle outlives its last name while collection is off
    assert release_memory(device) is None
    assert ref() is None


def test_cuda_release_does_not_create_a_cuda_context() -> None:
    # Without a CUDA context there is no cache to empty: the CUDA step is skipped, not started up (and
    # without a GPU nothing raises).
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is already initialised in this process")
    release_memory("cuda:0")
    release_memory(torch.device("cuda", 0))
    assert not torch.cuda.is_initialized()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_release_empties_the_caching_allocator() -> None:
    x = torch.ones(64 * MiB, dtype=torch.uint8, device="cuda:0")
    del x
    reserved = torch.cuda.memory_reserved(0)
    assert reserved >= 64 * MiB  # freed, but kept by the caching allocator
    release_memory("cuda:0")
    assert torch.cuda.memory_reserved(0) <= reserved - 64 * MiB
