"""Build the served application from settings: observer + provider + app. Used by `hfp serve` and tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastapi import FastAPI

from hf_provider.provider import Provider
from hf_provider.settings import Settings


def instance_home(settings: Settings) -> Path:
    """The state folder of one server: HFP_HOME/servers/<host>-<port>. History and stats belong to the server
    that recorded them; two servers on one host (or a restarted one on another port) never mix."""
    host = re.sub(r"[^A-Za-z0-9.]+", "_", settings.server.host) or "_"
    port = settings.server.port or f"pid{os.getpid()}"  # port 0: the OS picks one, unknown until bound
    return settings.home / "servers" / f"{host}-{port}"


def make_observer(settings: Settings):
    from hf_provider.observability.observer import Observer

    return Observer(
        home=instance_home(settings) if settings.history_enabled else None,
        metrics_enabled=settings.metrics_enabled,
        raw_retention_s=settings.raw_retention,
        rollup_retention_s=settings.rollup_retention,
    )


def make_reporter(settings: Settings):
    """Error reports in the server's home (errors.db), or None when `[reporting] enabled = false`."""
    from hf_provider.reporting.reporter import Reporter
    from hf_provider.reporting.store import ErrorStore

    rs = settings.reporting
    if not rs.enabled:
        return None
    forward = None
    if rs.sentry_dsn is not None:
        from hf_provider.reporting.sentry import SentryForwarder

        forward = SentryForwarder(rs.sentry_dsn.get_secret_value())
    return Reporter(
        ErrorStore(instance_home(settings) / "errors.db"),
        retention_s=rs.retention,
        include_inputs=rs.include_inputs,
        max_groups=rs.max_groups,
        forward=forward,
    )


def build(settings: Settings) -> FastAPI:
    from hf_provider.server.app import create_app

    observer = make_observer(settings)
    reporter = make_reporter(settings)
    from hf_provider.lifecycle.history import VersionHistory

    history = VersionHistory(instance_home(settings) / "versions.db")  # loads, swaps, rollbacks of this one
    provider = Provider(
        settings=settings, observer=observer, allow_adhoc=False, reporter=reporter, history=history
    )
    observer.model_bytes = provider.admin.model_bytes
    observer.in_flight_source = provider.admin.in_flight_by_model
    return create_app(provider)
