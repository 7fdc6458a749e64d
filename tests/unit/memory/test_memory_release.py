"""Unloading gives memory back: RSS returns close to its level before the load."""

from __future__ import annotations

import psutil
import pytest
import torch

from hf_provider.memory.release import release_memory, trim_host_heap


def test_rss_returns_after_release() -> None:
    if not trim_host_heap():
        pytest.skip("malloc_trim is glibc-only")
    proc = psutil.Process()
    release_memory("cpu")
    before = proc.memory_info().rss
    # ~200 MiB in 1 MiB tensors: below glibc's mmap threshold, so they live in malloc arenas.
    module = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(512, 512)) for _ in range(200)])
    loaded = proc.memory_info().rss
    assert loaded - before > 150 * 2**20
    del module
    release_memory("cpu")
    after = proc.memory_info().rss
    assert after <= before * 1.10, (
        f"RSS before {before >> 20} MiB, loaded {loaded >> 20}, after {after >> 20}"
    )


def test_release_memory_accepts_devices() -> None:
    release_memory(None)
    release_memory(torch.device("cpu"))
    release_memory("cuda:0")  # no-op without an initialised CUDA context
