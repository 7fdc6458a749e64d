"""Every Prometheus metric hf-provider exports is defined here, and only here.

Each `Metrics` instance owns its own `CollectorRegistry` (or one passed in), so tests and several providers
in one process never collide on the global registry. Label children are cached in plain dicts: `labels()`
parses and validates its arguments on every call, a dict hit does not, and the hooks run once per request.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "hfp"

# Millisecond-scale inference: 0.5 ms up to 10 s, roughly 1-2.5-5 per decade.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
STAGE_BUCKETS = LATENCY_BUCKETS
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

STAGES = ("queue", "preprocess", "forward", "postprocess")


class Metrics:
    """The metric objects plus cached label children for the hot paths."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        p = PREFIX
        # Requests
        self.requests = Counter(
            f"{p}_requests",
            "Requests ended, by outcome: ok, client_error (4xx), error, rejected (overload, shutdown), cancelled "
            "(the caller went away), timed_out (past its deadline).",
            ["model", "task", "revision", "outcome"],
            registry=r,
        )
        self.request_latency = Histogram(
            f"{p}_request_latency_seconds",
            "End-to-end request latency inside the provider.",
            ["model", "task"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.items = Counter(
            f"{p}_items", "Input items processed (texts, images, ...).", ["model", "task"], registry=r
        )
        self.tokens = Counter(
            f"{p}_tokens",
            "Tokens processed: each request's input tokens plus the tokens generated for it before it ended "
            "(a cancelled or timed-out generation counts what it produced, not its max_new_tokens).",
            ["model", "task"],
            registry=r,
        )
        self.errors = Counter(
            f"{p}_errors",
            "Failed or rejected requests, by error type.",
            ["model", "task", "type"],
            registry=r,
        )
        # hfp_errors_total above already counts failed requests by exception type (with a task label), so a
        # family of that name cannot carry these labels too: reports are counted under their own name.
        self.error_reports = Counter(
            f"{p}_error_reports",
            "Error reports (GET /v1/admin/errors), by model (a configured name, or -) and error class: every "
            "failed request (4xx and 5xx, cancellations excepted) and every internal failure.",
            ["model", "error_class"],
            registry=r,
        )
        self.error_groups_folded = Counter(
            f"{p}_error_groups_folded",
            "Error reports folded into their class's overflow group because errors.db already holds "
            "[reporting] max_groups groups: new root causes are arriving faster than retention drops old ones.",
            ["error_class"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{p}_in_flight_requests",
            "Requests accepted and not yet settled (read from the scheduler at scrape time).",
            ["model"],
            registry=r,
        )
        self.tokens_generated = Counter(
            f"{p}_tokens_generated",
            "Tokens generated, counted at every decoding step (stops growing when a generation is cancelled).",
            ["model", "task"],
            registry=r,
        )
        self.internal_errors = Counter(
            f"{p}_internal_errors",
            "Unexpected exceptions in background work and callbacks, by component; the work went on.",
            ["component"],
            registry=r,
        )
        # Batching and stages
        self.queue_wait = Histogram(
            f"{p}_queue_wait_seconds",
            "Time a batch's requests waited in the queue.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size",
            "Items per executed batch.",
            ["model", "task"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            f"{p}_stage_seconds",
            "Time per batch in each stage.",
            ["model", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{p}_queue_depth", "Requests waiting in the model's batch queue.", ["model"], registry=r
        )
        # Tasks sharing one model's weights (scheduling/share.py): read at scrape time (observability/scrape.py)
        self.task_queued = Gauge(
            f"{p}_task_queued_items", "Items waiting per task of a model.", ["model", "task"], registry=r
        )
        self.task_in_flight = Gauge(
            f"{p}_task_in_flight_requests",
            "Requests in flight per task of a model.",
            ["model", "task"],
            registry=r,
        )
        self.task_share = Gauge(
            f"{p}_task_share",
            "A task's weight in its model's fair share (task_share).",
            ["model", "task"],
            registry=r,
        )
        # Model lifecycle and memory
        self.model_load_seconds = Histogram(
            f"{p}_model_load_seconds",
            "Time to load a model's weights.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.model_loads = Counter(f"{p}_model_loads", "Model loads.", ["model", "revision"], registry=r)
        self.model_evictions = Counter(
            f"{p}_model_evictions", "Model unloads, by reason.", ["model", "reason"], registry=r
        )
        self.model_info = Gauge(
            f"{p}_model_info",
            "1 for each loaded model, labelled with its revision.",
            ["model", "revision"],
            registry=r,
        )
        self.model_weight_bytes = Gauge(
            f"{p}_model_weight_bytes",
            "Bytes of the model's weights, measured once loaded.",
            ["model"],
            registry=r,
        )
        self.model_accounted_bytes = Gauge(
            f"{p}_model_accounted_bytes",
            "Bytes the memory budget holds for the model: its measured weights plus the working memory estimated "
            "for a full batch (the admission figure, not a measurement; see hfp_model_peak_working_bytes).",
            ["model"],
            registry=r,
        )
        self.model_peak_working_bytes = Gauge(
            f"{p}_model_peak_working_bytes",
            "Largest working memory of a forward pass since load, measured: the peak above the pass's start "
            "(CUDA: the caching allocator's peak; host: the process's resident high-water mark).",
            ["model"],
            registry=r,
        )
        # Circuit breakers (resilience/breaker.py)
        self.breaker_state = Gauge(
            f"{p}_breaker_state",
            "The model's circuit breaker: 0 closed, 1 half-open (probes let through), 2 open (requests get 503 "
            "circuit_open at once). Absent for a model whose breaker is disabled.",
            ["model"],
            registry=r,
        )
        self.breaker_openings = Counter(
            f"{p}_breaker_openings",
            "Times the model's circuit breaker opened (consecutive failures, or a failed probe).",
            ["model"],
            registry=r,
        )
        # Fallback chains (resilience/fallback.py)
        self.fallbacks = Counter(
            f"{p}_fallbacks",
            "Requests the model refused before queueing them and a fallback served; `reason`: circuit_open, "
            "overloaded, load_failed or worker_crashed.",
            ["model", "fallback", "reason"],
            registry=r,
        )
        # Findings and SLOs (observability/monitor.py, observability/slo.py); deploy/prometheus/alerts.yml
        self.findings = Gauge(
            f"{p}_findings",
            "1 while a regression or anomaly finding is active for the model (GET /v1/admin/findings); `kind`: "
            "latency, error_rate or throughput.",
            ["model", "kind"],
            registry=r,
        )
        self.findings_raised = Counter(
            f"{p}_findings_raised",
            "Findings raised (each start of an active finding).",
            ["model", "kind"],
            registry=r,
        )
        self.slo_latency_target = Gauge(
            f"{p}_slo_latency_target_seconds",
            "The model's configured p95 latency target (hfp.toml `slo = { p95_ms = ... }`).",
            ["model"],
            registry=r,
        )
        self.slo_error_rate_target = Gauge(
            f"{p}_slo_error_rate_target",
            "The model's configured error-rate target (hfp.toml `slo = { error_rate = ... }`).",
            ["model"],
            registry=r,
        )
        self.slo_slow_requests = Counter(
            f"{p}_slo_slow_requests",
            "Answered requests slower than the model's p95 target: the latency SLO's budget is 5% of requests.",
            ["model"],
            registry=r,
        )
        # Read at scrape time (observability/scrape.py)
        self.worker_restarts = Gauge(
            f"{p}_worker_restarts",
            "Restarts of the model's worker process since it was loaded (isolation = process).",
            ["model"],
            registry=r,
        )
        self.server_restarts = Gauge(
            f"{p}_server_restarts",
            "Restarts of the server process by `hfp serve`'s respawn loop.",
            registry=r,
        )
        self.memory_budget_bytes = Gauge(
            f"{p}_memory_budget_bytes", "The memory budget of a pool (host, cuda:N).", ["pool"], registry=r
        )
        self.memory_used_bytes = Gauge(
            f"{p}_memory_used_bytes", "Bytes held against the memory budget of a pool.", ["pool"], registry=r
        )
        self.cache_budget_bytes = Gauge(
            f"{p}_cache_budget_bytes", "The HF cache's disk budget (`[cache] disk_budget`).", registry=r
        )
        self.cache_used_bytes = Gauge(
            f"{p}_cache_used_bytes", "Bytes of the HF cache, measured at most once a minute.", registry=r
        )
        # Process and system
        self.process_cpu_percent = Gauge(
            f"{p}_process_cpu_percent",
            "Process CPU use over the last sample interval (100 = one core).",
            registry=r,
        )
        self.process_resident_bytes = Gauge(
            f"{p}_process_resident_bytes", "Process resident set size.", registry=r
        )
        self.system_memory_total_bytes = Gauge(f"{p}_system_memory_total_bytes", "System memory.", registry=r)
        self.system_memory_available_bytes = Gauge(
            f"{p}_system_memory_available_bytes", "System memory available to new allocations.", registry=r
        )
        # Pipelines (pipelines/): configured names only, so the labels stay bounded. step "" is the whole run.
        self.pipeline_runs = Counter(
            f"{p}_pipeline_requests",
            'Pipeline runs and their steps ended, by outcome (step "" is the whole run; a step is skipped when '
            "its condition did not hold).",
            ["pipeline", "step", "outcome"],
            registry=r,
        )
        self.pipeline_latency = Histogram(
            f"{p}_pipeline_latency_seconds",
            'Latency of pipeline runs (step "") and of each step, submission to answer.',
            ["pipeline", "step"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # GPU gauges exist only once a GPU is seen: absent GPU means absent series.
        self.gpu_memory_used_bytes: Gauge | None = None
        self.gpu_memory_total_bytes: Gauge | None = None
        self.gpu_utilization_percent: Gauge | None = None

        self._children: dict[tuple[Any, ...], Any] = {}
        self._request_bundles: dict[tuple[str, str, str | None, str], tuple[Any, ...]] = {}

    def enable_gpu(self) -> None:
        if self.gpu_memory_used_bytes is not None:
            return
        p, r = PREFIX, self.registry
        self.gpu_memory_used_bytes = Gauge(
            f"{p}_gpu_memory_used_bytes", "GPU memory in use.", ["gpu"], registry=r
        )
        self.gpu_memory_total_bytes = Gauge(f"{p}_gpu_memory_total_bytes", "GPU memory.", ["gpu"], registry=r)
        self.gpu_utilization_percent = Gauge(
            f"{p}_gpu_utilization_percent", "GPU utilisation.", ["gpu"], registry=r
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), cached. Races only build the same child twice, which prometheus dedups."""
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = metric.labels(*labels)
            self._children[key] = c
        return c

    def request_children(self, model: str, task: str, revision: str | None, outcome: str) -> tuple[Any, ...]:
        """The four children one finished request touches, in one dict lookup."""
        key = (model, task, revision, outcome)
        b = self._request_bundles.get(key)
        if b is None:
            b = self._request_bundles[key] = (
                self.requests.labels(model, task, revision or "", outcome),
                self.request_latency.labels(model, task),
                self.items.labels(model, task),
                self.tokens.labels(model, task),
            )
        return b

    def forget_model(self, model: str) -> None:
        """Drop per-model gauges of an unloaded model; counters and histograms keep their history."""
        for g in (
            self.in_flight,
            self.queue_depth,
            self.model_weight_bytes,
            self.model_accounted_bytes,
            self.model_peak_working_bytes,
            self.breaker_state,
        ):
            with contextlib.suppress(KeyError):
                g.remove(model)
            self._children.pop((id(g), model), None)
        for metric in (self.model_info, self.task_queued, self.task_in_flight, self.task_share):
            for key in [k for k in self._children if k[0] == id(metric) and k[1] == model]:
                self._children.pop(key, None)
                with contextlib.suppress(KeyError):
                    metric.remove(*key[1:])
