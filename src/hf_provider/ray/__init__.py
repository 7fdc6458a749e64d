"""hf-provider on Ray Serve (the optional extra: pip install "hf-provider[ray]").

    from hf_provider.ray import application
    serve.run(application(load_settings("hfp.toml")), route_prefix="/")

`build_app` is the application builder a Serve config file names (`import_path: hf_provider.ray:build_app`,
written by `hfp ray config`). Every Ray call lives in hf_provider.scaling.ray_serve.
"""

from __future__ import annotations

from hf_provider.scaling.ray_serve import HFProviderReplica, application, build_app

__all__ = ["HFProviderReplica", "application", "build_app"]
