"""Memory budgets (host and per GPU) and the accountant that admits loads against them.

Pools are named "host" and "cuda:N". A pool without a budget is unlimited. The accountant is a small
lock-guarded ledger: a load first reserves its estimate, then commits the bytes it actually took; committed
plus reserved bytes never exceed a pool's budget.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.units import GPU_MEMORY, SizeValue, check_size, is_fraction, parse_size

__all__ = ["GPU_MEMORY", "HOST", "SizeValue", "check_size", "parse_size"]

HOST = "host"


def host_total_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def gpu_total_bytes() -> dict[int, int]:
    """Total memory of each visible CUDA device; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {i: int(torch.cuda.mem_get_info(i)[1]) for i in range(torch.cuda.device_count())}


def pool_for_device(device: str) -> str:
    """Accounting pool of a torch device string: "cuda" / "cuda:N" -> "cuda:N"; cpu and mps -> "host"."""
    if device.startswith("cuda"):
        return device if ":" in device else "cuda:0"
    return HOST


@dataclass(frozen=True)
class MemoryBudget:
    """Budget in bytes per pool: `host` (None = unlimited) and `gpus` (device index -> bytes; absent = unlimited)."""

    host: int | None = None
    gpus: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        host_budget: SizeValue | None,
        gpu_budget: SizeValue | Mapping[int, SizeValue] | None,
        *,
        host_total: int | None = None,
        gpu_totals: Mapping[int, int] | None = None,
    ) -> MemoryBudget:
        """Resolve settings values (bytes, "2GiB", or a fraction such as 0.8) against the machine's totals.

        `gpu_budget` is one value applied to every visible GPU, or a mapping of device index to value. Totals
        default to psutil's total memory and torch.cuda.mem_get_info; pass them to resolve without touching
        the machine.
        """
        host = None
        if host_budget is not None:
            host = parse_size(
                host_budget,
                host_total if host_total is not None else _lazy_host_total(host_budget),
                of="RAM",
            )
        gpus: dict[int, int] = {}
        if gpu_budget is not None:
            totals = dict(gpu_totals) if gpu_totals is not None else gpu_total_bytes()
            if isinstance(gpu_budget, Mapping):
                gpus = {
                    int(i): parse_size(v, totals.get(int(i)), of=GPU_MEMORY) for i, v in gpu_budget.items()
                }
            else:
                gpus = {i: parse_size(gpu_budget, t, of=GPU_MEMORY) for i, t in totals.items()}
        return cls(host=host, gpus=gpus)

    def for_pool(self, pool: str) -> int | None:
        """Budget of a pool ("host", "cuda:N"); None means unlimited."""
        if pool == HOST:
            return self.host
        if pool.startswith("cuda:"):
            return self.gpus.get(int(pool.split(":", 1)[1]))
        raise ValueError(f"unknown memory pool {pool!r}; use 'host' or 'cuda:N'")


def _lazy_host_total(value: SizeValue) -> int | None:
    # Only ask psutil when the value is a fraction, so plain byte sizes resolve without probing the machine.
    return host_total_bytes() if is_fraction(value) else None


@dataclass
class _Entry:
    nbytes: int
    committed: bool


class Accountant:
    """Lock-guarded ledger of reserved and committed bytes per (model, pool).

    Invariant: for each pool, committed + reserved bytes <= budget. `reserve` returns False instead of
    breaking it; `commit` raises MemoryBudgetExceeded and leaves the ledger unchanged.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._ledger: dict[str, dict[str, _Entry]] = {}
        self._peak: dict[str, int] = {}

    def _used(self, pool: str, excluding: str | None = None) -> int:
        return sum(e.nbytes for m, e in self._ledger.get(pool, {}).items() if m != excluding)

    def _fits(self, pool: str, model: str, nbytes: int) -> bool:
        limit = self.budget.for_pool(pool)
        return limit is None or self._used(pool, excluding=model) + nbytes <= limit

    def _set(self, pool: str, model: str, entry: _Entry) -> None:
        self._ledger.setdefault(pool, {})[model] = entry
        self._peak[pool] = max(self._peak.get(pool, 0), self._used(pool))

    def reserve(self, model: str, pool: str, nbytes: int) -> bool:
        """Admit `model` into `pool` for an estimated `nbytes`; False (ledger unchanged) when it does not fit.

        A model already committed in the pool must be released first (ValueError otherwise); reserving again
        replaces an earlier reservation.
        """
        if nbytes < 0:
            raise ValueError("nbytes cannot be negative")
        with self._lock:
            current = self._ledger.get(pool, {}).get(model)
            if current is not None and current.committed:
                raise ValueError(
                    f"model {model!r} is already committed in {pool!r}; release it before reserving"
                )
            if not self._fits(pool, model, nbytes):
                return False
            self._set(pool, model, _Entry(nbytes, committed=False))
            return True

    def commit(self, model: str, pool: str, actual_bytes: int) -> None:
        """Replace the model's reservation in `pool` by the bytes it actually took after loading.

        Raises MemoryBudgetExceeded (ledger unchanged) when the actual bytes do not fit: the caller evicts
        more and commits again, or unloads the model and calls `release`.
        """
        if actual_bytes < 0:
            raise ValueError("actual_bytes cannot be negative")
        with self._lock:
            if not self._fits(pool, model, actual_bytes):
                limit = self.budget.for_pool(pool)
                used = self._used(pool, excluding=model)
                raise MemoryBudgetExceeded(
                    f"model {model!r} took {actual_bytes} bytes in {pool}, but only "
                    f"{max(0, (limit or 0) - used)} of the {limit}-byte budget are free",
                    model=model,
                )
            self._set(pool, model, _Entry(actual_bytes, committed=True))

    def release(self, model: str, pool: str | None = None) -> int:
        """Forget the model's bytes in `pool` (every pool when None); returns the bytes released."""
        freed = 0
        with self._lock:
            for name, entries in self._ledger.items():
                if pool is not None and name != pool:
                    continue
                entry = entries.pop(model, None)
                freed += entry.nbytes if entry else 0
        return freed

    def rename(self, model: str, new_name: str) -> None:
        """Move `model`'s bytes to `new_name` in every pool at once (a version swap re-labels the outgoing and
        incoming versions: between two separate calls another load could take the bytes in transit)."""
        with self._lock:
            for entries in self._ledger.values():
                if new_name in entries:
                    raise ValueError(f"{new_name!r} already holds bytes; release it before renaming onto it")
            for entries in self._ledger.values():
                entry = entries.pop(model, None)
                if entry is not None:
                    entries[new_name] = entry

    def used(self, pool: str) -> int:
        """Committed plus reserved bytes in a pool."""
        with self._lock:
            return self._used(pool)

    def free(self, pool: str) -> int | None:
        """Bytes still admissible in a pool; None when the pool is unlimited."""
        limit = self.budget.for_pool(pool)
        if limit is None:
            return None
        with self._lock:
            return max(0, limit - self._used(pool))

    def peak(self, pool: str) -> int:
        """Highest committed plus reserved bytes the pool has held (tests assert it stays within budget)."""
        with self._lock:
            return self._peak.get(pool, 0)

    def snapshot(self) -> dict[str, Any]:
        """{"pools": {pool: budget/used/reserved/committed/free/peak bytes}, "models": {model: {pool: {...}}}}."""
        with self._lock:
            pools: dict[str, Any] = {}
            models: dict[str, dict[str, Any]] = {}
            names = set(self._ledger) | {HOST} | {f"cuda:{i}" for i in self.budget.gpus}
            for pool in sorted(names):
                entries = self._ledger.get(pool, {})
                limit = self.budget.for_pool(pool)
                used = sum(e.nbytes for e in entries.values())
                pools[pool] = {
                    "budget_bytes": limit,
                    "used_bytes": used,
                    "committed_bytes": sum(e.nbytes for e in entries.values() if e.committed),
                    "reserved_bytes": sum(e.nbytes for e in entries.values() if not e.committed),
                    "free_bytes": None if limit is None else max(0, limit - used),
                    "peak_bytes": self._peak.get(pool, 0),
                }
                for model, e in entries.items():
                    models.setdefault(model, {})[pool] = {
                        "bytes": e.nbytes,
                        "state": "committed" if e.committed else "reserved",
                    }
            return {"pools": pools, "models": models}
