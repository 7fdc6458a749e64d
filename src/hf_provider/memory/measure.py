"""Working memory of one forward pass, measured: the peak bytes above what was resident when it began.

On CUDA the caching allocator keeps a resettable peak (`torch.cuda.max_memory_allocated`). On the host nothing in
torch does, so this reads Linux's own high-water mark of the process's resident set (VmHWM), which writing "5" to
/proc/self/clear_refs resets to the current size (Linux 4.0+; about 20 us). Process-wide: when several models
compute at once each pass also sees the others' memory, so the figure errs high, never low. Where the reset is
refused (other kernels, a read-only /proc) it falls back to the resident size after the pass, which misses what
the pass freed before it ended, and says so (`exact`).
"""

from __future__ import annotations

import os

import torch

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field: bytes) -> int | None:
    try:
        with open(_STATUS, "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class HostPeak:
    """Peak resident bytes of this process during a span: `begin()` before it, `peak_above()` after it."""

    def __init__(self) -> None:
        self.exact = self._reset()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    @staticmethod
    def _reset() -> bool:
        try:
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def resident(self) -> int:
        """Resident bytes now, from /proc/self/statm: one small read."""
        try:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def begin(self) -> int:
        if self.exact:
            self.exact = self._reset()
        return self.resident()

    def peak_above(self, base: int) -> int:
        peak = None
        if self.exact:
            kib = _status_kib(b"VmHWM:")
            peak = None if kib is None else kib * 1024
        if peak is None:
            peak = self.resident()
        return max(0, peak - base)


class DevicePeak:
    """The same for a CUDA device, from the caching allocator's own peak counter."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def begin(self) -> int:
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def peak_above(self, base: int) -> int:
        return max(0, torch.cuda.max_memory_allocated(self.device) - base)
