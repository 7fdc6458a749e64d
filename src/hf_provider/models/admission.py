"""Memory admission for the model manager: admit a load against the byte budget, evicting by policy; evict for
out-of-memory recovery; reserve each batch's working memory; fall back to CPU. A collaborator the manager holds: it
reads the manager's table of entries under the manager's lock (both given at construction) and unloads through a
callback, so it is built and tested alone. The policy itself is pure and lives in `memory.eviction`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_provider.errors import MemoryBudgetExceeded
from hf_provider.memory.budget import Accountant
from hf_provider.memory.estimate import Estimate, dtype_size, estimate, working_bytes
from hf_provider.memory.eviction import Resident, plan_eviction
from hf_provider.memory.working import BatchMemory, token_cap
from hf_provider.settings import MemorySettings
from hf_provider.spec import ModelSpec
from hf_provider.units import format_size

if TYPE_CHECKING:
    from hf_provider.models.entry import Entry

log = logging.getLogger(__name__)


class MemoryAdmission:
    def __init__(
        self,
        accountant: Accountant,
        memory: MemorySettings,
        entries: Mapping[str, Entry],
        *,
        unload: Callable[..., bool],
        changed: threading.Condition | None = None,
        reclaim: Callable[[str, int], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`entries` is the manager's live table, guarded by `changed`'s lock (notified when an entry changes);
        `unload(name, reason=, only_if_idle=)` unloads one; `reclaim(pool, bytes)` frees warm previous versions
        (lifecycle/) before a serving model is evicted."""
        self.accountant = accountant
        self.memory = memory
        self.entries = entries
        self.unload = unload
        self.changed = changed or threading.Condition(threading.RLock())
        self.reclaim = reclaim
        self.clock = clock

    def residents(self) -> list[Resident]:
        """The ready entries as the eviction policy sees them."""
        with self.changed:
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
                for n, x in self.entries.items()
                if x.state == "ready"
            ]

    def admit(self, name: str, pool: str, need: int) -> None:
        """Reserve `need` bytes of `pool` for `name`, evicting idle models by policy; waits (load_wait_s) while
        the models holding the memory are busy, pinned or too recently loaded. MemoryBudgetExceeded otherwise."""
        # The wait bound is real time: the injectable clock drives policy (residency, recency, keep-alive) and
        # may stand still in tests, which must not turn a bounded wait into an endless one.
        deadline = time.monotonic() + self.memory.load_wait_s
        while True:
            with self.changed:
                if self.accountant.reserve(name, pool, need):
                    return
                free = self.accountant.free(pool) or 0
                plan = plan_eviction(
                    self.residents(), pool, need, free, self.clock(), self.memory.min_residency_s
                )
            # Warm previous versions (lifecycle/) are a cache: they go before any serving model is evicted.
            if self.reclaim is not None and self.reclaim(pool, need - free):
                continue
            if plan:
                for victim in plan:
                    self.evict(victim)
                continue
            budget = self.accountant.budget.for_pool(pool)
            if budget is not None and need > budget:
                raise MemoryBudgetExceeded(
                    f"model {name!r} needs about {format_size(need)} but the {pool} budget is "
                    f"{format_size(budget)}; raise the budget, pick a smaller dtype or quantization",
                    model=name,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MemoryBudgetExceeded(
                    f"model {name!r} needs about {format_size(need)} in {pool}; only {format_size(free)} "
                    "are free and the resident models are pinned, busy or within their minimum residency",
                    model=name,
                    retry_after=max(1.0, self.memory.min_residency_s),
                )
            with self.changed:
                self.changed.wait(min(remaining, 0.05))

    def commit(self, name: str, pool: str, actual: int) -> None:
        """Account `name`'s measured bytes in place of its reservation, evicting others by policy to fit."""
        while True:
            try:
                self.accountant.commit(name, pool, actual)
                return
            except MemoryBudgetExceeded:
                with self.changed:
                    free = self.accountant.free(pool) or 0
                    plan = plan_eviction(
                        [r for r in self.residents() if r.name != name],
                        pool,
                        actual,
                        free,
                        self.clock(),
                        self.memory.min_residency_s,
                    )
                if not plan:
                    raise
                for victim in plan:
                    self.evict(victim)

    def make_room(self, pool: str, deficit: int, name: str) -> bool:
        """For a batch of `name` short of `deficit` bytes: unload idle models of the pool by the eviction policy.
        True when one was unloaded."""
        with self.changed:
            others = [r for r in self.residents() if r.name != name]
            plan = plan_eviction(others, pool, deficit, 0, self.clock(), self.memory.min_residency_s)
        return bool(plan) and any(self.evict(victim) for victim in plan)

    def evict_for_oom(self, name: str) -> bool:
        """OOM recovery step: unload the coldest other model in the same pool. True if one was unloaded."""
        with self.changed:
            me = self.entries.get(name)
            pool = me.pool if me else None
            order = [
                r
                for r in self.residents()
                if r.name != name and r.pool == pool and not r.pinned and r.in_flight == 0
            ]
            order.sort(key=lambda r: (r.priority, r.last_used))
        return any(self.evict(r.name) for r in order)

    def evict(self, name: str) -> bool:
        """Unload `name` for memory unless it became busy or pinned since the plan was made (then the caller
        plans again)."""
        with self.changed:
            e = self.entries.get(name)
            if e is None or e.state != "ready" or e.busy or e.spec.pinned:
                return False
        return self.unload(name, reason="evicted", only_if_idle=True)

    def batch_memory(
        self,
        e: Entry,
        key: str,
        pool: str,
        runner: Any,
        folder: Path,
        dtype: Any,
        admitted: int,
        accounted: int,
    ) -> None:
        """Under a budget, the in-process runner reserves each batch's working memory (memory/working.py) and the
        batcher's token cap keeps one batch within what the budget leaves beside the model."""
        budget = self.accountant.budget.for_pool(pool)
        if budget is None or e.spec.isolation == "process":
            e.token_cap = None
            return
        working, longest = batch_working(e.spec, folder, dtype)
        task = (e.spec.tasks or ["embeddings"])[0]
        runner.working = BatchMemory(
            self.accountant,
            pool,
            key,
            working,
            admitted,
            make_room=lambda deficit: self.make_room(pool, deficit, e.spec.name),
            wait_s=self.memory.load_wait_s,
        )
        e.token_cap = token_cap(budget - accounted + admitted, working(1, longest, task), longest)


def cpu_fallback(e: Entry) -> Callable[[], bool] | None:
    """The OOM recovery step that moves `e`'s model to the CPU, when its spec allows it."""
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
