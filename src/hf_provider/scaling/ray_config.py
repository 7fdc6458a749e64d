"""`hfp ray config`: a Ray Serve config file (for `serve deploy` / `serve run`, KubeRay's RayService) that
runs the application of an hfp.toml, checked against Ray's own schema before it is written."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from ray.serve.schema import ServeDeploySchema

from hf_provider.scaling.config import APP_NAME
from hf_provider.scaling.options import deployment_options, push_interval_env
from hf_provider.settings import Settings

IMPORT_PATH = "hf_provider.ray:build_app"
# Never written into a file that is shared and committed: these come from the environment of the replicas
# (HFP_SERVER__API_KEY, HFP_REPORTING__SENTRY_DSN), e.g. a Kubernetes secret.
SECRETS = (("server", "api_key"), ("reporting", "sentry_dsn"))


def without_secrets(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out = copy.deepcopy(config)
    dropped = []
    for table, key in SECRETS:
        if key in out.get(table, {}):
            del out[table][key]
            dropped.append(f"{table}.{key}")
    return out, dropped


def serve_config(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """The Serve config as a mapping. `config` is hfp.toml's contents, handed to every replica as the
    builder's args; `settings` (the same, loaded) gives the deployment's options."""
    runtime_env = copy.deepcopy(settings.ray.runtime_env)
    env = runtime_env.setdefault("env_vars", {})
    for k, v in push_interval_env(settings).items():  # replicas read theirs from their own environment
        env.setdefault(k, v)
    return {
        "proxy_location": "EveryNode",
        "http_options": {
            "host": settings.server.host,
            "port": settings.server.port,
            "keep_alive_timeout_s": settings.server.keep_alive_s,
        },
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "runtime_env": runtime_env,
                "args": {"config": config},
                "deployments": [deployment_options(settings)],
            }
        ],
    }


def validate(document: dict[str, Any]) -> ServeDeploySchema:
    """Ray's own check of a Serve config (what `serve deploy` runs first); raises pydantic's ValidationError."""
    return ServeDeploySchema.model_validate(document)


def render(settings: Settings, config: dict[str, Any]) -> str:
    document = serve_config(settings, config)
    validate(document)
    header = (
        "# Ray Serve config for hf-provider, written by `hfp ray config`. Deploy with `serve deploy` (or as a\n"
        "# KubeRay RayService serveConfigV2). The cluster's image needs hf-provider[ray] installed.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
