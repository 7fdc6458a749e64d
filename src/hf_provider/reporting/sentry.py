"""Optional forwarding of error reports to Sentry (`[reporting] sentry_dsn`; the `sentry` extra: sentry-sdk).

Every sentry-sdk call lives here. The event is built from the already redacted report, with our fingerprint,
so Sentry groups exactly as GET /v1/admin/errors does; no request data, no default integrations (they would
capture logs, locals and request bodies on their own), no PII. The client is our own, not the global hub: an
application embedding hf-provider keeps its own Sentry setup.
"""

from __future__ import annotations

import logging
from typing import Any

from hf_provider.reporting.reports import Report

log = logging.getLogger(__name__)


class SentryForwarder:
    def __init__(self, dsn: str, *, transport: Any = None, environment: str | None = None) -> None:
        try:
            import sentry_sdk
        except ImportError as e:
            raise ImportError(
                "[reporting] sentry_dsn needs sentry-sdk: pip install 'hf-provider[sentry]'"
            ) from e
        options: dict[str, Any] = {
            "default_integrations": False,
            "auto_enabling_integrations": False,
            "include_local_variables": False,
            "max_breadcrumbs": 0,
            "environment": environment,
        }
        if transport is not None:
            options["transport"] = transport
        self.client = sentry_sdk.Client(dsn, **options)

    def __call__(self, report: Report) -> None:
        event = {
            "level": "error",
            "logger": "hf_provider.reporting",
            "message": report.message,
            "fingerprint": [report.fingerprint],
            "exception": {"values": [{"type": report.exc_type, "value": report.message}]},
            "tags": {
                "error_class": report.error_class,
                "model": report.model,
                "phase": report.phase,
                "revision": report.revision or "",
            },
            "extra": report.sample(),
        }
        self.client.capture_event(event)  # no scope: nothing of the process's own Sentry setup is mixed in

    def close(self) -> None:
        self.client.close(timeout=2.0)
