"""Loading a model's other version: resolving the revision asked for, loading it beside the serving one (and
warming it up), or, when the memory budget cannot hold both, switching sequentially while requests wait."""

from __future__ import annotations

import logging
import time
from typing import Any

from hf_provider.cache.hashing import in_background
from hf_provider.errors import InvalidInput, ModelNotFound, VersionConflict
from hf_provider.hub.resolve import Resolved
from hf_provider.lifecycle import version as V
from hf_provider.lifecycle.locking import LockKeeper
from hf_provider.lifecycle.switch import exclusive
from hf_provider.lifecycle.warm import WarmVersions
from hf_provider.memory import heap
from hf_provider.memory.eviction import plan_eviction
from hf_provider.memory.release import release_memory
from hf_provider.models.admission import admission_estimate
from hf_provider.models.manager import Entry, ModelManager
from hf_provider.runtime.device import pick_device, pick_dtype
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.settings import VersioningSettings
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)


class VersionLoader:
    def __init__(
        self,
        manager: ModelManager,
        warm: WarmVersions,
        lock: LockKeeper,
        settings: VersioningSettings,
        faults: Any = None,
    ) -> None:
        self.manager = manager
        self.warm = warm
        self.lock = lock
        self.settings = settings
        self.faults = faults  # TESTING ONLY: [faults] rules may name one revision (version.RevisionFaults)

    def resolve(self, e: Entry, revision: str, asked: str | None = None) -> tuple[ModelSpec, Resolved]:
        """The candidate's spec (the revision as asked) and its snapshot; an unknown revision is a 400."""
        spec = e.spec.model_copy(update={"revision": asked or revision})
        fetcher = getattr(self.manager, "fetcher", None)
        try:
            # the serving version takes every request meanwhile: its files are hashed on the cores' idle time
            with in_background():
                resolved = self._fetch(fetcher, spec, revision)
        except ModelNotFound as exc:
            raise InvalidInput(
                f"cannot swap {e.spec.name!r} to revision {revision!r}: {exc.message}", param="revision"
            ) from exc
        if resolved.kind != "hub":
            raise InvalidInput(
                f"model {e.spec.name!r} is served from the local folder {e.spec.source}, which has no revisions",
                param="revision",
            )
        return spec, resolved

    @staticmethod
    def _fetch(fetcher: Any, spec: ModelSpec, revision: str) -> Resolved:
        if fetcher is not None:
            return fetcher.fetch(spec, revision=revision)
        from hf_provider.hub.resolve import resolve

        return resolve(spec.source, revision)

    def beside(self, e: Entry, spec: ModelSpec, resolved: Resolved, *, required: bool = False) -> V.Version:
        """Load and warm up the candidate beside the serving version. The caller holds a lease on the serving
        one meanwhile, so the candidate's admission never evicts it."""
        name = e.spec.name
        if required and not self.fits_beside(e, spec, resolved):
            raise VersionConflict(
                f"the memory budget cannot hold two versions of {name!r} at once, which a canary needs; raise "
                "the budget or unload other models",
                model=name,
            )
        key = V.version_key(name, resolved.commit, spec.revision)
        faults = (
            None if self.faults is None else V.RevisionFaults(self.faults, spec.revision, resolved.commit)
        )
        v = V.Version(key=key, entry=Entry(spec), commit=resolved.commit)
        v.pin("swapping")
        deadline = time.monotonic() + self.manager.memory.load_wait_s

        try:
            # the serving version takes every request meanwhile: on CPU the load runs between its forward passes
            # (runtime/foreground.py); a CUDA pass computes on the device and is seldom off it, so no waiting
            yielding = self.settings.yield_to_requests and pick_device(spec.device).type == "cpu"
            with FOREGROUND.yield_to_forwards(enabled=yielding) as waited:
                self.manager.load_into(v.entry, deadline, key=key, resolved=resolved, faults=faults)
            log.info(
                "loaded %s beside the serving version; it waited %.2f s for forward passes (%d free slices)",
                key,
                waited.waited_s,
                waited.slices,
            )
            V.warm_up(v)
        except BaseException:
            V.drop(self.manager, v, "failed to load or warm up")
            raise
        return v

    def fits_beside(self, e: Entry, spec: ModelSpec, resolved: Resolved) -> bool:
        """Whether the candidate fits next to the serving version, counting what eviction of other idle models
        and dropping warm previous versions would free."""
        m = self.manager
        dtype = pick_dtype(spec.dtype, pick_device(spec.device))
        need = admission_estimate(spec, resolved.path, dtype).total_bytes
        pool = e.pool or "host"
        free = m.accountant.free(pool)
        if free is None:
            return True
        free += self.warm.bytes_in(pool)
        others = [r for r in m.admission.residents() if r.name != e.spec.name]
        return plan_eviction(others, pool, need, free, m.clock(), m.memory.min_residency_s) is not None

    def sequential(self, e: Entry, spec: ModelSpec, resolved: Resolved) -> None:
        """No room for two versions: requests wait while the old drains, is unloaded and the new one loads."""
        m, name = self.manager, e.spec.name
        old_spec = e.spec
        old_commit = e.model.commit if e.model is not None else None
        self.warm.drop(name, "no room for it during a sequential swap")
        with exclusive(m, e):
            sched, model = e.scheduler, e.model
            device = str(model.device) if model is not None else "cpu"
            if sched is not None:
                sched.close(timeout=self.settings.drain_timeout_s)  # finishes what is queued: drained
            with m.changed:
                e.model = e.scheduler = None
                e.accounted_bytes = 0
                m.accountant.release(name)
            del sched, model
            # as an unload does (the old version was frozen at its load); requests wait meanwhile anyway
            release_memory(device, refreeze=m.freeze_heap)
            deadline = time.monotonic() + m.memory.load_wait_s
            try:
                e.spec = spec.model_copy(update={"revision": self.lock.spec_revision(e, spec.revision)})
                m.load_into(e, deadline, resolved=resolved)
                if m.freeze_heap:
                    heap.freeze()  # as after any load of a served entry
            except BaseException:
                m.accountant.release(name)
                e.spec = old_spec
                if old_commit is not None:
                    log.warning("swap of %s failed; loading its previous commit %s again", name, old_commit)
                    try:
                        m.load_into(e, deadline, resolved=self.resolve(e, old_commit, old_spec.revision)[1])
                    except BaseException as again:
                        m.accountant.release(name)
                        e.error = f"the swap failed and the previous commit did not load again: {again}"
                raise

    def load_unloaded(self, e: Entry, spec: ModelSpec) -> None:
        old_spec = e.spec
        with self.manager.changed:
            e.spec = spec.model_copy(update={"revision": self.lock.spec_revision(e, spec.revision)})
        try:
            self.manager.get(e.spec.name, force=True)
        except BaseException:
            with self.manager.changed:
                e.spec = old_spec
            raise
