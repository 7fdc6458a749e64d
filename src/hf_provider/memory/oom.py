"""Out-of-memory recovery for one batch: split, evict, fall back to CPU, and only then fail.

`run_with_recovery` wraps the forward call of a batch. Only allocator out-of-memory errors are handled; every
other exception propagates unchanged (architecture rule 8). resilience/faults.py's `FaultInjector.check_batch`
provokes genuine allocator errors for tests.
"""

from __future__ import annotations

import gc
import logging
import traceback
from collections.abc import Callable
from typing import TypeVar

import torch

from hf_provider.errors import OutOfMemory

T = TypeVar("T")
R = TypeVar("R")
_log = logging.getLogger(__name__)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA), MemoryError, and RuntimeErrors of the CPU allocator or CUDA
    kernels whose message says "out of memory" / "can't allocate memory"."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return any(m in msg for m in _OOM_MESSAGES)
    return False


def free_cache() -> None:
    """Drop garbage and, when CUDA is in use, the caching allocator's free blocks, so a retry starts clean."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _forget_frames(exc: BaseException) -> None:
    # The traceback keeps the failed forward's frames alive, and their locals hold the activations that filled
    # the memory: clear them before retrying (the traceback itself stays for the final error's chain).
    traceback.clear_frames(exc.__traceback__)


def run_with_recovery(
    items: list[T],
    run: Callable[[list[T]], list[R]],
    *,
    evict: Callable[[], bool] | None = None,
    to_cpu: Callable[[], bool] | None = None,
    log: logging.Logger | None = None,
    model: str | None = None,
    retry_after: float = 5.0,
    max_evictions: int = 8,
) -> list[R]:
    """run(items), recovering from out-of-memory errors; results are in the order of `items`.

    On OOM the batch is split in halves, recursively, down to single items. A single item that still fails
    calls `evict()` (True when it freed something; retried up to `max_evictions` times while it does), then
    `to_cpu()` (True when the model now runs on CPU; retried once), and finally raises errors.OutOfMemory with
    `retry_after`, chained from the original error. Non-OOM errors propagate unchanged.
    """
    logger = log or _log

    def attempt(chunk: list[T]) -> tuple[list[R] | None, BaseException | None]:
        try:
            return run(chunk), None
        except Exception as exc:
            if not is_oom(exc):
                raise
            _forget_frames(exc)
            return None, exc

    def solve(chunk: list[T]) -> list[R]:
        result, err = attempt(chunk)
        if err is None:
            return result  # type: ignore[return-value]
        free_cache()
        if len(chunk) > 1:
            mid = len(chunk) // 2
            logger.warning(
                "out of memory on a batch of %d; retrying as %d + %d", len(chunk), mid, len(chunk) - mid
            )
            return solve(chunk[:mid]) + solve(chunk[mid:])
        return single(chunk, err)

    def single(chunk: list[T], first: BaseException) -> list[R]:
        for strategy, action, tries in (
            ("evicting cold models", evict, max_evictions),
            ("falling back to CPU", to_cpu, 1),
        ):
            for _ in range(tries):
                if action is None or not action():
                    break
                logger.warning("out of memory on a single item; %s and retrying", strategy)
                free_cache()
                result, err = attempt(chunk)
                if err is None:
                    return result  # type: ignore[return-value]
        raise OutOfMemory(
            f"out of memory on a single item after splitting, eviction and CPU fallback: {first}",
            model=model,
            retry_after=retry_after,
        ) from first

    if not items:
        return []
    return solve(list(items))
