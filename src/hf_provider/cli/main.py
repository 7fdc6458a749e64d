"""The `hfp` command. Heavy imports (torch, transformers) happen inside commands so `hfp --help` is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Serve HuggingFace models: one weight set, many tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="List configured and loaded models; load, unload, pin, unpin on a running server.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="hfp.toml with [[models]] tables", exists=True, dir_okay=False),
]
UrlOpt = Annotated[str, typer.Option("--url", help="a running hfp server")]


def _settings(config: Path | None, **overrides: Any):
    from hf_provider.defaults import default_specs
    from hf_provider.settings import load_settings

    settings = load_settings(config, **overrides)
    if not settings.models:
        settings.models = default_specs()
    return settings


def _fail(message: str, code: int = 1) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _parse_param(raw: str) -> tuple[str, Any]:
    if "=" not in raw:
        _fail(f"--param takes key=value, got {raw!r}", 2)
    key, value = raw.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="configured name, local folder or Hub id")],
    task: Annotated[str, typer.Argument(help="embeddings, text-classification, summarization, ...")],
    inputs: Annotated[
        list[str], typer.Argument(help="one or more inputs; a JSON object for question-answering")
    ],
    config: ConfigOpt = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Run one task on a model and print the result."""
    from hf_provider.errors import ProviderError
    from hf_provider.provider import Provider

    params = dict(_parse_param(p) for p in param or [])
    values: list[Any] = [json.loads(i) if i.lstrip().startswith("{") else i for i in inputs]
    payload: Any = values[0] if len(values) == 1 else values
    settings = _settings(config, load_on_start=False)
    try:
        with Provider(settings=settings) as provider:
            result = provider.run(model, task, payload, params)
    except ProviderError as e:
        _fail(e.message)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        from rich import print as rprint

        rprint(result)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
) -> None:
    """Serve the configured models (or the built-in default) over HTTP."""
    import uvicorn

    from hf_provider.errors import ConfigError
    from hf_provider.server.factory import build

    try:
        settings = _settings(config)
        if host is not None:
            settings.server.host = host
        if port is not None:
            settings.server.port = port
        application = build(settings)
    except ConfigError as e:
        _fail(e.message, 2)
    uvicorn.run(
        application,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        access_log=False,
        loop=settings.server.loop,
        http="auto",
    )


@models_app.callback()
def models(
    ctx: typer.Context,
    config: ConfigOpt = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Configured models, with their state on a running server when one answers at --url."""
    if ctx.invoked_subcommand is not None:
        return
    import httpx

    rows: list[dict[str, Any]]
    try:
        rows = httpx.get(f"{url}/v1/admin/models", timeout=2.0).json()["models"]
    except (httpx.HTTPError, KeyError, ValueError):
        rows = [
            {"name": s.name, "source": s.source, "tasks": s.tasks, "state": "not running"}
            for s in _settings(config).models
        ]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "state", "tasks", "source", "commit", "device", "weight bytes")
    for r in rows:
        table.add_row(
            r["name"],
            r.get("state", ""),
            ", ".join(r.get("tasks") or []) or "(all supported)",
            r.get("source", ""),
            (r.get("commit") or "")[:12],
            r.get("device") or "",
            str(r.get("weight_bytes") or ""),
        )
    Console().print(table)


def _admin(action: str, name: str, url: str) -> None:
    import httpx

    try:
        r = httpx.post(f"{url}/v1/admin/models/{name}/{action}", timeout=600.0)
    except httpx.HTTPError as e:
        _fail(f"no hfp server answers at {url} ({type(e).__name__}); start one with `hfp serve`")
    if r.status_code >= 400:
        _fail(r.json().get("error", {}).get("message", r.text))
    d = r.json()
    typer.echo(f"{d['name']}: {d['state']}" + (" (pinned)" if d.get("pinned") else ""))


@models_app.command("load")
def models_load(name: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """Load a configured model on the running server."""
    _admin("load", name, url)


@models_app.command("unload")
def models_unload(name: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """Unload a model on the running server, giving its memory back."""
    _admin("unload", name, url)


@models_app.command("pin")
def models_pin(name: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """Never evict this model."""
    _admin("pin", name, url)


@models_app.command("unpin")
def models_unpin(name: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    _admin("unpin", name, url)


def _register_optional() -> None:
    try:
        from hf_provider.cli.top import register
    except ImportError:  # pragma: no cover - top ships with the package; guard keeps --help alive if broken
        return
    register(app)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
