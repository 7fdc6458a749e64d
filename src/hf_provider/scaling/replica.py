"""What runs inside one Ray Serve replica, apart from the Ray calls: settings for this replica, its load signals,
its view for the admin routes, and the set of models it advertises for routing.

No Ray import here (scaling/ray_serve.py makes every Ray call), so this part is tested without a Ray cluster.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from hf_provider.memory.budget import gpu_total_bytes
from hf_provider.provider import Provider
from hf_provider.scaling.budget import replica_gpu_budget, replica_host_budget
from hf_provider.scaling.policy import IN_FLIGHT, QUEUE_WAIT, QUEUED_ITEMS, QUEUED_TOKENS
from hf_provider.scaling.spread import HOT
from hf_provider.settings import Settings

ADVERTISED = ("loading", "ready")  # states in which a replica holds (or is about to hold) a model


def replica_settings(settings: Settings, replica_id: str) -> Settings:
    """This replica's settings: its own state folder (history and error reports are per process), and the
    memory budget of its share of the node (scaling/budget.py)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", replica_id) or "replica"
    gpu_totals = gpu_total_bytes() if settings.ray.num_gpus > 0 else {}
    memory = settings.memory.model_copy(
        update={
            # model_copy does not validate: the GPU budget may become a per-device mapping, which
            # MemoryBudget.from_settings takes but the settings' own (single value) field would refuse
            "host_budget": replica_host_budget(settings.memory.host_budget, settings.ray),
            "gpu_budget": replica_gpu_budget(settings.memory.gpu_budget, settings.ray, gpu_totals),
        }
    )
    return settings.model_copy(update={"home": settings.home / "ray" / safe, "memory": memory})


def preload(provider: Provider) -> list[str]:
    """Load the configured models that fit this replica's budget together, in configuration order, before it
    takes traffic: a replica added by a scale-up then serves at once instead of holding its first requests
    behind a load. Models with keep_alive 0 load on demand; the first one that does not fit beside those before
    it ends it (the rest load where requests for them are routed: model affinity). Those loaded are pinned
    meanwhile, so a later one cannot evict them to fit."""
    from hf_provider.errors import MemoryBudgetExceeded, ProviderError

    admin = provider.admin
    loaded: list[str] = []
    pinned: list[str] = []
    try:
        for d in admin.describe():
            if d["keep_alive"] == 0:
                continue
            try:
                admin.load(d["name"], force=False)
            except MemoryBudgetExceeded:
                break
            except ProviderError as e:  # as at a server start: /readyz names it, its requests get its error
                provider.report(e, model=d["name"], phase="load")
                provider.supervisor.mark_down(f"model-loading/{d['name']}", e.message)
                continue
            loaded.append(d["name"])
            if not d["pinned"]:
                admin.pin(d["name"], True)
                pinned.append(d["name"])
    finally:
        for name in pinned:
            admin.pin(name, False)
    return loaded


def _queue_signals(provider: Provider) -> dict[str, tuple[float, int]]:
    """Per model with a queue: the estimated wait of a new item (every queued item ahead, bulk included) and the
    generation tokens queued."""
    return {name: (load.wait_s, load.tokens) for name, load in provider.admin.queue_loads().items()}


def autoscaling_stats(provider: Provider) -> dict[str, float]:
    """The replica's load for the autoscaling policy (scaling/policy.py): the longest estimated queue wait of
    its models (items ahead over the measured service rate), the generation tokens queued (prompt +
    max_new_tokens of each queued item), queued items and requests in flight."""
    admin = provider.admin
    signals = _queue_signals(provider)
    return {
        QUEUE_WAIT: max((w for w, _ in signals.values()), default=0.0),
        QUEUED_TOKENS: float(sum(t for _, t in signals.values())),
        QUEUED_ITEMS: float(admin.queued_items()),
        IN_FLIGHT: float(sum(admin.in_flight_by_model().values())),
    }


def hot_models(provider: Provider) -> list[str]:
    """The models this replica is saturated with: queue wait past `target_queue_wait_s` or queued generation
    tokens past `target_queued_tokens`, the autoscaling policy's targets. The request router lets their
    requests spread to other replicas (scaling/spread.py)."""
    r = provider.settings.ray
    return sorted(
        name
        for name, (wait, tokens) in _queue_signals(provider).items()
        if wait > r.target_queue_wait_s or tokens > r.target_queued_tokens
    )


def routing_stats(provider: Provider) -> dict[str, list[str]]:
    """What Ray's controller pulls from the replica for its routers. Only the hot set, no figures: Ray sends
    the stats to every router each time they change, and this changes only when a model turns hot or cools."""
    return {HOT: hot_models(provider)}


def replica_view(
    provider: Provider, replica_id: str, node: str | None, node_id: str | None = None
) -> dict[str, Any]:
    """One replica in GET /v1/admin/replicas and in /v1/admin/models' `replicas`: `node` is its node's
    address, `node_id` Ray's id of the node (several nodes on one machine share an address)."""
    keep = ("name", "state", "weight_bytes", "accounted_bytes", "queued", "in_flight", "loads", "error")
    # unloaded models that were loaded once stay listed: their load count tells how often affinity failed
    models = [
        {k: d.get(k) for k in keep}
        for d in provider.admin.describe()
        if d["state"] != "unloaded" or d["loads"]
    ]
    memory = provider.admin.memory()
    return {
        "replica": replica_id,
        "node": node,
        "node_id": node_id,
        "models": models,
        "memory": {k: v for k, v in memory.items() if k != "pools"},
        "seen": time.time(),
    }


class Advertiser:
    """Keeps Ray's router told which models this replica holds, so requests carrying a model as their
    multiplexed model id reach a replica that has it.

    Ray's own `@serve.multiplexed` keeps a count-limited LRU of its own and would advertise models our byte
    budget has already evicted (or evict what our budget would keep), so the set advertised here is read from
    the Provider's admin view: every model loading or ready. `push` is Ray's call (scaling/ray_serve.py); it
    runs when the set changes, when a request names a model not yet held (before its load starts, as Ray's
    wrapper does), and every `refresh_s` in case an update was lost.
    """

    def __init__(
        self,
        provider: Provider,
        push: Callable[[list[str]], None],
        *,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self._push = push
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: list[str] | None = None
        self._sent_at = 0.0
        self._incoming: dict[str, float] = {}  # named by requests, not loaded yet -> when
        self._incoming_ttl_s = provider.settings.memory.load_wait_s  # a load that never came is forgotten

    def held(self) -> list[str]:
        names = {d["name"] for d in self.provider.admin.describe() if d["state"] in ADVERTISED}
        now = self._clock()
        with self._lock:
            for n in [n for n, t in self._incoming.items() if n in names or now - t > self._incoming_ttl_s]:
                del self._incoming[n]
            return sorted(names | set(self._incoming))

    def note_request(self, model_id: str) -> None:
        """A request routed here for `model_id`: advertise it at once if it is a configured model not held."""
        if not model_id or model_id not in self.provider.admin.names():
            return
        with self._lock:
            if self._sent is not None and model_id in self._sent:
                return
            self._incoming[model_id] = self._clock()
        self.sync()

    def sync(self) -> bool:
        """Push the held set if it changed or is due for a refresh; True when pushed."""
        names = self.held()
        now = self._clock()
        with self._lock:
            if names == self._sent and now - self._sent_at < self._refresh_s:
                return False
            self._sent, self._sent_at = names, now
        self._push(names)
        return True
