"""ModelSpec: everything needed to load and serve one model, validated at construction."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hf_provider.types import TASKS
from hf_provider.units import parse_duration

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class BatchingSpec(BaseModel):
    """Dynamic batching bounds for one model."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(32, ge=1, le=4096, description="most items in one forward pass")
    max_batch_tokens: int = Field(16384, ge=1, description="most padded tokens in one forward pass")
    max_wait_ms: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="longest a batch waits to fill up while the device is idle (under load batches fill while it "
        "is busy). None: 0 for encoder tasks, so a lone request never waits; for generation, where a batch that "
        "starts alone holds the device for the whole generation, it follows a burst of arrivals (requests less "
        "than 3 ms apart) for up to 50 ms",
    )
    max_queue: int = Field(
        4096,
        ge=1,
        description="hard bound on queued items: beyond it requests get 429 (admission by estimated wait "
        "refuses earlier, by time)",
    )
    max_items_per_request: int = Field(2048, ge=1, description="inputs accepted in one request")
    max_documents: int = Field(
        1000, ge=1, description="rerank: documents in one request; score: texts on either side of one request"
    )
    max_candidate_labels: int = Field(
        100, ge=1, description="zero-shot-classification: candidate labels in one request"
    )
    generation: Literal["auto", "continuous", "static"] = Field(
        "auto",
        description="text-generation on decoders: 'continuous' lets requests join and leave the running batch at "
        "every token (runtime/continuous; its KV cache of max_batch_size slots is accounted with the model), "
        "'static' runs whole batches through generate; 'auto' is continuous on CUDA and static elsewhere; "
        "encoder-decoder models (T5, BART, Marian) too, and 'auto' runs them continuous on the CPU as well (faster "
        "than generate there, and one task's rows never wait for another task's batch)",
    )
    cross_task: bool = Field(
        True,
        description="requests of different tasks that compute the same thing share a batch: translation, "
        "summarization and text2text on one seq2seq model decode together; tasks that run one encoder trunk "
        "(embeddings and fill-mask on one BERT) run it once for a mixed batch. false: one task per batch",
    )
    yield_to_interactive: Literal["auto", "always", "when-full"] = Field(
        "auto",
        description="continuous generation: when batch-priority rows step aside for interactive ones. "
        "'when-full': an interactive request that finds every slot taken pauses a batch row (its state kept) "
        "and takes its slot; 'always': batch rows are also paused while interactive rows decode, so interactive "
        "steps are as short as alone (the CPU, where a step's cost grows with its rows); 'auto': 'always' on "
        "the CPU, 'when-full' on a GPU. A batch row paused longer than the queue's aging (2 s) runs anyway",
    )


class BreakerSpec(BaseModel):
    """The model's circuit breaker (resilience/breaker.py): after `failures` consecutive failures of the model's
    own making (5xx classes, never client errors) requests get 503 `circuit_open` at once; after `cooldown`,
    `probes` requests are let through and their success closes it."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(5, ge=0, description="consecutive failures that open the breaker; 0 disables it")
    cooldown: float = Field(30.0, description="time open before probes are let through, e.g. '30s'")
    probes: int = Field(1, ge=1, description="requests let through while half-open; all must succeed")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> Any:
        return parse_duration(v)


class SloSpec(BaseModel):
    """The model's service-level objectives (observability/slo.py, GET /v1/admin/slo, deploy/prometheus/alerts.yml):
    95% of answered requests within `p95_ms`, at most `error_rate` of requests failed, over `window`."""

    model_config = ConfigDict(extra="forbid")

    p95_ms: float | None = Field(None, gt=0, description="latency objective: the p95 in milliseconds")
    error_rate: float | None = Field(None, ge=0, lt=1, description="error objective: the share that may fail")
    window: float = Field(30 * 86400.0, gt=0, description="the period the error budget covers, e.g. '30d'")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> Any:
        return parse_duration(v)


class ModelSpec(BaseModel):
    """One served model. `name` is how clients address it; `source` is a Hub id or a local folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1)
    revision: str | None = Field(None, description="branch, tag or commit; None means 'main' on the Hub")
    tasks: list[str] = Field(default_factory=list, description="empty: every task the architecture serves")
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    trust_remote_code: bool = False
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-task parameter defaults"
    )
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    task_priority: dict[str, Literal["interactive", "batch"]] = Field(
        default_factory=dict,
        description="default priority per task when a request names none (X-Priority / priority= override it): "
        '{ summarization = "batch" }',
    )
    task_share: dict[str, int] = Field(
        default_factory=dict,
        description="weighted fair share between this model's tasks while more than one has work queued: "
        "{ translation = 3, summarization = 1 }; a task not listed has share 1",
    )
    max_length: int | None = Field(None, ge=1, description="token limit for inputs; default: the model's")
    # Memory management (issue 5); carried here so one spec describes a model completely.
    priority: int = 0
    pinned: bool = False
    keep_alive: float | None = Field(None, description="seconds idle before unload; None keeps the model")
    quantization: Literal["none", "int8", "int8-weight-only"] = Field(
        "none",
        description="CPU int8: 'int8' is torch's dynamic quantization (int8 matmuls), 'int8-weight-only' "
        "keeps float activations (more accurate); both must pass the accuracy guard",
    )
    optimize: str = Field(
        "none",
        description="'none': torch eager as loaded; 'auto': measure the candidate backends at first load and keep "
        "the fastest that passes the accuracy guard (cached per commit, hardware and library versions); or a "
        "variant name such as 'onnx', 'openvino', 'int8' (optimize/, `hfp optimize`)",
    )
    fallback_to_cpu: bool = False
    cpu_threads: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        "auto",
        description="CPU threads of this model's forward passes (its own threads only; others keep torch's "
        "count). 'auto': torch's count (one a core), except continuous-decoding steps, which measure 1 thread "
        "against it on the model's first steps and keep 1 unless it is over 15% slower (scheduling/threads.py)",
    )
    cuda_graphs: bool = Field(
        True,
        description="on CUDA, encoder forward passes (embeddings) replay CUDA graphs captured per batch-size and "
        "length bucket instead of launching each kernel from Python (runtime/graphs.py)",
    )
    breaker: BreakerSpec | None = Field(
        default_factory=BreakerSpec, description="circuit breaker; None (or failures = 0) disables it"
    )
    isolation: Literal["thread", "process"] = Field(
        "thread",
        description="'thread': the model runs in the server's process (fastest); 'process': in a child process "
        "with its own device context, so a crash of it (killed, a segfault, a fatal CUDA error) fails only its "
        "in-flight requests (503 worker_crashed) and it restarts with backoff (isolation/runners.py)",
    )
    slo: SloSpec | None = Field(
        None, description="service-level objectives: { p95_ms = 200, error_rate = 0.01 }"
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="configured models that serve a request this model refuses before queueing it (breaker "
        "open, overloaded, load failed), tried in order (resilience/fallback.py); never for a client error",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; allowed values: {', '.join(TASKS)}")
        return list(dict.fromkeys(v))

    @field_validator("defaults")
    @classmethod
    def _known_default_tasks(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(f"defaults for unknown task(s) {unknown}; allowed values: {', '.join(TASKS)}")
        return v

    @field_validator("task_priority", "task_share")
    @classmethod
    def _known_scheduled_tasks(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(
                f"{info.field_name} names unknown task(s) {unknown}; allowed values: {', '.join(TASKS)}"
            )
        bad = [
            t for t, w in v.items() if info.field_name == "task_share" and not (isinstance(w, int) and w >= 1)
        ]
        if bad:
            raise ValueError(f"task_share for {bad} must be a whole number of at least 1 (a relative weight)")
        return v

    @field_validator("optimize")
    @classmethod
    def _optimize(cls, v: str, info: Any) -> str:
        from hf_provider.variants import check_optimize

        if v != "none" and info.data.get("quantization", "none") != "none":
            raise ValueError("optimize and quantization both change the weights; set one of them")
        return check_optimize(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE_RE.match(v):
            raise ValueError(f"invalid device {v!r}; allowed values: auto, cpu, cuda, cuda:N, mps")
        return v

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _defaults_within_tasks(self) -> ModelSpec:
        if self.tasks:
            for field in ("defaults", "task_priority", "task_share"):
                extra = [t for t in getattr(self, field) if t not in self.tasks]
                if extra:
                    raise ValueError(f"{field} given for task(s) {extra} that are not in tasks {self.tasks}")
        return self


def check_fallbacks(specs: list[ModelSpec]) -> None:
    """Every model's `fallbacks` name other configured models, and no chain leads back to where it started
    (the walk is one hop today; a cycle-free graph keeps a deeper walk safe). Raises ValueError naming the model
    and the field."""
    names = {s.name for s in specs}
    graph: dict[str, list[str]] = {}
    for s in specs:
        if s.name in s.fallbacks:
            raise ValueError(f"models.{s.name}.fallbacks: a model cannot be its own fallback")
        unknown = [f for f in s.fallbacks if f not in names]
        if unknown:
            raise ValueError(
                f"models.{s.name}.fallbacks: {unknown} are not configured models; configured: "
                f"{', '.join(sorted(names))}"
            )
        if len(set(s.fallbacks)) != len(s.fallbacks):
            raise ValueError(f"models.{s.name}.fallbacks: a fallback is listed twice: {s.fallbacks}")
        graph[s.name] = s.fallbacks
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ValueError(f"models.{name}.fallbacks: the fallbacks form a cycle ({cycle})")
        if name in done:
            return
        for nxt in graph.get(name, []):
            visit(nxt, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
