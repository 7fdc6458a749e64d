"""A forward pass's working memory is measured at its peak, not after it: memory freed before the pass ends
still counts."""

from __future__ import annotations

import sys

import pytest
import torch

from hf_provider.memory.measure import HostPeak

MiB = 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_host_peak_counts_memory_freed_before_the_span_ends() -> None:
    meter = HostPeak()
    if not meter.exact:
        pytest.skip("/proc/self/clear_refs is not writable here")
    base = meter.begin()
    x = torch.ones(64 * MiB, dtype=torch.uint8)  # 64 MiB touched, then freed inside the span
    del x
    assert meter.resident() - base < 32 * MiB  # the resident size after the span no longer shows it
    assert meter.peak_above(base) >= 60 * MiB
    # A new span starts from the current size: the earlier peak is forgotten.
    base = meter.begin()
    assert meter.peak_above(base) < 32 * MiB


def test_host_peak_falls_back_to_the_resident_size_without_the_reset(monkeypatch) -> None:
    monkeypatch.setattr(HostPeak, "_reset", staticmethod(lambda: False))
    meter = HostPeak()
    assert not meter.exact
    base = meter.begin()
    keep = torch.ones(32 * MiB, dtype=torch.uint8)
    assert meter.peak_above(base) >= 30 * MiB  # still alive: the fallback sees it
    del keep
