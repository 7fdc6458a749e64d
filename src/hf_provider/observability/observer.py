"""The one object the runtime talks to: write-side hooks, read-side summaries, one background thread.

Hooks run on batcher threads and request handlers, so each does O(1) work (cached Prometheus children plus a
`deque.append`) and never raises: a failing hook logs once and the request carries on (rule 9). psutil,
SQLite and percentile arithmetic happen on the background thread or on the admin request that asks for them.

Usage::

    obs = Observer(home=settings.home, model_bytes=manager.model_bytes)
    obs.start()            # one daemon thread: resource sample every sample_interval_s, flush every second,
    ...                    # retention every minute
    obs.close()            # stops the thread, flushes what is buffered, closes the database
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hf_provider.observability.metrics import Metrics
from hf_provider.observability.pipelines import PipelineStats
from hf_provider.observability.profiler import StageProfiler
from hf_provider.observability.resources import ModelBytes, ResourceSampler
from hf_provider.observability.store import RequestHistoryStore, RequestRow, ResourceRow
from hf_provider.resilience.breaker import STATE_VALUE
from hf_provider.resilience.periodic import Periodic

log = logging.getLogger(__name__)

MAX_BUFFERED = 500_000  # samples held for the writer; beyond this the oldest are dropped, not the request
FLUSH_INTERVAL_S = 1.0
MAINTENANCE_INTERVAL_S = 60.0


class Observer:
    def __init__(
        self,
        *,
        home: Path | None,
        metrics_enabled: bool = True,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        raw_retention_s: float = 86400,
        rollup_retention_s: float = 30 * 86400,
        sample_interval_s: float = 5.0,
        model_bytes: ModelBytes | None = None,
    ) -> None:
        if raw_retention_s <= 0 or rollup_retention_s <= 0:
            raise ValueError("raw_retention_s and rollup_retention_s must be positive seconds")
        if rollup_retention_s < raw_retention_s:
            raise ValueError(
                f"rollup_retention_s ({rollup_retention_s}) must be at least raw_retention_s "
                f"({raw_retention_s}): rollups are what remains once raw samples expire"
            )
        if sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        self.enabled = metrics_enabled
        self.raw_retention_s = float(raw_retention_s)
        self.rollup_retention_s = float(rollup_retention_s)
        self.sample_interval_s = float(sample_interval_s)
        self.clock = clock
        self.metrics = Metrics(registry)
        self.profiler = StageProfiler()
        self.pipelines = PipelineStats(
            clock
        )  # per pipeline and step, in memory (GET /v1/admin/stats, hfp top)
        self._requests: deque[RequestRow] = deque(maxlen=MAX_BUFFERED)
        self._resources: deque[ResourceRow] = deque(maxlen=MAX_BUFFERED)
        self._state_lock = threading.Lock()  # guards the small per-model dicts below, held for a dict update
        self._in_flight: dict[
            str, int
        ] = {}  # the last values read from in_flight_source (never counted here)
        self._queue: dict[str, int] = {}
        self._queue_peak: dict[str, int] = {}
        self._peak_bytes: dict[str, int] = {}
        self._failed_hooks: set[str] = set()
        self.closed = False
        self.supervisor: Any = None  # set by the Provider: failures of this loop are reported there too
        self.store = self._open_store(home if metrics_enabled else None)
        # In-flight counts read at scrape and sample time from the scheduler's own counters (assignable after
        # construction): cheaper than two gauge updates on every request.
        self.in_flight_source: Callable[[], dict[str, int]] | None = None
        # Monitoring (set by the server after construction): gauges read at scrape time (observability/scrape.py),
        # model -> p95 SLO target in seconds (hfp_slo_slow_requests_total), the findings monitor (monitor.py).
        self.scrape_hooks: list[Callable[[], None]] = []
        self.slo_p95_s: dict[str, float] = {}
        self.monitor: Any = None
        # The background writer (resilience/periodic.py): resource samples, the history's writes and retention,
        # and findings after a minute of traffic.
        self._writer = Periodic("observer", on_error=self.internal_error)
        self._writer.every(self.sample_interval_s, "resource-sampler", self.sample)
        self._writer.every(FLUSH_INTERVAL_S, "history-writer", self.flush)
        self._writer.every(MAINTENANCE_INTERVAL_S, "history-retention", self.run_maintenance)
        self._writer.every(60.0, "findings", self._evaluate_findings, first_s=60.0)
        self.sampler = (
            ResourceSampler(self.metrics, model_bytes=model_bytes, model_state=self._model_state)
            if metrics_enabled
            else None
        )

    @property
    def model_bytes(self) -> ModelBytes | None:
        """The per-model bytes callback; assignable after construction (the manager is built after us)."""
        return self.sampler.model_bytes if self.sampler is not None else None

    @model_bytes.setter
    def model_bytes(self, fn: ModelBytes | None) -> None:
        if self.sampler is not None:
            self.sampler.model_bytes = fn

    @staticmethod
    def _open_store(home: Path | None) -> RequestHistoryStore:
        if home is None:
            return RequestHistoryStore(None)
        try:
            return RequestHistoryStore(Path(home) / "metrics.db")
        except Exception as exc:
            log.error("cannot open metric history under %s (%s); history kept in memory only", home, exc)
            return RequestHistoryStore(None)

    # -- write side: O(1), never raises --

    def request_done(
        self,
        model: str,
        task: str,
        revision: str | None,
        outcome: str,
        latency_s: float,
        items: int,
        tokens: int,
        error_type: str | None = None,
    ) -> None:
        if not self.enabled:
            return
        try:
            m = self.metrics
            req, lat, items_c, tokens_c = m.request_children(model, task, revision, outcome)
            req.inc()
            if outcome not in ("rejected", "client_error"):  # answered at once: would flatter the quantiles
                lat.observe(latency_s)
                if (target := self.slo_p95_s.get(model)) is not None and latency_s > target:
                    m.child(m.slo_slow_requests, model).inc()
            if items:
                items_c.inc(items)
            if tokens:
                tokens_c.inc(tokens)
            if outcome != "ok":
                m.child(m.errors, model, task, error_type or outcome).inc()
            self._requests.append((self.clock(), model, task, outcome, latency_s * 1000.0, items, tokens))
        except Exception:
            self._hook_failed("request_done")

    def batch_done(
        self,
        model: str,
        task: str,
        size: int,
        tokens: int,
        queue_s: float,
        preprocess_s: float,
        forward_s: float,
        postprocess_s: float,
        peak_bytes: int | None = None,
    ) -> None:
        if not self.enabled:
            return
        try:
            m = self.metrics
            m.child(m.batch_size, model, task).observe(size)
            m.child(m.queue_wait, model).observe(queue_s)
            m.child(m.stage_seconds, model, "queue").observe(queue_s)
            m.child(m.stage_seconds, model, "preprocess").observe(preprocess_s)
            m.child(m.stage_seconds, model, "forward").observe(forward_s)
            m.child(m.stage_seconds, model, "postprocess").observe(postprocess_s)
            self.profiler.record(model, self.clock(), size, queue_s, preprocess_s, forward_s, postprocess_s)
            if peak_bytes is not None and peak_bytes > self._peak_bytes.get(model, -1):
                self._peak_bytes[model] = peak_bytes
                m.child(m.model_peak_working_bytes, model).set(peak_bytes)
        except Exception:
            self._hook_failed("batch_done")

    def tokens_generated(self, model: str, task: str, tokens: int) -> None:
        if not self.enabled:
            return
        try:
            self.metrics.child(self.metrics.tokens_generated, model, task).inc(tokens)
        except Exception:
            self._hook_failed("tokens_generated")

    def internal_error(self, component: str) -> None:
        """Counted for the supervisor (resilience/supervisor.py), which has logged the traceback already."""
        if not self.enabled:
            return
        # The component label is bounded: one per background loop, per configured model for stage threads.
        self.metrics.child(self.metrics.internal_errors, component).inc()

    def error_reported(self, model: str, error_class: str) -> None:
        """Counted for the error reporter (reporting/reporter.py); both labels are bounded sets."""
        if not self.enabled:
            return
        self.metrics.child(self.metrics.error_reports, model, error_class).inc()

    def error_groups_folded(self, error_class: str, n: int) -> None:
        """Reports folded into an overflow group by the error store (reporting/store.py max_groups)."""
        if self.enabled and n:
            self.metrics.child(self.metrics.error_groups_folded, error_class).inc(n)

    def pipeline_done(self, pipeline: str, step: str | None, outcome: str, seconds: float) -> None:
        """A pipeline run (`step` None) or one of its steps ended (pipelines/run.py)."""
        if not self.enabled:
            return
        try:
            m = self.metrics
            label = step or ""
            m.child(m.pipeline_runs, pipeline, label, outcome).inc()
            if outcome != "skipped":
                m.child(m.pipeline_latency, pipeline, label).observe(seconds)
            self.pipelines.add(pipeline, step, outcome, seconds)
        except Exception:
            self._hook_failed("pipeline_done")

    def breaker_changed(self, model: str, old: str | None, new: str) -> None:
        """The model's circuit breaker moved (resilience/breaker.py); `old` None: a fresh one at load."""
        if not self.enabled:
            return
        try:
            self.metrics.child(self.metrics.breaker_state, model).set(STATE_VALUE[new])
            if new == "open":
                self.metrics.child(self.metrics.breaker_openings, model).inc()
        except Exception:
            self._hook_failed("breaker_changed")

    def fallback_used(self, model: str, fallback: str, reason: str) -> None:
        """A fallback served a request `model` refused (resilience/fallback.py). The Provider passes configured
        names and the fixed reasons only, so the labels stay bounded."""
        if not self.enabled:
            return
        try:
            self.metrics.child(self.metrics.fallbacks, model, fallback, reason).inc()
        except Exception:
            self._hook_failed("fallback_used")

    def queue_depth(self, model: str, depth: int) -> None:
        if not self.enabled:
            return
        try:
            self.metrics.child(self.metrics.queue_depth, model).set(depth)
            with self._state_lock:
                self._queue[model] = depth
                if depth > self._queue_peak.get(model, -1):
                    self._queue_peak[model] = depth
        except Exception:
            self._hook_failed("queue_depth")

    def model_loaded(self, model: str, revision: str | None, seconds: float, weight_bytes: int) -> None:
        if not self.enabled:
            return
        try:
            m = self.metrics
            m.child(m.model_load_seconds, model).observe(seconds)
            m.child(m.model_loads, model, revision or "").inc()
            m.child(m.model_info, model, revision or "").set(1)
            m.child(m.model_weight_bytes, model).set(weight_bytes)
            self._resources.append((self.clock(), "weight_bytes", model, float(weight_bytes)))
            with self._state_lock:
                self._queue.setdefault(model, 0)
                self._in_flight.setdefault(model, 0)
        except Exception:
            self._hook_failed("model_loaded")

    def model_unloaded(self, model: str, reason: str) -> None:
        if not self.enabled:
            return
        try:
            self.metrics.child(self.metrics.model_evictions, model, reason).inc()
            self.metrics.forget_model(model)
            with self._state_lock:
                for d in (self._in_flight, self._queue, self._queue_peak, self._peak_bytes):
                    d.pop(model, None)
        except Exception:
            self._hook_failed("model_unloaded")

    def _hook_failed(self, hook: str) -> None:
        if hook in self._failed_hooks:
            log.debug("observability hook %s failed", hook, exc_info=True)
        else:
            self._failed_hooks.add(hook)
            log.warning(
                "observability hook %s failed; the request goes on (further failures at DEBUG)",
                hook,
                exc_info=True,
            )

    def _model_state(self) -> dict[str, dict[str, float]]:
        """Per-model values the sampler records; the queue peak since the last sample, then reset."""
        live = self._refresh_in_flight()
        with self._state_lock:
            self._in_flight.update(live)
            out: dict[str, dict[str, float]] = {}
            for model in set(self._queue) | set(self._in_flight) | set(self._peak_bytes):
                s = out[model] = {
                    "queue_depth": float(max(self._queue_peak.get(model, 0), self._queue.get(model, 0))),
                    "in_flight": float(self._in_flight.get(model, 0)),
                }
                if model in self._peak_bytes:
                    s["peak_working_bytes"] = float(self._peak_bytes[model])
            self._queue_peak.clear()
        return out

    # -- background thread --

    def start(self) -> None:
        if not self.enabled or self._writer.running or self.closed:
            return
        self._writer.start(self.supervisor)

    def _evaluate_findings(self) -> None:
        if self.monitor is not None:
            self.flush()
            self.monitor.evaluate()

    def sample(self, now: float | None = None) -> None:
        """Take one resource sample (the background thread does this every sample_interval_s)."""
        if self.sampler is not None:
            self._resources.extend(self.sampler.sample(self.clock() if now is None else now))

    def flush(self) -> None:
        """Write buffered samples to the history store."""
        reqs = _drain(self._requests)
        res = _drain(self._resources)
        if reqs or res:
            self.store.write(reqs, res)

    def run_maintenance(self, now: float | None = None) -> dict[str, int]:
        """Apply retention: expire raw samples (their minutes stay as rollups) and old rollups."""
        return self.store.run_maintenance(
            self.clock() if now is None else now, self.raw_retention_s, self.rollup_retention_s
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.stop()
        try:
            self.flush()
        except Exception:
            log.exception("final flush of metric history failed")
        self.store.close()
        if self.sampler is not None:
            self.sampler.close()

    # -- read side --

    def render_metrics(self) -> tuple[bytes, str]:
        self._refresh_in_flight()
        for hook in self.scrape_hooks:
            try:
                hook()
            except Exception:
                self._hook_failed("scrape")
        return generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST

    def _refresh_in_flight(self) -> dict[str, int]:
        if self.in_flight_source is None:
            return {}
        try:
            live = self.in_flight_source()
            for model, n in live.items():
                self.metrics.child(self.metrics.in_flight, model).set(n)
            return live
        except Exception:
            self._hook_failed("in_flight_source")
            return {}


def _drain(d: deque[Any]) -> list[Any]:
    out = []
    pop = d.popleft
    for _ in range(len(d)):
        try:
            out.append(pop())
        except IndexError:
            break
    return out
