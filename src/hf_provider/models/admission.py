"""Memory admission for the model manager: admit a load against the byte budget, evicting by policy; evict for
out-of-memory recovery; fall back to CPU. A mixin so `ModelManager` keeps one lock and one table of entries, while
this module holds the memory side of its job. The policy itself is pure and lives in `memory.eviction`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.memory.budget import Accountant
from hf_provider.memory.estimate import Estimate, dtype_size, estimate, working_bytes
from hf_provider.memory.eviction import Resident, plan_eviction
from hf_provider.settings import MemorySettings
from hf_provider.spec import ModelSpec

if TYPE_CHECKING:
    from hf_provider.models.manager import Entry

log = logging.getLogger(__name__)


class MemoryAdmission:
    # Provided by ModelManager.
    _lock: threading.RLock
    _changed: threading.Condition
    _entries: dict[str, Entry]
    accountant: Accountant
    memory: MemorySettings
    clock: Callable[[], float]
    unload: Callable[..., bool]
    reclaim: Callable[[str, int], bool] | None

    def _residents(self) -> list[Resident]:
        return [
            Resident(
                name=n,
                pool=x.pool or "host",
                bytes=x.accounted_bytes,
                priority=x.spec.priority,
                # a canary's primary stays: reloaded, its scheduler would no longer count for the comparison
                pinned=x.spec.pinned or x.canary is not None,
                last_used=x.last_used,
                loaded_at=x.loaded_at,
                in_flight=x.busy,
                keep_alive=x.spec.keep_alive,
            )
            for n, x in self._entries.items()
            if x.state == "ready"
        ]

    def _admit(self, name: str, pool: str, need: int) -> None:
        # The wait bound is real time: the injectable clock drives policy (residency, recency, keep-alive) and
        # may stand still in tests, which must not turn a bounded wait into an endless one.
        deadline = time.monotonic() + self.memory.load_wait_s
        while True:
            with self._lock:
                if self.accountant.reserve(name, pool, need):
                    return
                free = self.accountant.free(pool) or 0
                plan = plan_eviction(
                    self._residents(), pool, need, free, self.clock(), self.memory.min_residency_s
                )
            # Warm previous versions (lifecycle/) are a cache: they go before any serving model is evicted.
            if self.reclaim is not None and self.reclaim(pool, need - free):
                continue
            if plan:
                for victim in plan:
                    self._evict(victim)
                continue
            budget = self.accountant.budget.for_pool(pool)
            if budget is not None and need > budget:
                raise MemoryBudgetExceeded(
                    f"model {name!r} needs about {need} bytes but the {pool} budget is {budget} bytes; raise "
                    "the budget, pick a smaller dtype or quantization",
                    model=name,
                )
            # Models holding the memory are busy, pinned or too recently loaded: wait for that to change.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MemoryBudgetExceeded(
                    f"model {name!r} needs about {need} bytes in {pool}; only {free} are free and the resident "
                    "models are pinned, busy or within their minimum residency",
                    model=name,
                    retry_after=max(1.0, self.memory.min_residency_s),
                )
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    def _commit(self, name: str, pool: str, actual: int) -> None:
        while True:
            try:
                self.accountant.commit(name, pool, actual)
                return
            except MemoryBudgetExceeded:
                with self._lock:
                    free = self.accountant.free(pool) or 0
                    plan = plan_eviction(
                        [r for r in self._residents() if r.name != name],
                        pool,
                        actual,
                        free,
                        self.clock(),
                        self.memory.min_residency_s,
                    )
                if not plan:
                    raise
                for victim in plan:
                    self._evict(victim)

    def _make_room(self, pool: str, deficit: int, name: str) -> bool:
        """For a batch of `name` short of `deficit` bytes: unload idle models of the pool by the eviction policy.
        True when one was unloaded."""
        with self._lock:
            others = [r for r in self._residents() if r.name != name]
            plan = plan_eviction(others, pool, deficit, 0, self.clock(), self.memory.min_residency_s)
        return bool(plan) and any(self._evict(victim) for victim in plan)

    def _evict_for_oom(self, name: str) -> bool:
        """OOM recovery step: unload the coldest other model in the same pool. True if one was unloaded."""
        with self._lock:
            me = self._entries.get(name)
            pool = me.pool if me else None
            order = [
                r
                for r in self._residents()
                if r.name != name and r.pool == pool and not r.pinned and r.in_flight == 0
            ]
            order.sort(key=lambda r: (r.priority, r.last_used))
        return any(self._evict(r.name) for r in order)

    def _evict(self, name: str) -> bool:
        """Unload `name` for memory unless it became busy or pinned since the plan was made (then the caller
        plans again)."""
        with self._lock:
            e = self._entries.get(name)
            if e is None or e.state != "ready" or e.busy or e.spec.pinned:
                return False
        return self.unload(name, reason="evicted", only_if_idle=True)

    def _cpu_fallback(self, e: Entry) -> Callable[[], bool] | None:
        if not e.spec.fallback_to_cpu:
            return None

        def move() -> bool:
            m = e.model
            if m is None or m.device.type == "cpu":
                return False
            import torch

            m.module.to("cpu", dtype=torch.float32)
            if m.sentence_model is not None:
                m.sentence_model.to("cpu")
            m.device, m.dtype = torch.device("cpu"), torch.float32
            log.warning("model %s moved to CPU after out-of-memory on the GPU", e.spec.name)
            return True

        return move


def admission_estimate(spec: ModelSpec, folder: Path, dtype: Any) -> Estimate:
    """What a load is admitted against: weights from the safetensors headers plus the working memory of one
    input of the longest length the model takes; its batches reserve the rest as they run (memory/working.py).
    A model in a child process (`isolation = "process"`) runs its batches out of our sight: it is admitted with
    one full batch of the longest inputs, as before per-batch accounting."""
    return estimate(
        folder,
        dtype,
        "none" if spec.quantization == "none" else "int8",
        task=(spec.tasks or ["embeddings"])[0],
        batch_size=spec.batching.max_batch_size if spec.isolation == "process" else 1,
        seq_len=_seq_len_bound(folder, spec),
    )


def batch_working(spec: ModelSpec, folder: Path, dtype: Any) -> tuple[Callable[[int, int, str], int], int]:
    """(rows, padded length, task) -> working bytes of one forward pass of the model, and its longest input."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    act = 4 if spec.quantization == "int8" else (dtype_size(dtype) or 4)  # dynamic int8 computes in float32

    def working(rows: int, length: int, task: str) -> int:
        return working_bytes(config, max(1, rows), max(1, length), act, task)

    return working, _seq_len_bound(folder, spec)


def _seq_len_bound(folder: Path, spec: ModelSpec) -> int:
    """Longest input the working-memory estimate plans for: the spec's max_length, else the checkpoint's own
    limit (sentence-transformers max_seq_length, position embeddings), capped at 512 tokens."""
    limits = [512]
    if spec.max_length:
        limits.append(spec.max_length)
    for name, keys in (
        ("sentence_bert_config.json", ("max_seq_length",)),
        ("config.json", ("max_position_embeddings", "n_positions")),
    ):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        limits += [int(data[k]) for k in keys if isinstance(data.get(k), int) and data[k] > 0]
    return min(limits)
