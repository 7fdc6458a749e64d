"""Keep the cyclic garbage collector's full passes short while serving.

A process that has imported torch and transformers and loaded a model holds some hundreds of thousands of
container objects that live as long as it does. Every full (generation 2) collection walks all of them while
holding the GIL: 0.3-0.65 s on 2 cores, about every 5 s under `bench/overload.py`, during which no forward pass,
no event loop and no health probe makes progress (it was the whole cause of that bench's 504s). `gc.freeze()`
moves what is alive now into a permanent generation that collections skip (the pattern of gunicorn's preload and
Instagram's web servers), so a full pass walks only what requests created since.

A frozen object is never collected, even once it is garbage: an unloaded model's reference cycles would stay in
memory. So `release` unfreezes first, collects everything once (at unload, where a pause is expected), and
freezes what is still alive again. Process-wide and reversible, so done only where `MemorySettings.freeze_heap`
says (by default the server's processes, not a library's host program); without it an unload only collects,
leaving whatever the host program froze itself as it was.
"""

from __future__ import annotations

import gc
import threading

# Freezing, unfreezing and collecting from two loader threads at once would interleave their halves.
_lock = threading.Lock()


def freeze() -> None:
    """After a load: collect the load's garbage, then freeze everything alive (the model included)."""
    with _lock:
        gc.collect()
        gc.freeze()


def collect(refreeze: bool) -> None:
    """After an unload. `refreeze` (the heap is frozen after loads here): collect with nothing frozen, so the
    unloaded model's cycles are freed too, then freeze what is still alive again. Otherwise a plain collection:
    what is frozen was frozen by the host program, not ours to thaw."""
    with _lock:
        if not refreeze:
            gc.collect()
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def frozen() -> int:
    """Objects in the permanent generation (reported by the admin view)."""
    return gc.get_freeze_count()
