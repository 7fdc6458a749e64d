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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hf_provider.errors import InvalidInput, ProviderError, VersionConflict
from hf_provider.hub.resolve import Resolved
from hf_provider.lifecycle import version as V
from hf_provider.lifecycle.canary import Canary, Tally
from hf_provider.lifecycle.history import ACTOR, VersionHistory
from hf_provider.lifecycle.loading import VersionLoader
from hf_provider.lifecycle.locking import LockKeeper
from hf_provider.lifecycle.switch import exclusive, install
from hf_provider.lifecycle.warm import WarmVersions
from hf_provider.models.manager import Entry, ModelManager
from hf_provider.settings import VersioningSettings
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        manager: ModelManager,
        history: VersionHistory | None = None,
        settings: VersioningSettings | None = None,
        *,
        faults: Any = None,
    ) -> None:
        self.manager = manager
        self.history = history or VersionHistory(None)
        self.settings = settings or VersioningSettings()
        self.faults = faults
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self.warm = WarmVersions(manager, self.settings.warm_previous)
        self.lock = LockKeeper(manager)
        self.loader = VersionLoader(manager, self.warm, self.lock, self.settings, faults)
        manager.on_load = self._on_load
        manager.reclaim = self.warm.reclaim
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
            parked = self.warm.get(name)
            if parked is not None and parked.commit == prev["commit"] and e.state == "ready":
                return self._restore(e, parked, prev["revision"], "rollback", actor)
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
            spec, resolved = self.loader.resolve(e, revision.strip())
            try:
                with self.manager.acquire(name):
                    v = self.loader.beside(e, spec, resolved, required=True)
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
            cand = v.entry.scheduler
            canary.listening = [
                primary.outcomes.listen("canary", Tally(canary.primary, canary.judge)),
                cand.outcomes.listen("canary", Tally(canary.cand, canary.judge)),
            ]
            e.canary = canary
        return canary

    def promote(self, name: str, *, actor: str | None = None) -> dict[str, Any]:
        """The canary's candidate serves every request; the primary becomes the warm previous version."""
        with self._operation(name) as e:
            canary = self._canary(e)
            v = canary.candidate
            with exclusive(self.manager, e):
                e.canary = None
                old = install(
                    self.manager, e, v, self._outgoing_key(e), self.lock.spec_revision(e, v.revision)
                )
            v.unpin()  # serving: the manager's entry protects its files now
            _untally(canary)
            self._retire(e, old)
            self._record(name, "promote", v.revision, v.commit, actor, None)
            self.lock.rewrite(e, v.revision)
            return self.status(name)

    def abort(self, name: str, *, actor: str | None = None, reason: str = "aborted by an operator") -> dict:
        """Drop the canary's candidate: every request goes to the primary again."""
        with self._operation(name) as e:
            canary = self._canary(e)
            with exclusive(self.manager, e):
                e.canary = None
            _untally(canary)
            V.drain(canary.candidate, self.settings.drain_timeout_s)
            V.drop(self.manager, canary.candidate, "canary aborted")
            v = canary.candidate
            self._record(name, "abort", v.revision, v.commit, actor, None, reason)
            return self.status(name)

    # views ------------------------------------------------------------------------------------------------------
    def status(self, name: str) -> dict[str, Any]:
        e = self.manager.entry(name)
        parked = self.warm.get(name)
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

    def expire(self, now: float | None = None) -> list[str]:
        """Drop warm previous versions whose time is up (`now` on the manager's clock); returns their models."""
        return self.warm.expire(self.manager.clock() if now is None else now)

    def close(self) -> None:
        self._stop.set()
        self.warm.close()
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

    def _swap(
        self, e: Entry, revision: str, action: str, actor: str | None, asked: str | None = None
    ) -> dict[str, Any]:
        name = e.spec.name
        try:
            spec, resolved = self.loader.resolve(e, revision, asked)
        except ProviderError as exc:  # an unknown revision, or its files cannot be had: recorded too
            self._record(name, action, asked or revision, None, actor, exc)
            raise
        parked = self.warm.get(name)
        if parked is not None and parked.commit == resolved.commit and e.state == "ready":
            return self._restore(
                e, parked, spec.revision, action, actor
            )  # back to the warm version: a switch
        try:
            if e.state != "ready":
                try:  # load what it serves first, so the swap below is the one path for every case
                    self.manager.get(name, force=True)
                except ProviderError:  # the current revision does not load: the new one may fix it
                    self.loader.load_unloaded(e, spec)
                    return self._swapped(e, spec, resolved, action, actor)
            if self.loader.fits_beside(e, spec, resolved):
                with self.manager.acquire(name):
                    v = self.loader.beside(e, spec, resolved)
                    try:
                        with exclusive(self.manager, e, held=1):
                            old = install(
                                self.manager,
                                e,
                                v,
                                self._outgoing_key(e),
                                self.lock.spec_revision(e, spec.revision),
                            )
                    except BaseException:
                        V.drop(self.manager, v, "the switch did not happen")
                        raise
                v.unpin()
                self._retire(e, old)
            else:
                self.loader.sequential(e, spec, resolved)
        except BaseException as exc:
            self._record(name, action, spec.revision, resolved.commit, actor, exc)
            raise
        return self._swapped(e, spec, resolved, action, actor)

    def _swapped(
        self, e: Entry, spec: ModelSpec, resolved: Resolved, action: str, actor: str | None
    ) -> dict[str, Any]:
        self._record(e.spec.name, action, spec.revision, resolved.commit, actor, None)
        self.lock.rewrite(e, spec.revision)
        return self.status(e.spec.name)

    def _restore(
        self, e: Entry, v: V.Version, revision: str | None, action: str, actor: str | None
    ) -> dict[str, Any]:
        """Back to the warm previous version: no load, only a move back to its device and the switch."""
        name = e.spec.name
        self.warm.take(name)
        try:
            with self.manager.acquire(name):
                V.unpark(self.manager, v)
                V.warm_up(v)
                v.entry.spec = v.entry.spec.model_copy(update={"revision": revision})
                with exclusive(self.manager, e, held=1):
                    old = install(
                        self.manager, e, v, self._outgoing_key(e), self.lock.spec_revision(e, revision)
                    )
        except BaseException as exc:
            V.drop(self.manager, v, f"{action} failed")
            self._record(name, action, revision, v.commit, actor, exc)
            raise
        self._retire(e, old)
        v.unpin()
        self._record(name, action, revision, v.commit, actor, None, "warm previous version")
        self.lock.rewrite(e, revision)
        return self.status(name)

    def _retire(self, e: Entry, old: V.Version) -> None:
        """The outgoing version finishes its in-flight requests, then stays warm or is dropped."""
        if V.drain(old, self.settings.drain_timeout_s):
            self.warm.keep(e.spec.name, old)
        else:
            V.drop(self.manager, old, "swapped out (drain timed out)")

    def _outgoing_key(self, e: Entry) -> str:
        commit = e.model.commit if e.model is not None else None
        return V.version_key(e.spec.name, commit, e.spec.revision) + "~out"

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


def _untally(canary: Canary) -> None:
    """The versions' schedulers stop counting for the canary."""
    for stop in canary.listening:
        stop()
    canary.listening = []
