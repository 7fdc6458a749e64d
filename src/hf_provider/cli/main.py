"""The `hfp` command. Heavy imports (torch, transformers) happen inside commands so `hfp --help` is instant."""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hf_provider.cli.cache import register as register_cache_commands
from hf_provider.cli.common import (
    VERBOSE,
    ApiKeyOpt,
    ConfigOpt,
    JsonOpt,
    UrlOpt,
    check_model_name,
    check_port_free,
    connect,
    fail,
    is_loopback,
    is_verbose,
    load,
)
from hf_provider.cli.optimize import register as register_optimize_command
from hf_provider.cli.ray_cmd import register as register_ray_commands
from hf_provider.cli.ray_cmd import serve_on_ray
from hf_provider.cli.report import register as register_report_command
from hf_provider.cli.run_inputs import parse_param, run_payload
from hf_provider.cli.tables import MIN_CUT, WideOpt, print_table
from hf_provider.cli.versions import register as register_version_commands
from hf_provider.units import format_size

app = typer.Typer(
    help="Serve HuggingFace models: one weight set, many tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="List configured and loaded models; load, unload, pin, unpin, swap, rollback, canary on a running "
    "server.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


@app.callback()
def _process(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            envvar="HFP_VERBOSE",
            help="debug logging, with the progress bars and warnings of transformers, huggingface_hub and "
            "onnxruntime that are otherwise off (`hfp serve`: \\[server] log_level debug)",
        ),
    ] = False,
) -> None:
    # The CLI owns its process and terminal: the process-wide switches are set here, never by the library.
    VERBOSE["on"] = verbose
    if verbose:
        import logging

        os.environ["HFP_VERBOSE"] = "1"  # the supervised `hfp serve` child is verbose too
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        return
    from hf_provider.observability.quiet import quiet_third_party

    quiet_third_party()


def _settings(config: Path | None, **overrides: Any):
    from hf_provider.defaults import default_specs

    settings = load(config, **overrides)
    if not settings.models:
        settings.models = default_specs()
    return settings


@app.command()
def run(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="MODEL TASK INPUTS...",
            help="a model (configured name, local folder or Hub id), a task (embeddings, summarization, ...) and "
            "one or more inputs (a JSON object for question-answering; rerank: QUERY DOC...; score: TEXT_1 "
            "TEXT_2...); with --pipeline, the inputs only",
        ),
    ],
    config: ConfigOpt = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values)")] = None,
    as_json: JsonOpt = False,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="run this configured pipeline; --param step.key=value")
    ] = None,
    steps: Annotated[
        bool, typer.Option("--steps", help="with --pipeline: print every step's output")
    ] = False,
) -> None:
    """Run one task on a model and print the result: text, a table of labels, entities or candidates, or a
    vector's dimension and norm; --json for the full result. With --pipeline NAME, run a configured pipeline."""
    from hf_provider.types import IMAGE_TASKS, TASKS

    if pipeline is not None:
        from hf_provider.cli.pipeline_cmd import run_pipeline

        pairs = [parse_param(p) for p in param or []]
        values = [json.loads(i) if i.lstrip().startswith(("{", "[")) else i for i in args]
        return run_pipeline(pipeline, values, config, pairs, as_json=as_json, steps=steps)
    if len(args) < 3:
        fail("hfp run takes MODEL TASK INPUTS... (or --pipeline NAME INPUTS...)", 2)
    model, task, inputs = args[0], args[1], args[2:]

    if task not in TASKS:  # before any model loads: a typo should not cost a model load to find out
        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fail(f"unknown task {task!r}; {hint}tasks: {', '.join(TASKS)}", 2)
    params = dict(parse_param(p) for p in param or [])
    values, payload = run_payload(task, inputs)
    settings = load(config, load_on_start=False)
    from hf_provider.defaults import DEFAULT_MODEL_NAME

    # before the Provider: a misspelt name would be taken for a Hub id and cost a Hub round trip to find out
    check_model_name(model, [*(s.name for s in settings.models), DEFAULT_MODEL_NAME])
    if not settings.models:
        from hf_provider.defaults import default_specs

        settings.models = default_specs()
    from hf_provider.errors import ProviderError
    from hf_provider.provider import Provider

    try:
        with Provider(settings=settings) as provider:
            result = provider.run(model, task, payload, params)
    except ProviderError as e:
        fail(e.message)
    result = _plain(result)  # embeddings are numpy arrays: printed as lists
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        from hf_provider.cli.run_output import show

        shown = inputs if task in IMAGE_TASKS or task == "embeddings" else values  # files by their names
        show(task, shown, result, payload)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    supervise: Annotated[
        bool,
        typer.Option(
            "--supervise/--no-supervise",
            help="run the server in a child process and restart it, with backoff, when it dies",
        ),
    ] = True,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked",
            help="load exactly the commits and files of hfp.lock (beside --config); refuse models it lacks",
        ),
    ] = False,
    on_ray: Annotated[
        bool, typer.Option("--ray", help="serve on Ray Serve: replicas and autoscaling from \\[ray]")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="join this Ray cluster (implies --ray; default: start a local one)"
        ),
    ] = None,
) -> None:
    """Serve the configured models (or the built-in default) over HTTP."""
    import uvicorn

    from hf_provider.cli.banner import log_config, print_banner
    from hf_provider.errors import ConfigError
    from hf_provider.server.factory import build

    try:
        settings = _settings(config)
        if host is not None:
            settings.server.host = host
        if port is not None:
            settings.server.port = port
        if locked:
            settings.locked = True
        if is_verbose():  # `hfp --verbose serve`, or its supervised child (HFP_VERBOSE)
            settings.server.log_level = "debug"
        if on_ray or ray_address:  # Ray's proxy on host:port, replicas each with a Provider (scaling/)
            serve_on_ray(settings, ray_address)
            return
        # before build: it loads the models (seconds to minutes), and uvicorn binds only after that
        check_port_free(settings.server.host, settings.server.port)
        if supervise:  # a bad config or a taken port is reported once, here, and never restarted
            from hf_provider.resilience.respawn import server_argv
            from hf_provider.resilience.respawn import supervise as run_supervised

            args = [*(["--config", str(config)] if config else []), *(["--host", host] if host else [])]
            args += ["--port", str(port)] if port is not None else []
            args += ["--locked"] if locked else []
            raise typer.Exit(run_supervised(server_argv(args)))
        print_banner(settings)
        if settings.server.api_key is None and not is_loopback(settings.server.host):
            typer.echo(
                f"warning: serving on {settings.server.host} without an API key: anyone who can reach this "
                "port can use the models; set HFP_SERVER__API_KEY",
                err=True,
            )
        application = build(settings)
    except ConfigError as e:
        fail(e.message, 2)
    uvicorn.run(
        application,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        log_config=log_config(settings.server.log_level),
        access_log=False,
        loop=settings.server.loop,
        http="auto",
        timeout_keep_alive=settings.server.keep_alive_s,
    )


@models_app.callback()
def models(
    ctx: typer.Context,
    config: ConfigOpt = None,
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Configured models, with their state on a running server when one answers at --url."""
    if ctx.invoked_subcommand is not None:
        return  # the subcommand reads --url/--config/--api-key from ctx.parent.params
    import httpx

    rows: list[dict[str, Any]]
    try:
        # a 401 ends the command in the client's hook: a server that wants a key is running
        with connect(url, config, api_key, timeout=2.0) as client:
            rows = client.get("/v1/admin/models").json()["models"]
    except (httpx.HTTPError, KeyError, ValueError):
        rows = [
            {"name": s.name, "source": s.source, "tasks": s.tasks, "state": "not running"}
            for s in _settings(config).models
        ]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    from rich.console import Console

    cells = {
        "name": [r["name"] for r in rows],
        "state": [r.get("state", "") for r in rows],
        "tasks": [", ".join(r.get("tasks") or []) or "(all supported)" for r in rows],
        "source": [r.get("source", "") for r in rows],
        "commit": [(r.get("commit") or "")[:12] for r in rows],
        "device": [r.get("device") or "" for r in rows],
        "weights": [format_size(w) if (w := r.get("weight_bytes")) is not None else "" for r in rows],
    }
    # Columns blank in every row (commit, device, weights without a server) would only take width from the rest;
    # on a narrow terminal the least useful go next, then tasks and source end in an ellipsis, so that names
    # (typed into other commands) are never cut. --wide: every column, whole.
    shown = [c for c, values in cells.items() if c == "name" or any(values)]
    for drop in () if wide else ("commit", "device", "source"):
        if _min_table_width(cells, shown) <= Console().width:
            break
        shown = [c for c in shown if c != drop]
    table = [[cells[c][i] for c in shown] for i in range(len(rows))]
    print_table(shown, table, wide=wide, cut=_CUT, right=("weights",))
    console = Console()
    for r in rows:  # the reason in full, not folded into a table cell
        if r.get("state") == "failed":
            console.print(
                f"{r['name']} failed: {r.get('error') or 'no reason given'}", markup=False, style="red"
            )


_CUT = ("tasks", "source")  # the long columns, which end in an ellipsis first


def _min_table_width(cells: dict[str, list[str]], shown: list[str]) -> int:
    """The narrowest the table can be drawn with only the _CUT columns cut (to tables.MIN_CUT characters)."""
    widths = [MIN_CUT if c in _CUT else max([len(c), *map(len, cells[c])]) for c in shown]
    return sum(widths) + 2 * (len(shown) - 1)  # two spaces between columns


def _admin(
    ctx: typer.Context, action: str, name: str, url: str | None, config: Path | None, api_key: str | None
) -> None:
    import httpx

    # `hfp models --url U load x` puts the options on the parent: the subcommand's own win, then the parent's
    parent = ctx.parent.params if ctx.parent is not None else {}
    with connect(
        url or parent.get("url"), config or parent.get("config"), api_key or parent.get("api_key"), 600.0
    ) as client:
        url = str(client.base_url).rstrip("/")
        try:
            r = client.post(f"/v1/admin/models/{name}/{action}")
        except httpx.HTTPError as e:
            fail(f"no hfp server answers at {url} ({type(e).__name__}); start one with `hfp serve`")
    if r.status_code >= 400:
        fail(r.json().get("error", {}).get("message", r.text))
    d = r.json()
    typer.echo(f"{d['name']}: {d['state']}" + (" (pinned)" if d.get("pinned") else ""))


@models_app.command("load")
def models_load(
    ctx: typer.Context, name: str, url: UrlOpt = None, config: ConfigOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """Load a configured model on the running server."""
    _admin(ctx, "load", name, url, config, api_key)


@models_app.command("unload")
def models_unload(
    ctx: typer.Context, name: str, url: UrlOpt = None, config: ConfigOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """Unload a model on the running server, giving its memory back."""
    _admin(ctx, "unload", name, url, config, api_key)


@models_app.command("pin")
def models_pin(
    ctx: typer.Context, name: str, url: UrlOpt = None, config: ConfigOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """Never evict this model."""
    _admin(ctx, "pin", name, url, config, api_key)


@models_app.command("unpin")
def models_unpin(
    ctx: typer.Context, name: str, url: UrlOpt = None, config: ConfigOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """Let this model be evicted again (undoes pin)."""
    _admin(ctx, "unpin", name, url, config, api_key)


@app.command()
def errors(
    model: Annotated[str | None, typer.Option(help="only this configured model")] = None,
    since: Annotated[str | None, typer.Option(help="unix seconds, or a look-back such as 15m or 1d")] = None,
    error_class: Annotated[
        str | None, typer.Option("--class", help="only this error class (oom, ...)")
    ] = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Grouped, redacted error reports of a running server, most recently seen first."""
    import httpx

    query = {k: v for k, v in (("model", model), ("since", since), ("class", error_class)) if v is not None}
    with connect(url, config, api_key) as client:
        base = str(client.base_url).rstrip("/")
        try:
            r = client.get("/v1/admin/errors", params=query)
        except httpx.HTTPError as e:
            fail(f"no hfp server answers at {base} ({type(e).__name__}); start one with `hfp serve`")
    if r.status_code >= 400:
        fail(r.json().get("error", {}).get("message", r.text))
    groups = r.json()["groups"]
    if as_json:
        sys.stdout.write(json.dumps(groups) + "\n")
        return
    if not groups:
        typer.echo("no errors reported")
        return
    import datetime

    # one line per group at 80 columns: a short date and "Type: message", cut with an ellipsis; --wide adds
    # the year, seconds and the fingerprint and cuts nothing
    stamp = "%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M"
    columns = ["last seen", "count", "class", "model", "phase", "error", *(["fingerprint"] if wide else [])]
    rows = [
        [
            datetime.datetime.fromtimestamp(g["last_seen"]).strftime(stamp),
            str(g["count"]),
            g["error_class"],
            g["model"] or "-",
            g["phase"] or "-",
            f"{g['exc_type']}: {g['message']}",
            *([g["fingerprint"]] if wide else []),
        ]
        for g in groups
    ]
    print_table(columns, rows, wide=wide, cut=("model", "error"), right=("count",))


def _register_optional() -> None:
    try:
        from hf_provider.cli.top import register
    except ImportError:  # pragma: no cover - top ships with the package; guard keeps --help alive if broken
        return
    register(app)


_register_optional()
register_cache_commands(app)  # hfp lock, hfp outdated, hfp cache ls | verify | prune
register_version_commands(models_app)  # hfp models history | swap | rollback | canary | promote | abort
register_ray_commands(app)  # hfp ray config
register_report_command(app)  # hfp report
register_optimize_command(app)  # hfp optimize


def main() -> None:
    app()


if __name__ == "__main__":
    main()
