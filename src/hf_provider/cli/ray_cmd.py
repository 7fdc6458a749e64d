"""`hfp serve --ray` and `hfp ray config`: the application on Ray Serve (hf_provider.scaling). Ray is imported
only inside the commands, so `hfp --help` stays instant and works without the `ray` extra."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hf_provider.cli.common import check_port_free, fail, is_loopback, load

RAY_HINT = 'Ray Serve is not installed: pip install "hf-provider[ray]"'


def _ray_modules() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        fail(RAY_HINT, 2)


def serve_on_ray(settings: Any, address: str | None) -> None:
    """The body of `hfp serve --ray`: settings are loaded and the CLI's --host/--port applied."""
    _ray_modules()
    if address is None:  # a local proxy binds here; on a cluster the proxies bind on its nodes
        check_port_free(settings.server.host, settings.server.port)
    if settings.server.api_key is None and not is_loopback(settings.server.host):
        typer.echo(
            f"warning: serving on {settings.server.host} without an API key; set HFP_SERVER__API_KEY",
            err=True,
        )
    from hf_provider.scaling.ray_run import serve_forever

    serve_forever(settings, address)


def _raw_config(config: Path | None) -> dict[str, Any]:
    from hf_provider.settings import _read_config

    return _read_config(config)


def register(app: typer.Typer) -> None:
    ray_app = typer.Typer(
        help="Run on Ray Serve: write the Serve config file for a Ray cluster; show what runs where."
    )
    app.add_typer(ray_app, name="ray")

    @ray_app.command("config")
    def config_cmd(
        config: Annotated[
            Path | None,
            typer.Option("--config", "-c", help="hfp.toml to deploy", exists=True, dir_okay=False),
        ] = None,
        host: Annotated[
            str | None, typer.Option(help="address Ray's proxies bind on the cluster (e.g. 0.0.0.0)")
        ] = None,
        port: Annotated[int | None, typer.Option(help="port of Ray's proxies")] = None,
    ) -> None:
        """Print a Ray Serve config (for `serve deploy`, `serve run`, KubeRay) that serves hfp.toml's models
        with its [ray] replicas and autoscaling; checked against Ray's config schema first."""
        _ray_modules()
        from pydantic import ValidationError

        from hf_provider.scaling.ray_config import render, without_secrets

        raw, dropped = without_secrets(_raw_config(config))
        settings = load(config)
        if host is not None:
            settings.server.host = host
        if port is not None:
            settings.server.port = port
        try:
            text = render(settings, raw)
        except ValidationError as e:  # our options broke Ray's schema: a bug of ours or a Ray change
            fail(f"Ray rejected the generated config: {e}")
        if dropped:
            typer.echo(
                f"note: {', '.join(dropped)} left out of the file; give them to the replicas as HFP_ "
                "environment variables (e.g. runtime_env env_vars from a secret)",
                err=True,
            )
        sys.stdout.write(text)

    @ray_app.command("status")
    def status_cmd(
        address: Annotated[
            str | None,
            typer.Option(
                help="the cluster's address (host:port of its head); default: the Ray on this machine"
            ),
        ] = None,
        app_name: Annotated[str, typer.Option("--app", help="the Serve application's name")] = "hfp",
        as_json: Annotated[bool, typer.Option("--json", help="the figures as JSON")] = False,
    ) -> None:
        """The application on a running Ray cluster: its deployment, and per node its replicas and their
        models (no dashboard address or token needed: read through Serve's controller as a Ray driver)."""
        _ray_modules()
        import json

        from hf_provider.scaling.ray_status import collect, connected, render

        try:
            with connected(address):
                data = collect(app_name)
        except ConnectionError as e:
            where = f"at {address}" if address else "on this machine"
            fail(f"no Ray cluster reached {where}: {e}; start one or pass --address HEAD:PORT", 1)
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            return
        for line in render(data):
            typer.echo(line)
