"""A model version outside its manager entry: one loaded beside the serving one (for a swap or a canary), or the
previous one kept warm after a swap for a fast rollback.

A version is held in an `Entry` of its own that the manager never registers: `ModelManager.load_into` fills it exactly
as it fills a served model's entry (scheduler, breaker, OOM fallback), accounted in the budget under `key`
(`name@<commit>`), so two versions of one model are two ledger lines.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hf_provider.cache import pins
from hf_provider.errors import DeadlineExceeded, InvalidInput
from hf_provider.memory.release import trim_host_heap
from hf_provider.models.manager import Entry, ModelManager

log = logging.getLogger(__name__)

_GENERATIVE = {"text-generation", "text2text-generation", "translation", "summarization"}
_WARMUP_TEXT = "The harbour was rebuilt after the storm."


@dataclass(eq=False)
class Version:
    key: str  # its line in the memory budget's ledger
    entry: Entry  # unregistered: model, scheduler, pool, accounted bytes, spec (revision as asked)
    commit: str | None
    parked_until: float = 0.0  # warm previous: dropped at this time (manager clock)
    device: str | None = None  # where its weights serve from when it is not parked
    _pin: str | None = None  # why its files are pinned in the Hub cache (cache/pins.py), while it holds a pin

    @property
    def revision(self) -> str | None:
        return self.entry.spec.revision

    def pin(self, reason: str) -> None:
        """Keep its snapshot from the cache budget's pruning while this version exists outside the manager's
        entries (which the budget asks about by itself): as a candidate ("swapping") or warm ("warm")."""
        self.unpin()
        if self.commit is not None:
            pins.pin(self.entry.spec.source, self.commit, reason)
            self._pin = reason

    def unpin(self) -> None:
        if self._pin is not None and self.commit is not None:
            pins.unpin(self.entry.spec.source, self.commit, self._pin)
        self._pin = None

    def describe(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "commit": self.commit,
            "accounted_bytes": self.entry.accounted_bytes,
            "pool": self.entry.pool,
            "in_flight": self.entry.in_flight,
        }


def version_key(name: str, commit: str | None, revision: str | None) -> str:
    return f"{name}@{(commit or revision or 'local')[:12]}"


class RevisionFaults:
    """TESTING ONLY: lets a `[faults]` rule name one version of a model as `name@revision` or `name@commit`
    (a canary's candidate that fails); rules naming the model itself apply to every version."""

    def __init__(self, inner: Any, revision: str | None, commit: str | None) -> None:
        self.inner = inner
        self.tags = [t for t in (revision, commit) if t]

    def check(self, model: str, phase: str) -> None:
        named = {r.model for r in self.inner.rules()}
        for t in self.tags:
            if f"{model}@{t}" in named:
                self.inner.check(f"{model}@{t}", phase)
                return
        self.inner.check(model, phase)


def warm_up(v: Version, timeout_s: float = 60.0) -> None:
    """One small request per task through the version's own scheduler: its first request is then not the one a
    client waits on (lazy kernels, memory-mapped weights touched), and a version that cannot answer at all
    fails here, before it serves anyone."""
    e = v.entry
    assert e.model is not None and e.scheduler is not None
    for task, handler in list(e.model.handlers.items()):
        inputs: Any = _WARMUP_TEXT
        params: dict[str, Any] = {}
        if task == "fill-mask":
            inputs = f"The harbour was {e.model.tokenizer.mask_token}."
        elif task == "question-answering":
            inputs = {"question": "What was rebuilt?", "context": _WARMUP_TEXT}
        elif task == "embeddings":
            inputs = [_WARMUP_TEXT]
        if task in _GENERATIVE:
            params = {"max_new_tokens": 2}
        try:
            items, resolved, single = handler.parse(inputs, params)
        except InvalidInput as exc:  # our sample does not suit this task's model: not the version's fault
            log.info("no warm-up of %s for %s: %s", v.key, task, exc.message)
            continue
        req = e.scheduler.submit(
            handler, items, resolved, single=single, deadline=time.monotonic() + timeout_s
        )
        try:
            req.future.result(timeout_s)
        except TimeoutError as exc:
            req.expire(time.monotonic())
            raise DeadlineExceeded(f"warming up {v.key} took over {timeout_s:.0f}s") from exc


def drain(v: Version, timeout_s: float) -> bool:
    """Wait until the version has no request in flight (its scheduler keeps running). False on timeout."""
    end = time.monotonic() + timeout_s
    while v.entry.in_flight > 0:
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)
    return True


def drop(manager: ModelManager, v: Version, reason: str) -> None:
    """Stop its scheduler (finishing anything queued), give its memory back."""
    e = v.entry
    v.unpin()
    sched, model = e.scheduler, e.model
    device = str(model.device) if model is not None else "cpu"
    if sched is not None:
        sched.close()
    if model is not None:
        _release_weights(model)
    manager.accountant.release(v.key)
    e.model = e.scheduler = None
    e.accounted_bytes = 0
    del sched, model
    _free(device, collect=manager.freeze_heap)
    log.info("dropped version %s (%s)", v.key, reason)


def park(manager: ModelManager, v: Version, until: float) -> bool:
    """Keep a drained version warm in host memory until `until`: weights on a GPU move to the host, accounted
    there (weights only: an idle version needs no working memory). False, and nothing kept, when the host
    budget cannot hold it."""
    e = v.entry
    model = e.model
    assert model is not None
    v.device = str(model.device)
    if model.device.type == "cpu":  # weights only: shrinking a committed line always fits
        manager.accountant.commit(v.key, e.pool or "host", model.weight_bytes)
        e.accounted_bytes = model.weight_bytes
    else:
        if not manager.accountant.reserve(v.key, "host", model.weight_bytes):
            return False
        _move(model, "cpu")
        manager.accountant.release(v.key, e.pool)
        manager.accountant.commit(v.key, "host", model.weight_bytes)
        e.pool, e.accounted_bytes = "host", model.weight_bytes
        _empty_cuda_cache(v.device)  # the tensors moved: nothing for the garbage collector to do
    v.parked_until = until
    return True


def unpark(manager: ModelManager, v: Version) -> None:
    """Bring a parked version back where it served from (admitted against that pool's budget again)."""
    e = v.entry
    model = e.model
    assert model is not None
    v.parked_until = 0.0
    if v.device is None:
        return
    from hf_provider.memory.budget import pool_for_device

    pool = pool_for_device(v.device)
    need = model.weight_bytes + e.working_bytes
    if pool == "host":  # its working memory back (the reservation of its next forward passes)
        manager.admission.commit(v.key, pool, need)
    else:
        manager.admission.admit(v.key, pool, need)
        _move(model, v.device)
        manager.accountant.release(v.key, "host")
        manager.accountant.commit(v.key, pool, need)
    e.pool, e.accounted_bytes = pool, need


def _release_weights(model: Any) -> None:
    """Free a dropped version's tensors now, by reference counting. A loaded model sits in reference cycles
    (handlers and model, and inside transformers' modules) that the heap freeze (memory/heap.py) keeps from the
    collector: freeing them takes an unfreeze and a full pass (0.3-1.5 s holding the GIL on 2 cores), which an
    unload can afford and a swap, with its successor serving, cannot. Moving the parameters to the meta device
    drops every reference to their storage; only small Python shells wait for the next full pass."""
    for m in (model.sentence_model, model.module):
        to_empty = getattr(m, "to_empty", None)  # absent for a model isolated in its own process
        if to_empty is not None:
            to_empty(device="meta")
    model.handlers.clear()


def _free(device: str, *, collect: bool) -> None:
    """Give a dropped version's memory back without a full pass over the frozen heap (see _release_weights).
    A collection walks what is not frozen: with the heap frozen (the server) that is 7-15 ms; without (a library
    Provider) it is the whole heap, ~200 ms holding the GIL on 2 cores, so the shells wait for the host's own
    collector there (the weights are already freed)."""
    if collect:
        gc.collect()
    _empty_cuda_cache(device)
    trim_host_heap()


def _empty_cuda_cache(device: str) -> None:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()


def _move(model: Any, device: str) -> None:
    import torch

    model.module.to(device)
    if model.sentence_model is not None:
        model.sentence_model.to(device)
    model.device = torch.device(device)


def oldest_first(versions: Iterable[Version]) -> list[Version]:
    return sorted(versions, key=lambda v: v.parked_until)
