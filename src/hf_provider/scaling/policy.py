"""How many replicas the queued work needs: a pure function, and the Ray Serve policy class around it.

Ray's default policy scales on ongoing requests alone, a poor signal for batched inference: one request may
carry 64 inputs or one, and a replica that batches well holds many requests at little cost. Each replica
reports the estimated wait of a new request in its queues (items ahead over the measured service rate, from our
scheduler); the policy sizes the deployment so that wait stays under a target, and never below what Ray's own
ongoing-request rule asks for. Ray applies min/max replicas, the up/down delays and the scaling factors around
it (`_apply_autoscaling_config`), so this stays a ratio.

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
IN_FLIGHT = "hfp_in_flight"


def desired_replicas(
    current: int,
    ongoing_requests: float,
    target_ongoing_requests: float,
    queue_waits_s: Iterable[float],
    target_queue_wait_s: float,
) -> float:
    """Replicas wanted (a float; the caller rounds and bounds it).

    - by requests: ongoing requests over the per-replica target (Ray's rule);
    - by queued work: the replicas' mean estimated queue wait over the target, times the replicas now, since
      the wait falls in proportion as replicas are added (the same work split more ways).
    The larger wins: either one saturated is reason enough to grow; both must be low to shrink.
    """
    if target_ongoing_requests <= 0 or target_queue_wait_s <= 0:
        raise ValueError("targets must be positive")
    if current <= 0:  # scaled to zero: one replica as soon as anything waits
        return 1.0 if ongoing_requests > 0 else 0.0
    by_requests = max(0.0, ongoing_requests) / target_ongoing_requests
    waits = [w for w in queue_waits_s if w is not None and math.isfinite(w) and w >= 0]
    by_wait = current * (sum(waits) / len(waits)) / target_queue_wait_s if waits else 0.0
    return max(by_requests, by_wait)


class QueuedWorkPolicy:
    """Ray Serve custom autoscaling policy (`AutoscalingConfig.policy`): `policy_kwargs` reach __init__ once,
    then Ray calls the instance with an `AutoscalingContext` on every control-loop tick."""

    def __init__(self, target_queue_wait_s: float = 0.25) -> None:
        if target_queue_wait_s <= 0:
            raise ValueError(f"target_queue_wait_s must be positive, got {target_queue_wait_s}")
        self.target_queue_wait_s = float(target_queue_wait_s)

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        waits = list((metrics.get(QUEUE_WAIT) or {}).values())
        want = desired_replicas(
            ctx.current_num_replicas,
            float(ctx.total_num_requests or 0.0),
            float(ctx.config.get_target_ongoing_requests()),
            waits,
            self.target_queue_wait_s,
        )
        return want, {"hfp_desired": round(want, 3)}  # kept in Ray's policy state: why it scaled
