"""One configured (or ad-hoc) model in the manager's table: its spec, state, loaded weights and scheduler, and the
figures memory management and the admin views read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_provider.resilience.backoff import Backoff
from hf_provider.resilience.retry import RetryBudget
from hf_provider.runtime.model import LoadedModel
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.spec import ModelSpec

# After a failed load the next one waits 1, 2, 4... up to 30 s: requests meanwhile get the failure at once (503 with
# Retry-After, or their fallback) instead of each starting the same failing load; an admin load goes at once.
LOAD_BACKOFF_S = (1.0, 30.0)


@dataclass(eq=False)
class Entry:
    spec: ModelSpec
    state: str = "unloaded"  # unloaded | loading | ready | evicting | switching (lifecycle/switch.py)
    model: LoadedModel | None = None
    scheduler: ModelScheduler | None = None
    pool: str | None = None
    estimated_bytes: int | None = None
    working_bytes: int = 0
    accounted_bytes: int = 0
    loaded_at: float = 0.0
    last_used: float = 0.0
    loads: int = 0
    quantization_cosine: float | None = None  # the accuracy guard's measured figure for a quantized load
    leases: int = 0  # callers between "model is ready" and "request is queued" (see ModelManager.acquire)
    error: str | None = None
    attempts: int = 0  # loads started, so waiters can tell that the load they waited for failed
    adhoc: bool = False  # registered on demand from a folder or Hub id, not from the configuration
    # most padded tokens per batch, so one batch fits in the budget beside the model (memory/working.py)
    token_cap: int | None = None
    load_backoff: Backoff = field(default_factory=lambda: Backoff(*LOAD_BACKOFF_S))  # streak: failed loads
    retry_at: float = 0.0  # on the manager's clock: no load starts before it after a failure
    # Hub retries of this model's loads, all callers together, stay within 20% of its load attempts.
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    canary: Any = None  # lifecycle.canary.Canary while a candidate revision takes a share of the requests

    @property
    def failures(self) -> int:  # loads failed in a row; each doubles the pause before the next one
        return self.load_backoff.streak

    @property
    def in_flight(self) -> int:
        return self.scheduler.in_flight if self.scheduler else 0

    @property
    def busy(self) -> int:
        """Requests in flight plus callers holding a lease: either keeps the model from eviction."""
        return self.in_flight + self.leases


def looks_like_repo_id(name: str) -> bool:
    """Whether an unconfigured name may be a Hub id (`org/name` or `name`), so it may be registered ad hoc."""
    parts = name.split("/")
    return (
        len(parts) in (1, 2)
        and all(p and not p.startswith((".", "-")) and len(p) <= 96 for p in parts)
        and all(c.isalnum() or c in "-_./" for c in name)
    )
