"""The atomic part of a swap: which version an entry serves changes while no caller is between "model is ready"
and "request is queued".

`exclusive` puts the entry in state `switching`: new callers wait in `ModelManager.acquire` as they would for a
load (up to load_wait_s; a 504 if their deadline passes), callers that took a lease before finish queueing
(microseconds: a parse and a push), then the block changes the entry. Requests already queued stay with the
version that queued them, so the outgoing version drains on its own scheduler while the incoming one serves
everything new.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from hf_provider.errors import Unavailable, VersionConflict
from hf_provider.lifecycle.version import Version
from hf_provider.models.manager import Entry, ModelManager


@contextmanager
def exclusive(manager: ModelManager, e: Entry, *, held: int = 0, timeout_s: float = 10.0) -> Iterator[None]:
    """Run the block with no lease on `e` outstanding but the `held` ones the caller itself holds (taken so the
    serving version could not be evicted while the caller loaded another beside it)."""
    name = e.spec.name
    with manager.changed:
        if e.state != "ready":
            raise VersionConflict(f"model {name!r} is {e.state}; retry when it is ready", model=name)
        e.state = "switching"
        end = time.monotonic() + timeout_s
        while e.leases > held:
            left = end - time.monotonic()
            if left <= 0:
                e.state = "ready"
                manager.changed.notify_all()
                raise Unavailable(
                    f"model {name!r}: callers kept it busy for {timeout_s:.0f}s; the switch did not happen, "
                    "retry",
                    model=name,
                    retry_after=1.0,
                )
            manager.changed.wait(min(left, 0.05))
    try:
        yield
    finally:
        with manager.changed:
            e.state = "ready" if e.model is not None else "unloaded"
            manager.changed.notify_all()


def install(manager: ModelManager, e: Entry, v: Version, outgoing_key: str, revision: str | None) -> Version:
    """Make `v` the version `e` serves, with `revision` in the entry's spec; returns the outgoing version,
    accounted under `outgoing_key`. Call inside `exclusive`. The ledger keeps the serving version under the
    model's name (unload and eviction use it)."""
    name = e.spec.name
    old = Version(key=outgoing_key, entry=Entry(e.spec), commit=e.model.commit if e.model else None)
    o, n = old.entry, v.entry
    with manager.changed:
        manager.accountant.rename(name, outgoing_key)
        manager.accountant.rename(v.key, name)
        for f in ("model", "scheduler", "pool", "estimated_bytes", "working_bytes", "accounted_bytes"):
            setattr(o, f, getattr(e, f))
            setattr(e, f, getattr(n, f))
        o.quantization_cosine, e.quantization_cosine = e.quantization_cosine, n.quantization_cosine
        o.loaded_at = e.loaded_at
        # the entry's own spec (pinned may have changed meanwhile) with the incoming revision
        e.spec = e.spec.model_copy(update={"revision": revision})
        if e.model is not None:
            e.model.spec = e.spec
        e.loaded_at = e.last_used = manager.clock()
        e.loads += 1
        e.error = None
    return old
