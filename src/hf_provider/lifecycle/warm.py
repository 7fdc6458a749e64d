"""The warm previous version of each model: after a swap the outgoing version, drained, stays in host memory for
`[versioning] warm_previous`, so a rollback is a switch instead of a load. It is a cache: dropped when its time is
up, when a load needs its memory (before any serving model is evicted), or when another takes its place."""

from __future__ import annotations

import threading

from hf_provider.lifecycle import version as V
from hf_provider.models.manager import ModelManager


class WarmVersions:
    def __init__(self, manager: ModelManager, keep_s: float) -> None:
        self.manager = manager
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._by_model: dict[str, V.Version] = {}

    def get(self, name: str) -> V.Version | None:
        return self._by_model.get(name)

    def take(self, name: str) -> V.Version | None:
        """Remove and return the model's warm version (a rollback brings it back to serve)."""
        with self._lock:
            return self._by_model.pop(name, None)

    def keep(self, name: str, v: V.Version) -> bool:
        """Park the drained `v` as the model's warm previous version (replacing an older one). False, and `v`
        dropped, when warm versions are off or the host budget cannot hold it."""
        self.drop(name, "replaced")
        if (
            self.keep_s > 0
            and v.commit is not None
            and V.park(self.manager, v, self.manager.clock() + self.keep_s)
        ):
            v.pin("warm")
            with self._lock:
                self._by_model[name] = v
            return True
        V.drop(self.manager, v, "swapped out")
        return False

    def drop(self, name: str, reason: str) -> None:
        v = self.take(name)
        if v is not None:
            V.drop(self.manager, v, reason)

    def bytes_in(self, pool: str) -> int:
        return sum(v.entry.accounted_bytes for v in list(self._by_model.values()) if v.entry.pool == pool)

    def reclaim(self, pool: str, need: int) -> bool:
        """Drop warm versions in `pool`, oldest first, until `need` bytes are freed. True if any was."""
        freed = 0
        for v in V.oldest_first(v for v in list(self._by_model.values()) if v.entry.pool == pool):
            if freed >= need:
                break
            name = v.entry.spec.name
            with self._lock:
                if self._by_model.get(name) is not v:
                    continue
                del self._by_model[name]
            freed += v.entry.accounted_bytes
            V.drop(self.manager, v, "memory for a load")
        return freed > 0

    def expire(self, now: float) -> list[str]:
        """Drop warm versions whose time is up; returns their models' names."""
        with self._lock:
            due = [(n, v) for n, v in self._by_model.items() if v.parked_until <= now]
            for n, _ in due:
                del self._by_model[n]
        for _, v in due:
            V.drop(self.manager, v, "warm_previous expired")
        return [n for n, _ in due]

    def close(self) -> None:
        with self._lock:
            versions, self._by_model = list(self._by_model.values()), {}
        for v in versions:
            V.drop(self.manager, v, "shutdown")
