"""Load a version at a low CPU priority, so the version serving beside it keeps the CPU.

On a machine whose cores the serving version keeps busy, loading another version (building modules, copying
weights: about 0.5 s of CPU for MiniLM) takes that CPU from requests: bench/swap.py measured p99 3-4x its
baseline during swaps. Linux lets one thread lower its own priority (nice); threads it starts inherit that, so
the incoming version's stage threads are put back to the caller's priority once the load returns, which an
unprivileged process may do only within RLIMIT_NICE: where it may not, the load runs at normal priority.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
LOW = 19


def can_lower() -> bool:
    """Whether a thread can go to nice LOW and its children come back to the current nice."""
    if not sys.platform.startswith("linux"):
        return False
    if os.geteuid() == 0:
        return True
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    current = os.getpriority(os.PRIO_PROCESS, 0)
    # RLIMIT_NICE r allows nice values down to 20 - r
    return soft == resource.RLIM_INFINITY or 20 - soft <= current


def at_low_priority(fn: Callable[[], T]) -> T:
    """`fn()` on a thread of its own at nice LOW; threads it starts are back at the caller's nice afterwards."""
    if not can_lower():
        return fn()
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = {t.ident for t in threading.enumerate()}
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW)
        try:
            out.append(fn())
        except BaseException as e:
            err.append(e)
        finally:
            me = threading.get_ident()
            for t in threading.enumerate():
                if t.ident not in before and t.ident != me and t.native_id is not None:
                    try:
                        os.setpriority(os.PRIO_PROCESS, t.native_id, base)
                    except OSError as e:  # ended meanwhile, or not permitted after all: it stays low
                        log.debug("could not restore the priority of thread %s: %s", t.name, e)

    t = threading.Thread(target=run, name="hfp-version-load", daemon=True)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]
