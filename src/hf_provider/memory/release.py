"""Give memory back to the operating system (or the CUDA driver) after a model is unloaded."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

from hf_provider.memory import heap


@functools.cache
def _libc_malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_host_heap() -> bool:
    """Ask glibc to return free heap pages to the OS; False where malloc_trim does not exist (non-glibc).

    Why: tensors larger than glibc's mmap threshold are mmapped and unmapped on free, but that threshold grows
    dynamically (up to 32 MiB) after the first large free, so most weight tensors end up in malloc arenas.
    Freed arena pages stay in the process (RSS never drops) until malloc_trim releases them with madvise.
    """
    trim = _libc_malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def release_memory(device: str | torch.device | None = None, *, refreeze: bool = False) -> None:
    """Collect garbage (with `refreeze`, the heap this process froze after its loads included: see heap.py),
    empty the CUDA caching allocator for a CUDA device, and trim the host heap.

    Call after dropping the last reference to an unloaded model's module.
    """
    heap.collect(refreeze)
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_initialized():
        # The caching allocator keeps freed blocks for reuse; only empty_cache returns them to the driver.
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
    trim_host_heap()
