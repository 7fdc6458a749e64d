"""ModelManager: which models are loaded, their memory, loading on demand and unloading by policy.

Memory is managed by bytes: a load is admitted against the budget with an estimate read from safetensors headers
(memory.estimate), accounted with the actual bytes once loaded (memory.budget.Accountant), and when it does not fit
the pure policy (memory.eviction) names the models to unload. Models with `keep_alive` are unloaded after idling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hf_provider.cache import pins
from hf_provider.errors import (
    LoadBackoff,
    MemoryBudgetExceeded,
    ModelLoadError,
    ModelNotFound,
    ProviderError,
    Unavailable,
)
from hf_provider.hub.fetch import Fetcher
from hf_provider.hub.resolve import HubRetry, Resolved
from hf_provider.isolation.runners import ThreadRunner, start_isolated
from hf_provider.memory import heap
from hf_provider.memory.budget import Accountant, MemoryBudget, pool_for_device
from hf_provider.memory.eviction import expired
from hf_provider.memory.release import release_memory
from hf_provider.models import serving, views
from hf_provider.models.admission import MemoryAdmission, admission_estimate, cpu_fallback
from hf_provider.models.entry import Entry, looks_like_repo_id
from hf_provider.optimize.apply import apply_optimize
from hf_provider.reporting.reports import tag
from hf_provider.resilience.faults import FaultInjector
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime import continuous
from hf_provider.runtime.device import pick_device, pick_dtype
from hf_provider.runtime.foreground import yield_point
from hf_provider.runtime.loader import load_model
from hf_provider.runtime.quantization import apply_quantization
from hf_provider.runtime.tasks import supported_tasks
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.observer import NullObserver
from hf_provider.scheduling.worker import StageRunner
from hf_provider.settings import MediaSettings, MemorySettings
from hf_provider.spec import ModelSpec
from hf_provider.types import TaskHandler

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(
        self,
        specs: list[ModelSpec],
        *,
        memory: MemorySettings | None = None,
        observer: Any = None,
        allow_adhoc: bool = True,
        clock: Callable[[], float] = time.monotonic,
        supervisor: Supervisor | None = None,
        outcomes: Any = None,
        faults: Any = None,
        fetcher: Fetcher | None = None,
        media: MediaSettings | None = None,
    ) -> None:
        self.memory = memory or MemorySettings()
        self.media = media or MediaSettings()  # the limits every loaded model checks image inputs against
        self.freeze_heap = self.memory.freeze_heap is True  # None: on in the server only (server/app.py)
        # Hub files: the lock, integrity checks and repair, the disk budget (hub/fetch.py)
        self.fetcher = fetcher or Fetcher()
        pins.register_holder(self.loaded_revisions)  # the disk budget never removes what is loaded here
        self.outcomes = outcomes  # the Provider's recorder: each scheduler passes its outcomes on to it
        self.faults = faults  # TESTING ONLY resilience.faults.FaultInjector
        self.supervisor = supervisor or Supervisor()
        self.observer = observer or NullObserver()
        self.allow_adhoc = allow_adhoc
        self.clock = clock
        self.accountant = Accountant(
            MemoryBudget.from_settings(self.memory.host_budget, self.memory.gpu_budget)
        )
        self.fault = (
            FaultInjector.parse(self.memory.fault_inject_oom) if self.memory.fault_inject_oom else None
        )
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._entries: dict[str, Entry] = {}
        for spec in specs:
            if spec.name in self._entries:
                raise ValueError(f"model name {spec.name!r} is configured twice; names must be unique")
            self._entries[spec.name] = Entry(spec)
        # lifecycle/ (versions) hooks: on_load(entry, error) after every load; reclaim(pool, bytes) frees warm
        # previous versions before a load evicts a serving model
        self.on_load: Callable[[Entry, BaseException | None], None] | None = None
        self.reclaim: Callable[[str, int], bool] | None = None
        self.admission = MemoryAdmission(
            self.accountant,
            self.memory,
            self._entries,
            unload=self.unload,
            changed=self._changed,
            reclaim=lambda pool, need: self.reclaim is not None and self.reclaim(pool, need),
            clock=lambda: self.clock(),  # tests set the manager's clock after construction
        )
        self._stop = threading.Event()
        self._reaper = self.supervisor.spawn("keepalive", self._reap_once, name="hfp-keepalive")

    @property
    def changed(self) -> threading.Condition:
        """The lock of the entries as a condition, notified when one changes: lifecycle/ changes an entry's
        state and fields under it (a swap, a version's load) and waits on it for leases to end."""
        return self._changed

    def snapshot(self) -> views.Snapshot:
        """Every entry as plain frozen values, taken under the lock; models/views.py renders it."""
        with self._lock:
            return views.take(self._entries.items(), self.accountant, self.clock)

    # lookup -----------------------------------------------------------------------------------------------------
    def loaded_revisions(self) -> list[tuple[str, str]]:
        """(repo id, commit) of every Hub model loaded or loading (its files fetched, its weights not yet in):
        cache/pins.py asks before pruning."""
        out = []
        with self._lock:
            for e in self._entries.values():
                if e.model is not None and e.model.commit:
                    out.append((e.spec.source, e.model.commit))
                elif e.state == "loading" and (fetched := self.fetcher.fetched.get(e.spec.name)):
                    out.append(fetched)
        return out

    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def entry(self, name: str) -> Entry:
        with self._lock:
            e = self._entries.get(name)
            if e is not None:
                return e
            if not self.allow_adhoc:
                raise ModelNotFound(name, self._entries)
            # An unconfigured name is a local folder or a Hub id: register it with default settings.
            if not (Path(name).is_dir() or looks_like_repo_id(name)):
                raise ModelNotFound(
                    name, self._entries, "It is neither a configured name, a folder nor a Hub id."
                )
            e = self._entries[name] = Entry(ModelSpec(name=name, source=name), adhoc=True)
            return e

    def add(self, spec: ModelSpec) -> None:
        with self._lock:
            if spec.name in self._entries:
                raise ValueError(f"model {spec.name!r} is already configured")
            self._entries[spec.name] = Entry(spec)

    # loading ----------------------------------------------------------------------------------------------------
    def get(self, name: str, *, wait_s: float | None = None, force: bool = False) -> Entry:
        """The ready entry for `name`, loading it if needed; waits at most `wait_s` for another thread's load.
        `force` (an operator's load) ignores the pause after a failed load."""
        e = self.entry(name)
        if e.state == "ready":
            e.last_used = self.clock()
            return e
        self._ensure_loaded(e, self.memory.load_wait_s if wait_s is None else wait_s, force=force)
        e.last_used = self.clock()
        return e

    @contextmanager
    def acquire(self, name: str, *, wait_s: float | None = None) -> Iterator[Entry]:
        """The ready entry for `name` (loading it if needed), kept from eviction and keep-alive unloading
        until the block ends: submit the request inside it; its own in-flight count takes over from there.

        Without the lease, another thread's load could evict the model between `get` and the submit, and the
        request would fail although memory management is working as intended.
        """
        e = self.entry(name)
        wait = self.memory.load_wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if e.state == "ready":
                    e.leases += 1
                    e.last_used = self.clock()
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"model {name!r} was unloaded again while the request waited; retry shortly",
                    model=name,
                    retry_after=2.0,
                )
            self._ensure_loaded(e, remaining)
        try:
            yield e
        finally:
            with self._lock:
                e.leases -= 1
                self._changed.notify_all()

    def is_ready(self, name: str) -> bool:
        """True when `name` is configured and loaded (never loads nor registers anything)."""
        with self._lock:
            e = self._entries.get(name)
            return e is not None and e.state == "ready"

    def touch(self, name: str) -> None:
        """Mark the model used now (a request finished): keep-alive idles from here."""
        with self._lock:
            e = self._entries.get(name)
            if e is not None and e.state == "ready":
                e.last_used = self.clock()

    def _ensure_loaded(self, e: Entry, wait_s: float, *, force: bool = False) -> None:
        """Load `e` on this thread, or wait (at most wait_s) for the load or unload another thread is doing.
        Waiters on a load that fails get its error instead of starting the same failing load again, and so do
        callers until the backoff after the failure ends (unless `force`)."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            attempt = e.attempts
            while e.state in ("loading", "evicting", "switching"):  # switching: lifecycle/switch.py
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable(
                        f"model {e.spec.name!r} is {e.state}; retry shortly",
                        model=e.spec.name,
                        retry_after=2.0,
                    )
                self._changed.wait(remaining)
            if e.state == "ready":
                return
            if e.attempts != attempt and e.error is not None:  # the load we waited for failed
                raise ModelLoadError(f"loading model {e.spec.name!r} failed: {e.error}", model=e.spec.name)
            pause = e.retry_at - self.clock()
            if e.error is not None and pause > 0 and not force:
                raise LoadBackoff(
                    f"loading model {e.spec.name!r} failed {e.failures} time(s) in a row (last: {e.error}); "
                    f"the next attempt starts in {pause:.1f}s",
                    model=e.spec.name,
                    retry_after=pause,
                )
            e.state, e.error = "loading", None
            e.attempts += 1
        try:
            self.load_into(e, deadline)
        except BaseException as exc:
            tag(exc, "load")  # for its error report
            with self._lock:
                # Not fitting the budget now is no broken model: memory frees as others go idle; no backoff.
                if not isinstance(exc, MemoryBudgetExceeded):
                    e.retry_at = self.clock() + e.load_backoff.failed()
                e.state, e.error = "unloaded", str(exc)
                self.accountant.release(e.spec.name)
                if e.adhoc and isinstance(exc, ModelNotFound):
                    self._entries.pop(e.spec.name, None)  # an unresolvable ad-hoc name is not remembered
                self._changed.notify_all()
            self._loaded(e, exc)
            raise
        if self.freeze_heap:
            heap.freeze()  # before its first request: one collection now instead of long ones while serving
        with self._lock:
            e.state = "ready"
            e.load_backoff.succeeded()
            self._changed.notify_all()
        self.supervisor.ok(f"model-loading/{e.spec.name}")
        self._loaded(e, None)

    def _loaded(self, e: Entry, error: BaseException | None) -> None:
        pins.publish()  # other processes pruning this cache now see what is loaded here
        if self.on_load is not None:
            self.supervisor.call("lifecycle", self.on_load, e, error)

    def load_into(
        self,
        e: Entry,
        deadline: float,
        *,
        key: str | None = None,
        resolved: Resolved | None = None,
        faults: Any = None,
    ) -> None:
        """Load `e.spec` into `e`. lifecycle/ loads a second version of a model into an Entry of its own (never
        registered), accounted under another `key` in the budget, with the commit it `resolved` and its faults."""
        spec = e.spec
        key = key or spec.name
        faults = faults or self.faults
        t0 = time.perf_counter()
        if faults is not None:
            faults.check(spec.name, "load")
        try:
            # Transient Hub failures are retried while the caller can still wait, within the model's budget.
            retry = HubRetry(deadline=deadline, budget=e.retry_budget)
            resolved = resolved or self.fetcher.fetch(spec, retry=retry)
        except ModelNotFound as exc:
            if e.adhoc:
                raise  # the caller named a folder or Hub id: "unknown model" is the right answer
            # A configured model whose files cannot be had is the server's problem, named by its configured name;
            # the detail alone: "unknown model, available: none" would contradict the configuration.
            raise ModelLoadError(
                f"configured model {spec.name!r} cannot be loaded: {exc.detail or exc.message}",
                model=spec.name,
            ) from exc
        device = pick_device(spec.device)
        dtype = pick_dtype(spec.dtype, device)
        try:
            est = admission_estimate(spec, resolved.path, dtype)
        except (OSError, ValueError, KeyError) as exc:  # unreadable config or headers: not a loadable model
            raise ModelLoadError(
                f"cannot load model {spec.name!r} from {spec.source!r}: {exc}", model=spec.name
            ) from exc
        pool = pool_for_device(str(device))
        e.estimated_bytes, e.working_bytes, e.pool = est.total_bytes, est.working_bytes, pool
        self.admission.admit(key, pool, est.total_bytes)
        yield_point()  # a swap's load steps aside for forward passes here, not under self._lock (runtime/foreground.py)
        runner: StageRunner
        gen = None  # continuous batching (runtime/continuous): its KV cache is accounted with the weights
        if spec.isolation == "process":  # the weights live in a child process (isolation/runners.py)
            model, runner, e.quantization_cosine = start_isolated(
                spec, str(resolved.path), resolved.commit, supervisor=self.supervisor, faults=faults
            )
            actual = model.weight_bytes + est.working_bytes
            try:
                self.admission.commit(key, pool, actual)
            except BaseException:
                runner.close()
                raise
        else:
            model = load_model(spec, resolved=resolved)
            try:
                e.quantization_cosine = apply_quantization(model)
                serving.attach_tasks(model, spec.tasks or supported_tasks(model))
                apply_optimize(model)  # spec.optimize: the measured or forced backend, guarded (optimize/)
                actual = model.weight_bytes + est.working_bytes
                gen = continuous.prepare(model, self.accountant.budget.for_pool(pool), actual)
                actual += gen.nbytes if gen is not None else 0
                self.admission.commit(key, pool, actual)
            except BaseException:
                del model
                release_memory(str(device), refreeze=self.freeze_heap)
                raise
            runner = ThreadRunner(
                model,
                supervisor=self.supervisor,
                evict=lambda: self.admission.evict_for_oom(spec.name),
                to_cpu=cpu_fallback(e),
                fault=self.fault,
                faults=faults,
            )
        model.media = self.media
        yield_point()
        engine = gen.build() if gen is not None else None
        if gen is not None and engine is None:  # it failed its check: static batching, its bytes given back
            actual -= gen.nbytes
            self.accountant.commit(key, pool, actual)
        self.admission.batch_memory(e, key, pool, runner, resolved.path, dtype, est.working_bytes, actual)
        e.model, e.accounted_bytes = model, actual
        e.scheduler = ModelScheduler(
            model,
            observer=self.observer,
            runner=runner,
            supervisor=self.supervisor,
            on_done=lambda: self.touch(spec.name),  # keep-alive idles from a request's end
            outcomes=self.outcomes,
            breaker=serving.breaker_for(spec, self.observer, self.supervisor, self.clock),
            engine=engine,
        )
        if e.token_cap is not None:
            e.scheduler.cap_batch_tokens(e.token_cap)
        e.loaded_at = e.last_used = self.clock()
        e.loads += 1
        self.observer.model_loaded(spec.name, model.commit, time.perf_counter() - t0, model.weight_bytes)
        log.info(
            "loaded %s (%s, commit %s) on %s as %s: %d weight bytes (estimate %d) in %.2fs",
            spec.name,
            spec.source,
            model.commit,
            device,
            dtype,
            model.weight_bytes,
            est.weight_bytes,
            time.perf_counter() - t0,
        )

    def handler(self, e: Entry, task: str) -> TaskHandler:
        return serving.handler(e, task)

    def unload(self, name: str, reason: str = "manual", *, only_if_idle: bool = False) -> bool:
        """Finish queued work, drop the weights, give the memory back. False if it was not loaded (or, with
        `only_if_idle`, if it is busy or pinned: eviction and keep-alive never take a model from under a
        request)."""
        with self._lock:
            e = self._entries.get(name)
            if e is None:
                raise ModelNotFound(name, self._entries)
            # a canary's primary counts as pinned: see MemoryAdmission.residents
            if e.state != "ready" or (only_if_idle and (e.busy or e.spec.pinned or e.canary is not None)):
                return False
            e.state = "evicting"
            sched, model = e.scheduler, e.model
        device = str(model.device) if model else "cpu"
        if sched is not None:
            sched.close()
        with self._lock:
            e.model = e.scheduler = None
            e.accounted_bytes = 0
            e.state = "unloaded"
            self.accountant.release(name)
            self._changed.notify_all()
        del model, sched
        release_memory(device, refreeze=self.freeze_heap)
        pins.publish()
        self.observer.model_unloaded(name, reason)
        log.info("unloaded %s (%s)", name, reason)
        return True

    def set_pinned(self, name: str, pinned: bool) -> None:
        with self._lock:
            e = self.entry(name)
            e.spec = e.spec.model_copy(update={"pinned": pinned})
            if e.model is not None:
                e.model.spec = e.spec

    # keep-alive -------------------------------------------------------------------------------------------------
    def _reap_once(self) -> bool:
        if self._stop.wait(self.memory.keep_alive_check_s):
            return False
        self.reap()
        return True

    def reap(self) -> list[str]:
        """Unload models idle past their keep_alive. Returns their names."""
        with self._lock:
            names = expired(self.admission.residents(), self.clock())
        for n in names:
            with self.supervisor.guard("keepalive"):
                self.unload(n, reason="idle", only_if_idle=True)
        return names

    def close(self) -> None:
        self._stop.set()
        for name in self.names():
            try:
                self.unload(name, reason="shutdown")
            except ProviderError:
                log.exception("unload of %s at shutdown failed", name)
