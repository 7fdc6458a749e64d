"""Revisions the cache budget must never remove: loaded, locked or swapping.

One process-wide registry, reference counted per (repo_id, commit, reason), because several parties pin
independently: the model manager while a revision is loaded, a swap while its candidate loads beside the old one,
`--locked` for every locked commit. Pruning asks `is_pinned` (or `snapshot`) just before deleting; anything that
holds a pin is skipped. Thread-safe; cheap enough to call on every load and unload.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

Reason = Literal["loaded", "locked", "swapping"] | str

_lock = threading.Lock()
_pins: Counter[tuple[str, str, str]] = Counter()
# Live holders (a ModelManager's "what have I loaded"), asked at prune time: nothing to forget on unload, and a
# manager that is garbage collected drops out by itself (weak references).
_holders: list[weakref.WeakMethod[Callable[[], Iterable[tuple[str, str]]]]] = []


def pin(repo_id: str, commit: str, reason: Reason) -> None:
    with _lock:
        _pins[(repo_id, commit, reason)] += 1


def unpin(repo_id: str, commit: str, reason: Reason) -> None:
    with _lock:
        key = (repo_id, commit, reason)
        if _pins[key] <= 1:
            _pins.pop(key, None)
        else:
            _pins[key] -= 1


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
