"""When a hot model's requests go to more replicas: the rule of scaling/router.py, pure (no Ray import).

Ray's multiplexed routing sends a model's requests to the replicas that advertise it, and to others only once
those replicas refuse, at `max_ongoing_requests`. Ours batch, so a replica is saturated (its queue wait past
the target) long before that count, and a hot model would stay pinned to it while other replicas idle
(ray#48741). Each replica names its hot models in its routing stats (scaling/replica.py `hot_models`, by the
same targets as the autoscaling policy); when every replica Ray chose for a model holds it and reports it hot,
the request may also go to the least loaded other replicas, which then load the model through their byte
budget and advertise it, so the model now spans more replicas. Replicas hot with their own models are left
alone: when all are, more replicas are the autoscaler's job, not the router's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Set
from dataclasses import dataclass
from typing import Any, TypeVar

HOT = "hfp_hot"  # the routing-stats key: the replica's hot models, sorted

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ReplicaLoad:
    models: frozenset[str]  # what it advertises (loading or ready)
    hot: frozenset[str]  # of those, the ones whose queues are past the targets

    @classmethod
    def of(cls, models: Set[str], routing_stats: Mapping[str, Any] | None) -> ReplicaLoad:
        hot = (routing_stats or {}).get(HOT) or ()
        return cls(frozenset(models), frozenset(h for h in hot if isinstance(h, str)))


def spread(model: str, candidates: Set[K], replicas: Mapping[K, ReplicaLoad]) -> set[K]:
    """The replicas a request for `model` may go to, from those Ray's multiplexed rule chose (`candidates`).

    Unchanged unless every candidate holds `model` and reports it hot; then the replicas outside them that are
    hot with nothing are added, those holding the fewest models first (the same preference as Ray's fallback,
    so a replica that serves many models is disturbed last). Pow-2 then picks the shorter queue among them.
    """
    out = set(candidates)
    if not out:
        return out
    for k in out:
        load = replicas.get(k)
        if load is None or model not in load.models or model not in load.hot:
            return out
    spare = {k: load for k, load in replicas.items() if k not in out and not load.hot}
    if not spare:
        return out
    fewest = min(len(load.models) for load in spare.values())
    return out | {k for k, load in spare.items() if len(load.models) == fewest}
