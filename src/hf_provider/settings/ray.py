"""`[ray]` in hfp.toml: how the application runs on Ray Serve (replicas, resources per replica, autoscaling).

Plain pydantic, no Ray import: the settings load (and validate) on machines without the `ray` extra.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hf_provider.units import parse_size


class RaySettings(BaseModel):
    """`[ray]`: used by `hfp serve --ray` and `hfp ray config`; ignored by a plain `hfp serve`."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, description="fewest replicas; 0 scales to zero when idle")
    max_replicas: int = Field(1, ge=1, description="most replicas")
    initial_replicas: int | None = Field(None, ge=0, description="replicas at deploy (default min_replicas)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each replica")
    num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs per replica; a fraction shares a GPU, and the replica's GPU budget is that share",
    )
    memory: int | None = Field(
        None,
        description="host memory per replica ('4GiB'): Ray places replicas where it is free, and it is the "
        "replica's host budget ([memory] host_budget, when a fraction, is a fraction of it)",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads in each replica (default: num_cpus rounded up, at least 1)"
    )
    max_ongoing_requests: int = Field(
        64,
        ge=1,
        description="requests Ray hands one replica at once; more wait in Ray's router. Our scheduler batches "
        "what it holds, so this is larger than Ray's default of 5",
    )
    policy: Literal["queued_work", "ongoing_requests"] = Field(
        "queued_work",
        description="queued_work: replicas follow our scheduler's estimated queue wait and Ray's ongoing "
        "requests, whichever asks for more (a custom Ray autoscaling policy); ongoing_requests: Ray's default",
    )
    target_queue_wait_s: float = Field(
        0.25, gt=0, description="queued_work: the estimated queue wait each replica should stay under"
    )
    target_queued_tokens: int = Field(
        4096,
        ge=1,
        description="queued_work: the generation tokens (prompt + max_new_tokens of each queued item) each "
        "replica's queues should stay under; encoder models queue none",
    )
    spread_hot_models: bool = Field(
        True,
        description="route a model's requests to more replicas once every replica holding it reports it hot "
        "(its queue wait or queued tokens over the targets above), not only once they are full "
        "(max_ongoing_requests): a custom Ray request router, scaling/router.py",
    )
    routing_stats_period_s: float = Field(
        1.0, gt=0, description="how often Ray asks each replica which of its models are hot"
    )
    target_ongoing_requests: float = Field(
        16.0, gt=0, description="Ray's target of requests in flight and queued per replica"
    )
    upscale_delay_s: float = Field(2.0, ge=0, description="how long a need for more replicas must last")
    downscale_delay_s: float = Field(30.0, ge=0, description="how long a replica must be spare to go")
    look_back_period_s: float = Field(5.0, gt=0, description="window over which the signals are averaged")
    metrics_interval_s: float = Field(
        1.0,
        gt=0,
        description="how often replicas and the proxy report load to Ray's controller (Ray's default is 10 s, "
        "too slow to follow a burst); set by `hfp serve --ray` when it starts Ray, on a cluster set the "
        "RAY_SERVE_*_AUTOSCALING_METRIC_PUSH_INTERVAL_S variables there",
    )
    graceful_shutdown_timeout_s: float | None = Field(
        None,
        gt=0,
        description="longest a replica that goes drains its requests (default: request_timeout_s + 5 s, so an "
        "admitted request is never cut short by a downscale)",
    )
    graceful_shutdown_wait_loop_s: float = Field(
        0.5, gt=0, description="how often a draining replica checks for requests still in flight"
    )
    dashboard: bool = Field(True, description="start Ray's dashboard when `hfp serve --ray` starts Ray")
    cluster_cpus: int | None = Field(
        None, ge=1, description="CPUs of a local Ray started by `hfp serve --ray` (default: all)"
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env of the application (`hfp ray config` writes it)"
    )

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        # bytes only: a fraction of what? (Ray reserves an amount, not a share)
        return None if v is None else parse_size(v, None, of="a replica's memory")

    @model_validator(mode="after")
    def _bounds(self) -> RaySettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas}); "
                "raise max_replicas or lower min_replicas"
            )
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self
