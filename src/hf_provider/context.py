"""Context variables every layer reads: the HTTP request being served and its trace.

A leaf (standard library only), so the scheduler, the reporter and the server read the same variables without
importing each other. asyncio copies them into tasks and `asyncio.to_thread`; stage threads get what a Request
captured at its creation.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: The id of the HTTP request being served (set by server/middleware.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("hfp_request_id", default=None)

#: The trace of what this task or thread is doing for one HTTP request (or Python call): an
#: observability.tracing.Trace, or None when not traced. Typed Any here so this leaf imports nothing.
TRACE: ContextVar[Any] = ContextVar("hfp_trace", default=None)
