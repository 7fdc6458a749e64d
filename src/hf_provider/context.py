"""Context variables every layer reads: the HTTP request being served and its trace.

A leaf (standard library only), so the scheduler, the reporter and the server read the same variables without
importing each other. asyncio copies them into tasks and `asyncio.to_thread`; stage threads get what a Request
captured at its creation.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any


class Call:
    """One HTTP request as the layers below the server see it: whether its outcome is recorded already.

    The Provider records what reaches it (a queued request at its settlement, a refusal at once); the server
    records only what ended before that (a body that is not JSON, a bad header, load shedding at the door). This
    flag, one per HTTP request, is how the server knows which, so every request is counted exactly once."""

    __slots__ = ("arrived", "recorded")

    def __init__(self, arrived: float | None = None) -> None:
        self.recorded = False
        # time.monotonic() at its arrival: its deadline counts from here (a deadline message states its length)
        self.arrived = time.monotonic() if arrived is None else arrived


#: The id of the HTTP request being served (set by server/middleware.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("hfp_request_id", default=None)

#: The trace of what this task or thread is doing for one HTTP request (or Python call): an
#: observability.tracing.Trace, or None when not traced. Typed Any here so this leaf imports nothing.
TRACE: ContextVar[Any] = ContextVar("hfp_trace", default=None)

#: (pipeline, step) of the pipeline step a request belongs to (pipelines/run.py sets it in the step's task): the
#: Request keeps it, so its error report names the pipeline and step. None outside a pipeline.
PIPELINE_STEP: ContextVar[tuple[str, str] | None] = ContextVar("hfp_pipeline_step", default=None)

#: The HTTP request being served, set by the server's outermost middleware; None for a Python call.
CALL: ContextVar[Call | None] = ContextVar("hfp_call", default=None)


def mark_recorded() -> None:
    """The current HTTP request's outcome is (or will be, at settlement) recorded by the layer calling this."""
    if (call := CALL.get()) is not None:
        call.recorded = True


#: How the client being served names the handlers' parameters ({"max_new_tokens": "max_tokens", "inputs":
#: "input"} on the OpenAI routes): an error raised while parsing its request names what the client sent.
CLIENT_NAMES: ContextVar[dict[str, str]] = ContextVar("hfp_client_names", default={})  # noqa: B039
