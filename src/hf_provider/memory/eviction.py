"""Eviction and keep-alive policy: pure functions over a snapshot of resident models and an injected `now`.

The model manager builds `Resident` rows from its own state, asks which models to unload, and does the
unloading. Nothing here reads a clock or touches a model, so every ordering rule is testable without sleeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Resident:
    """One loaded model as the policy sees it. Times are seconds on the caller's clock (e.g. time.monotonic()).

    keep_alive: seconds idle before unload; 0 unloads right after use; None keeps the model.
    """

    name: str
    pool: str
    bytes: int
    priority: int = 0
    pinned: bool = False
    last_used: float = 0.0
    loaded_at: float = 0.0
    in_flight: int = 0
    keep_alive: float | None = None


def eviction_order(
    residents: Iterable[Resident], pool: str, now: float, min_residency_s: float
) -> list[Resident]:
    """Evictable residents of `pool`, first to go first.

    Never pinned, never with work in flight (the caller may wait for it and ask again), never loaded less than
    `min_residency_s` ago (prevents thrashing). Order: lowest priority first, then least recently used, then
    name.
    """
    candidates = [
        r
        for r in residents
        if r.pool == pool and not r.pinned and r.in_flight == 0 and now - r.loaded_at >= min_residency_s
    ]
    return sorted(candidates, key=lambda r: (r.priority, r.last_used, r.name))


def plan_eviction(
    residents: Sequence[Resident],
    pool: str,
    need_bytes: int,
    free_bytes: int,
    now: float,
    min_residency_s: float = 0.0,
) -> list[str] | None:
    """Names of the models to unload so that `need_bytes` fits in `pool`, given `free_bytes` free now.

    Returns the shortest prefix of `eviction_order` that frees enough ([] when it already fits), or None when
    even every candidate together does not free enough (the load must wait or be refused).
    """
    if need_bytes <= free_bytes:
        return []
    plan: list[str] = []
    freed = free_bytes
    for r in eviction_order(residents, pool, now, min_residency_s):
        plan.append(r.name)
        freed += r.bytes
        if freed >= need_bytes:
            return plan
    return None


def expired(residents: Iterable[Resident], now: float) -> list[str]:
    """Names of models idle past their keep_alive, in input order: to unload (scale to zero).

    keep_alive None never expires; 0 expires as soon as the model has no work in flight. Pinned models and
    models with work in flight never expire.
    """
    return [
        r.name
        for r in residents
        if r.keep_alive is not None
        and not r.pinned
        and r.in_flight == 0
        and now - r.last_used >= r.keep_alive
    ]


def next_expiry(residents: Iterable[Resident], now: float) -> float | None:
    """Seconds until the next keep_alive expiry among idle models (0 if one is due); None if none can expire.

    Lets a background loop sleep exactly until there is work instead of polling.
    """
    waits = [
        max(0.0, r.last_used + r.keep_alive - now)
        for r in residents
        if r.keep_alive is not None and not r.pinned and r.in_flight == 0
    ]
    return min(waits) if waits else None
