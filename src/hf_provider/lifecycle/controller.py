"""Lifecycle: swap, rollback and canary of a model's revision while it serves, recorded in the version history.

One operation per model at a time (a second gets 409 `version_conflict`). Every step that could fail (resolve,
download, load, warm-up) happens before the switch, so a failure leaves the serving version untouched. Where the
memory budget cannot hold both versions, the swap is sequential: requests wait (as for a load, within their
deadline) while the old version drains and the new one loads; if the new one fails, the old commit is loaded
again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hf_provider.errors import InvalidInput, ModelNotFound, ProviderError, VersionConflict
from hf_provider.hub.resolve import Resolved
from hf_provider.lifecycle import version as V
from hf_provider.lifecycle.canary import Canary, Tally
from hf_provider.lifecycle.history import ACTOR, HistoryStore
from hf_provider.lifecycle.switch import exclusive, install
from hf_provider.memory.eviction import plan_eviction
from hf_provider.runtime.admission import admission_estimate
from hf_provider.runtime.device import pick_device, pick_dtype
from hf_provider.runtime.manager import Entry, ModelManager
from hf_provider.settings import VersioningSettings
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        manager: ModelManager,
        history: HistoryStore | None = None,
        settings: VersioningSettings | None = None,
        *,
        faults: Any = None,
    ) -> None:
        self.manager = manager
        self.history = history or HistoryStore(None)
        self.settings = settings or VersioningSettings()
        self.faults = faults
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._parked: dict[str, V.Version] = {}  # model -> its warm previous version
        # the revision each model was configured with: a --locked server keeps it in its lock entry
        self._configured = {n: manager.entry(n).spec.revision for n in manager.names()}
        manager.on_load = self._on_load
        manager.reclaim = self.reclaim
        self._stop = threading.Event()
        manager.supervisor.spawn("lifecycle", self._expire_once, name="hfp-lifecycle")

    # operations -------------------------------------------------------------------------------------------------
    def swap(self, name: str, revision: str, *, actor: str | None = None) -> dict[str, Any]:
        """Serve `revision` of `name` instead of what it serves now, without refusing a request."""
        if not isinstance(revision, str) or not revision.strip():
            raise InvalidInput(
                "revision must be a branch, tag or commit of the model's repo", param="revision"
            )
        with self._operation(name) as e:
            self._no_canary(e)
            return self._swap(e, revision.strip(), "swap", actor)

    def rollback(self, name: str, *, actor: str | None = None) -> dict[str, Any]:
        """Back to the revision served before the current one (the history's previous serving event)."""
        with self._operation(name) as e:
            self._no_canary(e)
            current = e.model.commit if e.model is not None else None
            prev = self.history.previous(name, current)
            if prev is None:
                raise VersionConflict(
                    f"model {name!r} has no previous revision in its history to roll back to", model=name
                )
            parked = self._parked.get(name)
            if parked is not None and parked.commit == prev["commit"] and e.state == "ready":
                return self._restore(e, parked, prev["revision"], actor)
            return self._swap(e, prev["commit"], "rollback", actor, asked=prev["revision"])

    def start_canary(
        self, name: str, revision: str, percent: float, *, actor: str | None = None
    ) -> dict[str, Any]:
        """Load `revision` beside the serving version and send it `percent` of the model's requests."""
        if not isinstance(revision, str) or not revision.strip():
            raise InvalidInput(
                "revision must be a branch, tag or commit of the model's repo", param="revision"
            )
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent < 100:
            raise InvalidInput(
                f"percent must be a number between 0 and 100, got {percent!r}", param="percent"
            )
        with self._operation(name) as e:
            self._no_canary(e)
            self.manager.get(name)  # a canary splits a serving model: load it first
            spec, resolved = self._resolve(e, revision.strip())
            try:
                with self.manager.acquire(name):
                    v = self._beside(e, spec, resolved, required=True)
                    try:
                        self._install_canary(e, v, float(percent))
                    except BaseException:
                        V.drop(self.manager, v, "the canary did not start")
                        raise
            except ProviderError as exc:
                self._record(name, "canary", spec.revision, resolved.commit, actor, exc)
                raise
            self._record(name, "canary", spec.revision, v.commit, actor, None, f"{percent}% of requests")
            return self.status(name)

    def _install_canary(self, e: Entry, v: V.Version, percent: float) -> Canary:
        name = e.spec.name
        assert e.model is not None and v.entry.scheduler is not None
        canary = Canary(
            v,
            e.model.commit,
            percent,
            margin=self.settings.canary_abort_margin,
            min_requests=self.settings.canary_min_requests,
            on_abort=lambda why: self._auto_abort(name, why),
        )
        with exclusive(self.manager, e, held=1):
            primary = e.scheduler
            assert primary is not None
            primary.observer = Tally(primary.observer, canary.primary, canary.judge)
            cand = v.entry.scheduler
            cand.observer = Tally(cand.observer, canary.cand, canary.judge)
            e.canary = canary
        return canary

    def promote(self, name: str, *, actor: str | None = None) -> dict[str, Any]:
        """The canary's candidate serves every request; the primary becomes the warm previous version."""
        with self._operation(name) as e:
            canary = self._canary(e)
            v = canary.candidate
            with exclusive(self.manager, e):
                e.canary = None
                old = install(self.manager, e, v, self._outgoing_key(e), self._spec_revision(e, v.revision))
            _untally(e.scheduler)
            _untally(old.entry.scheduler)
            self._retire(e, old)
            self._record(name, "promote", v.revision, v.commit, actor, None)
            self._relock(e, v.revision)
            return self.status(name)

    def abort(self, name: str, *, actor: str | None = None, reason: str = "aborted by an operator") -> dict:
        """Drop the canary's candidate: every request goes to the primary again."""
        with self._operation(name) as e:
            canary = self._canary(e)
            with exclusive(self.manager, e):
                e.canary = None
            _untally(e.scheduler)
            V.drain(canary.candidate, self.settings.drain_timeout_s)
            V.drop(self.manager, canary.candidate, "canary aborted")
            v = canary.candidate
            self._record(name, "abort", v.revision, v.commit, actor, None, reason)
            return self.status(name)

    # views ------------------------------------------------------------------------------------------------------
    def status(self, name: str) -> dict[str, Any]:
        e = self.manager.entry(name)
        parked = self._parked.get(name)
        canary = e.canary
        return {
            "name": name,
            "state": e.state,
            "revision": e.spec.revision,
            "commit": e.model.commit if e.model is not None else None,
            "previous": None
            if parked is None
            else {
                **parked.describe(),
                "warm_for_s": round(max(0.0, parked.parked_until - self.manager.clock()), 1),
            },
            "canary": None if canary is None else canary.describe(),
        }

    def events(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        self.manager.entry(name)  # 404 for an unknown name
        return self.history.events(name, limit=limit)

    # memory -----------------------------------------------------------------------------------------------------
    def reclaim(self, pool: str, need: int) -> bool:
        """Drop warm previous versions in `pool`, oldest first, until `need` bytes are freed. True if any was."""
        freed = 0
        for v in V.oldest_first(v for v in list(self._parked.values()) if v.entry.pool == pool):
            if freed >= need:
                break
            with self._lock:
                if self._parked.get(v.entry.spec.name) is not v:
                    continue
                del self._parked[v.entry.spec.name]
            freed += v.entry.accounted_bytes
            V.drop(self.manager, v, "memory for a load")
        return freed > 0

    def expire(self, now: float | None = None) -> list[str]:
        """Drop warm previous versions whose time is up; returns their models' names."""
        now = self.manager.clock() if now is None else now
        with self._lock:
            due = [(n, v) for n, v in self._parked.items() if v.parked_until <= now]
            for n, _ in due:
                del self._parked[n]
        for _, v in due:
            V.drop(self.manager, v, "warm_previous expired")
        return [n for n, _ in due]

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            parked, self._parked = list(self._parked.values()), {}
        for v in parked:
            V.drop(self.manager, v, "shutdown")
        for name in self.manager.names():
            canary = self.manager.entry(name).canary
            if canary is not None:
                V.drop(self.manager, canary.candidate, "shutdown")

    def _expire_once(self) -> bool:
        if self._stop.wait(1.0):
            return False
        self.expire()
        return True

    # steps ------------------------------------------------------------------------------------------------------
    @contextmanager
    def _operation(self, name: str) -> Iterator[Entry]:
        e = self.manager.entry(name)
        if e.adhoc:
            raise InvalidInput(
                f"{name!r} is not a configured model; versions are managed for configured models"
            )
        with self._lock:
            if name in self._busy:
                raise VersionConflict(
                    f"another swap, rollback or canary step of {name!r} is running", model=name
                )
            self._busy.add(name)
        try:
            yield e
        finally:
            with self._lock:
                self._busy.discard(name)

    def _no_canary(self, e: Entry) -> None:
        if e.canary is not None:
            raise VersionConflict(
                f"model {e.spec.name!r} has a canary running; promote or abort it first", model=e.spec.name
            )

    def _canary(self, e: Entry) -> Canary:
        if e.canary is None:
            raise VersionConflict(f"model {e.spec.name!r} has no canary running", model=e.spec.name)
        return e.canary

    def _resolve(self, e: Entry, revision: str, asked: str | None = None) -> tuple[ModelSpec, Resolved]:
        """The candidate's spec (the revision as asked) and its snapshot; an unknown revision is a 400."""
        spec = e.spec.model_copy(update={"revision": asked or revision})
        fetcher = getattr(self.manager, "fetcher", None)
        try:
            if fetcher is not None:
                resolved = fetcher.fetch(spec, revision=revision)
            else:
                from hf_provider.hub.resolve import resolve

                resolved = resolve(spec.source, revision)
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

    def _swap(
        self, e: Entry, revision: str, action: str, actor: str | None, asked: str | None = None
    ) -> dict[str, Any]:
        name = e.spec.name
        try:
            spec, resolved = self._resolve(e, revision, asked)
        except ProviderError as exc:  # an unknown revision, or its files cannot be had: recorded too
            self._record(name, action, asked or revision, None, actor, exc)
            raise
        try:
            if e.state != "ready":
                try:  # load what it serves first, so the swap below is the one path for every case
                    self.manager.get(name, force=True)
                except ProviderError:  # the current revision does not load: the new one may fix it
                    self._load_unloaded(e, spec)
                    return self._swapped(e, spec, resolved, action, actor)
            if self._fits_beside(e, spec, resolved):
                with self.manager.acquire(name):
                    v = self._beside(e, spec, resolved)
                    try:
                        with exclusive(self.manager, e, held=1):
                            old = install(
                                self.manager,
                                e,
                                v,
                                self._outgoing_key(e),
                                self._spec_revision(e, spec.revision),
                            )
                    except BaseException:
                        V.drop(self.manager, v, "the switch did not happen")
                        raise
                self._retire(e, old)
            else:
                self._sequential(e, spec, resolved)
        except BaseException as exc:
            self._record(name, action, spec.revision, resolved.commit, actor, exc)
            raise
        return self._swapped(e, spec, resolved, action, actor)

    def _swapped(
        self, e: Entry, spec: ModelSpec, resolved: Resolved, action: str, actor: str | None
    ) -> dict[str, Any]:
        self._record(e.spec.name, action, spec.revision, resolved.commit, actor, None)
        self._relock(e, spec.revision)
        return self.status(e.spec.name)

    def _beside(self, e: Entry, spec: ModelSpec, resolved: Resolved, *, required: bool = False) -> V.Version:
        """Load and warm up the candidate beside the serving version. The caller holds a lease on the serving
        one meanwhile, so the candidate's admission never evicts it."""
        name = e.spec.name
        if required and not self._fits_beside(e, spec, resolved):
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
        try:
            self.manager._load(
                v.entry, time.monotonic() + self.manager.memory.load_wait_s, key=key, resolved=resolved,
                faults=faults,
            )  # fmt: skip
            V.warm_up(v)
        except BaseException:
            if v.entry.scheduler is not None:
                V.drop(self.manager, v, "failed to load or warm up")
            self.manager.accountant.release(key)
            raise
        return v

    def _fits_beside(self, e: Entry, spec: ModelSpec, resolved: Resolved) -> bool:
        """Whether the candidate fits next to the serving version, counting what eviction of other idle models
        and dropping warm previous versions would free."""
        m = self.manager
        dtype = pick_dtype(spec.dtype, pick_device(spec.device))
        need = admission_estimate(spec, resolved.path, dtype).total_bytes
        pool = e.pool or "host"
        free = m.accountant.free(pool)
        if free is None:
            return True
        free += sum(v.entry.accounted_bytes for v in self._parked.values() if v.entry.pool == pool)
        with m._lock:
            others = [r for r in m._residents() if r.name != e.spec.name]
        return plan_eviction(others, pool, need, free, m.clock(), m.memory.min_residency_s) is not None

    def _sequential(self, e: Entry, spec: ModelSpec, resolved: Resolved) -> None:
        """No room for two versions: requests wait while the old drains, is unloaded and the new one loads."""
        m, name = self.manager, e.spec.name
        old_spec = e.spec
        old_commit = e.model.commit if e.model is not None else None
        self._drop_parked(name)
        with exclusive(m, e):
            sched = e.scheduler
            if sched is not None:
                sched.close(timeout=self.settings.drain_timeout_s)  # finishes what is queued: drained
            with m._lock:
                e.model = e.scheduler = None
                e.accounted_bytes = 0
                m.accountant.release(name)
            del sched
            deadline = time.monotonic() + m.memory.load_wait_s
            try:
                e.spec = spec.model_copy(update={"revision": self._spec_revision(e, spec.revision)})
                m._load(e, deadline, resolved=resolved)
            except BaseException:
                m.accountant.release(name)
                e.spec = old_spec
                if old_commit is not None:
                    log.warning("swap of %s failed; loading its previous commit %s again", name, old_commit)
                    try:
                        m._load(e, deadline, resolved=self._resolve(e, old_commit, old_spec.revision)[1])
                    except BaseException as again:
                        m.accountant.release(name)
                        e.error = f"the swap failed and the previous commit did not load again: {again}"
                raise

    def _load_unloaded(self, e: Entry, spec: ModelSpec) -> None:
        old_spec = e.spec
        with self.manager._lock:
            e.spec = spec.model_copy(update={"revision": self._spec_revision(e, spec.revision)})
        try:
            self.manager.get(e.spec.name, force=True)
        except BaseException:
            with self.manager._lock:
                e.spec = old_spec
            raise

    def _restore(self, e: Entry, v: V.Version, revision: str | None, actor: str | None) -> dict[str, Any]:
        """Rollback to the warm previous version: no load, only a move back to its device and the switch."""
        name = e.spec.name
        with self._lock:
            self._parked.pop(name, None)
        try:
            with self.manager.acquire(name):
                V.unpark(self.manager, v)
                V.warm_up(v)
                v.entry.spec = v.entry.spec.model_copy(update={"revision": revision})
                with exclusive(self.manager, e, held=1):
                    old = install(self.manager, e, v, self._outgoing_key(e), self._spec_revision(e, revision))
        except BaseException as exc:
            V.drop(self.manager, v, "rollback failed")
            self._record(name, "rollback", revision, v.commit, actor, exc)
            raise
        self._retire(e, old)
        self._record(name, "rollback", revision, v.commit, actor, None, "warm previous version")
        self._relock(e, revision)
        return self.status(name)

    def _retire(self, e: Entry, old: V.Version) -> None:
        """The outgoing version finishes its in-flight requests, then stays warm or is dropped."""
        name = e.spec.name
        drained = V.drain(old, self.settings.drain_timeout_s)
        keep = self.settings.warm_previous
        if drained and keep > 0 and old.commit is not None:
            self._drop_parked(name)
            if V.park(self.manager, old, self.manager.clock() + keep):
                with self._lock:
                    self._parked[name] = old
                return
        V.drop(self.manager, old, "swapped out")

    def _drop_parked(self, name: str) -> None:
        with self._lock:
            v = self._parked.pop(name, None)
        if v is not None:
            V.drop(self.manager, v, "replaced")

    def _outgoing_key(self, e: Entry) -> str:
        commit = e.model.commit if e.model is not None else None
        return V.version_key(e.spec.name, commit, e.spec.revision) + "~out"

    def _locked(self) -> tuple[bool, Path | None]:
        policy = getattr(getattr(self.manager, "fetcher", None), "policy", None)
        return bool(getattr(policy, "locked", False)), getattr(policy, "lock_file", None)

    def _spec_revision(self, e: Entry, asked: str | None) -> str | None:
        """The revision the entry keeps: as asked, except on a --locked server, where the configured one stays
        and the lock entry (rewritten after the switch) decides the commit of any later reload."""
        locked, _ = self._locked()
        return self._configured.get(e.spec.name, e.spec.revision) if locked else asked

    def _relock(self, e: Entry, asked: str | None) -> None:
        locked, path = self._locked()
        if not locked or path is None or e.model is None or e.model.commit is None:
            return
        from hf_provider.hub.lockfile import entry_from_snapshot, update_entry

        revision = self._configured.get(e.spec.name) or "main"
        update_entry(
            path,
            entry_from_snapshot(e.spec.name, e.spec.source, revision, e.model.commit, e.model.path),
        )
        log.info("lock entry of %s now pins %s (swapped to %s)", e.spec.name, e.model.commit, asked)

    def _auto_abort(self, name: str, why: str) -> None:
        self.manager.supervisor.call("canary-abort", self._abort_quietly, name, why)

    def _abort_quietly(self, name: str, why: str) -> None:
        try:
            self.abort(name, actor="auto", reason=why)
            log.warning("canary of %s aborted: %s", name, why)
        except VersionConflict:
            pass  # promoted or aborted meanwhile

    # history ----------------------------------------------------------------------------------------------------
    def _on_load(self, e: Entry, error: BaseException | None) -> None:
        commit = e.model.commit if e.model is not None and error is None else None
        self._record(e.spec.name, "load", e.spec.revision, commit, None, error)

    def _record(
        self,
        name: str,
        action: str,
        revision: str | None,
        commit: str | None,
        actor: str | None,
        error: BaseException | None,
        detail: str | None = None,
    ) -> None:
        self.history.record(
            name,
            action,
            revision=revision,
            commit=commit,
            actor=actor or _default_actor(action),
            outcome="ok" if error is None else "failed",
            detail=detail if error is None else f"{type(error).__name__}: {error}",
        )


def _default_actor(action: str) -> str:
    """Who did it when the caller did not say: a load's context (on demand, at start, an operator's), or for a
    version operation called from Python, "python"."""
    actor = ACTOR.get()
    return "python" if actor == "request" and action != "load" else actor


def _untally(sched: Any) -> None:
    if sched is not None and isinstance(sched.observer, Tally):
        sched.observer = sched.observer.inner
