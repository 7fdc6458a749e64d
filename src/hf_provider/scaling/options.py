"""The deployment's Ray Serve options from `[ray]`: one source for the application built in Python
(scaling/ray_serve.py) and for the config file `hfp ray config` writes (scaling/ray_config.py). No Ray import."""

from __future__ import annotations

from typing import Any

from hf_provider.scaling.config import DEPLOYMENT_NAME
from hf_provider.settings import Settings

POLICY_PATH = "hf_provider.scaling.policy:QueuedWorkPolicy"
ROUTER_PATH = "hf_provider.scaling.router:HotModelRouter"
# Ray's metric push intervals (default 10 s) are read from the environment of its processes.
PUSH_INTERVAL_VARS = (
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
)


def graceful_shutdown_timeout_s(settings: Settings) -> float:
    """A replica that goes first drains: Ray stops routing to it and waits this long for its requests. At
    least a request's whole deadline, so a downscale never cuts an admitted request short."""
    r = settings.ray
    return r.graceful_shutdown_timeout_s or settings.server.request_timeout_s + 5.0


def autoscaling_config(settings: Settings) -> dict[str, Any]:
    r = settings.ray
    cfg: dict[str, Any] = {
        "min_replicas": r.min_replicas,
        "max_replicas": r.max_replicas,
        "target_ongoing_requests": r.target_ongoing_requests,
        "upscale_delay_s": r.upscale_delay_s,
        "downscale_delay_s": r.downscale_delay_s,
        "look_back_period_s": r.look_back_period_s,
        # deprecated by Ray (the push interval variables replace it) but still checked against the window
        "metrics_interval_s": r.metrics_interval_s,
    }
    if r.initial_replicas is not None:
        cfg["initial_replicas"] = r.initial_replicas
    if r.policy == "queued_work":
        cfg["policy"] = {
            "policy_function": POLICY_PATH,
            "policy_kwargs": {
                "target_queue_wait_s": r.target_queue_wait_s,
                "target_queued_tokens": r.target_queued_tokens,
            },
        }
    return cfg


def actor_options(settings: Settings) -> dict[str, Any]:
    r = settings.ray
    opts: dict[str, Any] = {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus}
    if r.memory is not None:
        opts["memory"] = r.memory
    return opts


def request_router_config(settings: Settings) -> dict[str, Any] | None:
    """Our router (a hot model spreads, scaling/router.py), or None for Ray's default."""
    r = settings.ray
    if not r.spread_hot_models:
        return None
    return {
        "request_router_class": ROUTER_PATH,
        "request_routing_stats_period_s": r.routing_stats_period_s,
        # a replica answers from memory; a slow answer means it is busy, and its last stats stand meanwhile
        "request_routing_stats_timeout_s": max(5.0, 5 * r.routing_stats_period_s),
    }


def deployment_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `serve.deployment(...)`; also the `deployments:` entry of a Serve config file."""
    r = settings.ray
    router = request_router_config(settings)
    return {
        **({"request_router_config": router} if router is not None else {}),
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": r.max_ongoing_requests,
        "autoscaling_config": autoscaling_config(settings),
        "ray_actor_options": actor_options(settings),
        "graceful_shutdown_timeout_s": graceful_shutdown_timeout_s(settings),
        "graceful_shutdown_wait_loop_s": r.graceful_shutdown_wait_loop_s,
    }


def push_interval_env(settings: Settings) -> dict[str, str]:
    return {v: str(settings.ray.metrics_interval_s) for v in PUSH_INTERVAL_VARS}
