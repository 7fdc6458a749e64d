"""Fallback chains (a model's `fallbacks = ["other", ...]`): the pure decision, kept apart from the Provider.

A request switches to a fallback only when its primary refused it before queueing it, for a reason of the
primary's own health: its circuit breaker is open, it is overloaded at admission, its load failed (or does not
fit the memory budget), or its worker crashed. The request was never computed, so serving it elsewhere never
computes it twice. A client error (4xx) never switches: the fallback would refuse the same request.

The walk tries the fallbacks in order, skipping those that do not serve the task or whose breaker is open (they
would only refuse), and ends with the first that takes the request; when none does, the last refusal is raised.
One hop only: a fallback's own fallbacks are not followed (configuration forbids cycles, see spec.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from hf_provider import errors as E

CIRCUIT_OPEN, OVERLOADED, LOAD_FAILED, WORKER_CRASHED = (
    "circuit_open",
    "overloaded",
    "load_failed",
    "worker_crashed",
)

# Refusals before the request was queued, and the reason each gives (the x-hfp-fallback-reason header and the
# hfp_fallbacks_total label). Most specific first: CircuitOpen and Overloaded are both Unavailable.
# A model marked failed after a fatal device error is a crashed worker that cannot restart by itself.
_SWITCH: tuple[tuple[type[BaseException], str], ...] = (
    (E.CircuitOpen, CIRCUIT_OPEN),
    (E.WorkerCrashed, WORKER_CRASHED),
    (E.DeviceFailed, WORKER_CRASHED),
    (E.Overloaded, OVERLOADED),
    (E.ModelLoadError, LOAD_FAILED),
    (E.MemoryBudgetExceeded, LOAD_FAILED),
)


def reason(exc: BaseException) -> str | None:
    """Why `exc` sends the request to a fallback, or None when it must be answered as it is."""
    for cls, why in _SWITCH:
        if isinstance(exc, cls):
            return why
    return None


class Served(NamedTuple):
    value: Any
    model: str  # the model that took the request
    reason: str | None  # why the primary did not; None when it did


def serve(
    model: str,
    fallbacks: Sequence[str],
    attempt: Callable[[str], Any],
    *,
    serves: Callable[[str], bool],
    is_open: Callable[[str], bool],
    on_refused: Callable[[str, E.ProviderError], None] | None = None,
) -> Served:
    """`attempt(model)`, else `attempt` on the first fallback that serves the task, is not open, and takes it.

    `attempt(name)` queues the request on `name` or raises. `on_refused(name, exc)` hears of each refusal that
    was passed over for a fallback (so it is still counted and reported for the model that refused); the error
    finally raised is left to the caller. A fallback's client error (other than not serving the task) is raised
    at once: the request itself is at fault, and the next fallback would refuse it as well.
    """
    try:
        return Served(attempt(model), model, None)
    except E.ProviderError as exc:
        why = reason(exc)
        if why is None or not fallbacks:
            raise
        last, last_name = exc, model
    for name in fallbacks:
        if not serves(name) or is_open(name):
            continue
        if on_refused is not None:
            on_refused(last_name, last)
        try:
            return Served(attempt(name), name, why)
        except E.TaskNotSupported as e:
            last, last_name = e, name
        except E.ProviderError as e:
            if reason(e) is None:
                raise
            last, last_name = e, name
    raise last
