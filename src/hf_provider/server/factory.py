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


def build(settings: Settings) -> FastAPI:
    from hf_provider.server.app import create_app

    observer = make_observer(settings)
    provider = Provider(settings=settings, observer=observer, allow_adhoc=False)
    observer.model_bytes = provider.manager.model_bytes
    observer.in_flight_source = provider.manager.in_flight_by_model
    return create_app(provider)
