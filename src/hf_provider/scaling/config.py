"""`[ray]` in hfp.toml: how the application runs on Ray Serve (replicas, resources per replica, autoscaling).

Plain pydantic, no Ray import: the settings load (and validate) on machines without the `ray` extra.
"""

from __future__ import annotations

from hf_provider.settings.ray import RaySettings

__all__ = ["APP_NAME", "DEPLOYMENT_NAME", "RaySettings"]

APP_NAME = "hfp"
DEPLOYMENT_NAME = "hf-provider"  # what `serve status` and Ray's dashboard show
