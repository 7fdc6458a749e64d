"""Revisions the cache budget must never remove: loaded, locked or swapping.

One process-wide registry, reference counted per (repo_id, commit, reason), because several parties pin
independently: the model manager while a revision is loaded, a swap while its candidate loads beside the old one,
`--locked` for every locked commit. Pruning asks `is_pinned` (or `snapshot`) just before deleting; anything that
holds a pin is skipped. Thread-safe; cheap enough to call on every load and unload.

Other processes prune the same cache too (`hfp cache prune`, a second server), so every change is also published
to the cache's shared state (cache/state.py `holds`), and `everywhere` adds what live processes hold to ours.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hf_provider.cache.state import CacheState

log = logging.getLogger(__name__)

Reason = Literal["loaded", "locked", "swapping"] | str

_lock = threading.Lock()
_pins: Counter[tuple[str, str, str]] = Counter()
# Live holders (a ModelManager's "what have I loaded"), asked at prune time: nothing to forget on unload, and a
# manager that is garbage collected drops out by itself (weak references).
_published: set[int] = set()  # the states (by id) this process has written rows to and not cleared since
_holders: list[weakref.WeakMethod[Callable[[], Iterable[tuple[str, str]]]]] = []


def pin(repo_id: str, commit: str, reason: Reason) -> None:
    with _lock:
        _pins[(repo_id, commit, reason)] += 1
    publish()


def unpin(repo_id: str, commit: str, reason: Reason) -> None:
    with _lock:
        key = (repo_id, commit, reason)
        if _pins[key] <= 1:
            _pins.pop(key, None)
        else:
            _pins[key] -= 1
    publish()


def publish(state: CacheState | None = None) -> None:
    """Write what this process holds now to the shared state of the cache in use (`state`, else the current Hub
    cache's). Called on every pin change and by the model manager after each load and unload. Best effort: a
    read-only cache folder must not fail a load; a prune elsewhere then only sees what other processes hold."""
    try:
        held = snapshot()
        if state is None:
            from hf_provider.cache.hubenv import HubEnv
            from hf_provider.cache.state import state_for

            if not held and not _published:  # only local folders so far: no cache state to create or clear
                return
            state = state_for(HubEnv.current().cache_dir)
        state.publish_holds(os.getpid(), _started(), held)
        if held:
            _published.add(id(state))
        else:
            _published.discard(id(state))
    except Exception as exc:  # sqlite3 errors, an unwritable folder
        log.debug("could not publish the cache revisions this process holds: %s", exc)


def everywhere(state: CacheState) -> dict[tuple[str, str], set[str]]:
    """`snapshot()` plus what other live processes using the same cache hold."""
    out = snapshot()
    for key, why in state.held_elsewhere(os.getpid()).items():
        out.setdefault(key, set()).update(why)
    return out


@functools.cache
def _started() -> float:
    import psutil

    return psutil.Process().create_time()


@contextmanager
def pinned(repo_id: str, commit: str, reason: Reason = "swapping") -> Iterator[None]:
    """Hold a pin for the duration of a block (a swap, a canary's candidate load)."""
    pin(repo_id, commit, reason)
    try:
        yield
    finally:
        unpin(repo_id, commit, reason)


def reasons(repo_id: str, commit: str) -> set[str]:
    return snapshot().get((repo_id, commit), set())


def is_pinned(repo_id: str, commit: str) -> bool:
    return bool(reasons(repo_id, commit))


def register_holder(method: Callable[[], Iterable[tuple[str, str]]]) -> None:
    """Register a bound method returning the (repo_id, commit) pairs its object has loaded now."""
    with _lock:
        _holders.append(weakref.WeakMethod(method))  # type: ignore[arg-type]


def snapshot() -> dict[tuple[str, str], set[str]]:
    """(repo_id, commit) -> reasons, for everything pinned now (explicit pins and what holders have loaded)."""
    out: dict[tuple[str, str], set[str]] = {}
    with _lock:
        for (repo, c, r), n in _pins.items():
            if n > 0:
                out.setdefault((repo, c), set()).add(r)
        _holders[:] = [h for h in _holders if h() is not None]
        holders = [h() for h in _holders]
    for h in holders:  # a holder that raises aborts the prune: better no pruning than removing what it holds
        if h is not None:
            for repo, c in h():
                out.setdefault((repo, c), set()).add("loaded")
    return out


__all__ = ["is_pinned", "pin", "pinned", "reasons", "register_holder", "snapshot", "unpin"]
