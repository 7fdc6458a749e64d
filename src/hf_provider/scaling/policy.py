"""How many replicas the queued work needs: a pure function, and the Ray Serve policy class around it.

Ray's default policy scales on ongoing requests alone, a poor signal for batched inference: one request may
carry 64 inputs or one, and a replica that batches well holds many requests at little cost. Each replica
reports the estimated wait of a new request in its queues (items ahead over the measured service rate, from our
scheduler) and, for generation, the tokens its queues hold (prompt + max_new_tokens of every queued item): a
few requests that each ask for 2000 new tokens are more work than many that ask for 8, which neither a request
count nor an item rate averaged over lengths shows (ray-llm#133). The policy sizes the deployment so that each
signal stays under its target, and never below what Ray's own ongoing-request rule asks for. Ray applies
min/max replicas, the up/down delays and the scaling factors around it (`_apply_autoscaling_config`), so this
stays a ratio.

Standard library only: Ray pickles this module by value into its controller (`AutoscalingPolicy`), so an
import of ours here would have to be installed there too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# Metric names each replica reports through `record_autoscaling_stats` (scaling/ray_serve.py).
QUEUE_WAIT = "hfp_queue_wait_s"
QUEUED_ITEMS = "hfp_queued_items"
QUEUED_TOKENS = "hfp_queued_tokens"
IN_FLIGHT = "hfp_in_flight"


def _usable(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v) and v >= 0]


def desired_replicas(
    current: int,
    ongoing_requests: float,
    target_ongoing_requests: float,
    queue_waits_s: Iterable[float],
    target_queue_wait_s: float,
    queued_tokens: Iterable[float] = (),
    target_queued_tokens: float | None = None,
) -> float:
    """Replicas wanted (a float; the caller rounds and bounds it).

    - by requests: ongoing requests over the per-replica target (Ray's rule);
    - by queued work: the replicas' mean estimated queue wait over the target, times the replicas now, since
      the wait falls in proportion as replicas are added (the same work split more ways);
    - by queued tokens (generation): all replicas' queued tokens over the per-replica target. Encoder models
      queue no generation tokens, so for them this is 0 and changes nothing.
    The largest wins: any one saturated is reason enough to grow; all must be low to shrink.
    """
    if target_ongoing_requests <= 0 or target_queue_wait_s <= 0:
        raise ValueError("targets must be positive")
    if target_queued_tokens is not None and target_queued_tokens <= 0:
        raise ValueError("target_queued_tokens must be positive")
    tokens = sum(_usable(queued_tokens))
    if current <= 0:  # scaled to zero: one replica as soon as anything waits
        return 1.0 if ongoing_requests > 0 or tokens > 0 else 0.0
    by_requests = max(0.0, ongoing_requests) / target_ongoing_requests
    waits = _usable(queue_waits_s)
    by_wait = current * (sum(waits) / len(waits)) / target_queue_wait_s if waits else 0.0
    by_tokens = tokens / target_queued_tokens if target_queued_tokens else 0.0
    return max(by_requests, by_wait, by_tokens)


class QueuedWorkPolicy:
    """Ray Serve custom autoscaling policy (`AutoscalingConfig.policy`): `policy_kwargs` reach __init__ once,
    then Ray calls the instance with an `AutoscalingContext` on every control-loop tick."""

    def __init__(self, target_queue_wait_s: float = 0.25, target_queued_tokens: float | None = None) -> None:
        if target_queue_wait_s <= 0:
            raise ValueError(f"target_queue_wait_s must be positive, got {target_queue_wait_s}")
        if target_queued_tokens is not None and target_queued_tokens <= 0:
            raise ValueError(f"target_queued_tokens must be positive, got {target_queued_tokens}")
        self.target_queue_wait_s = float(target_queue_wait_s)
        self.target_queued_tokens = None if target_queued_tokens is None else float(target_queued_tokens)

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        # per replica, each averaged by Ray over look_back_period_s
        waits = list((metrics.get(QUEUE_WAIT) or {}).values())
        tokens = list((metrics.get(QUEUED_TOKENS) or {}).values())
        want = desired_replicas(
            ctx.current_num_replicas,
            float(ctx.total_num_requests or 0.0),
            float(ctx.config.get_target_ongoing_requests()),
            waits,
            self.target_queue_wait_s,
            tokens,
            self.target_queued_tokens,
        )
        return want, {"hfp_desired": round(want, 3)}  # kept in Ray's policy state: why it scaled
