"""`hfp models history | swap | rollback | canary | promote | abort`: a model's versions on a running server
(lifecycle/ through /v1/admin/models/{name}/...)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hf_provider.cli.common import ApiKeyOpt, ConfigOpt, JsonOpt, UrlOpt, connect, fail
from hf_provider.cli.tables import WideOpt, print_table


def _call(
    ctx: typer.Context,
    method: str,
    path: str,
    opts: tuple[str | None, Path | None, str | None],
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    url, config, api_key = opts
    # `hfp models --url U swap x` puts the options on the parent: the subcommand's own win, then the parent's
    parent = ctx.parent.params if ctx.parent is not None else {}
    with connect(
        url or parent.get("url"), config or parent.get("config"), api_key or parent.get("api_key"), 600.0
    ) as client:
        base = str(client.base_url).rstrip("/")
        try:
            r = client.request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            fail(f"no hfp server answers at {base} ({type(e).__name__}); start one with `hfp serve`")
    if r.status_code >= 400:
        try:
            fail(r.json().get("error", {}).get("message", r.text))
        except ValueError:
            fail(f"HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


def _short(commit: str | None) -> str:
    return (commit or "")[:12]


def _status(d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(d) + "\n")
        return
    line = f"{d['name']}: {d['state']}, revision {d['revision']} ({_short(d['commit'])})"
    prev = d.get("previous")
    if prev:
        line += f"; previous {prev['revision']} ({_short(prev['commit'])}) warm for {prev['warm_for_s']:.0f}s"
    typer.echo(line)
    canary = d.get("canary")
    if canary:
        c, p = canary["candidate"], canary["primary"]
        typer.echo(
            f"canary: {canary['percent']}% to {c['revision']} ({_short(c['commit'])}): "
            f"{c['stats']['requests']} requests, error rate {c['stats']['error_rate']:.1%}; primary "
            f"{p['stats']['requests']} requests, error rate {p['stats']['error_rate']:.1%}"
        )


def register(models_app: typer.Typer) -> None:
    @models_app.command("history")
    def history(
        ctx: typer.Context,
        name: str,
        limit: Annotated[int, typer.Option(help="newest events shown", min=1, max=1000)] = 50,
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
        wide: WideOpt = False,
    ) -> None:
        """Loads, swaps, rollbacks and canary steps of a model, newest first."""
        events = _call(
            ctx, "GET", f"/v1/admin/models/{name}/history", (url, config, api_key), params={"limit": limit}
        )["events"]
        if as_json:
            sys.stdout.write(json.dumps(events) + "\n")
            return
        if not events:
            typer.echo(f"no history for {name}")
            return
        # one line an event at 80 columns (a short date; long details end in an ellipsis); --wide: all of it
        when = "%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M"
        rows = [
            [
                datetime.datetime.fromtimestamp(ev["ts"]).strftime(when),
                ev["action"],
                ev["revision"] or "",
                _short(ev["commit"]),
                ev["actor"],
                ev["outcome"],
                ev["detail"] or "",
            ]
            for ev in events
        ]
        columns = ["when", "action", "revision", "commit", "by", "outcome", "detail"]
        print_table(
            columns, rows, wide=wide, cut=("revision", "by", "detail"), title=f"{name}: version history"
        )

    @models_app.command("swap")
    def swap(
        ctx: typer.Context,
        name: str,
        revision: Annotated[str, typer.Option("--revision", "-r", help="branch, tag or commit to serve")],
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Serve another revision without downtime (the old one drains, then stays warm for a rollback)."""
        body = {"revision": revision}
        _status(_call(ctx, "POST", f"/v1/admin/models/{name}/swap", (url, config, api_key), body), as_json)

    @models_app.command("rollback")
    def rollback(
        ctx: typer.Context,
        name: str,
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Back to the revision served before the current one."""
        _status(_call(ctx, "POST", f"/v1/admin/models/{name}/rollback", (url, config, api_key)), as_json)

    @models_app.command("canary")
    def canary(
        ctx: typer.Context,
        name: str,
        revision: Annotated[
            str | None, typer.Option("--revision", "-r", help="the candidate; without it: show the canary")
        ] = None,
        percent: Annotated[
            float, typer.Option(help="share of requests to the candidate", min=0.01, max=99.99)
        ] = 10.0,
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Send a share of the model's requests to another revision (then `promote` or `abort`)."""
        opts = (url, config, api_key)
        if revision is None:
            _status(_call(ctx, "GET", f"/v1/admin/models/{name}/versions", opts), as_json)
            return
        body = {"revision": revision, "percent": percent}
        _status(_call(ctx, "POST", f"/v1/admin/models/{name}/canary", opts, body), as_json)

    @models_app.command("promote")
    def promote(
        ctx: typer.Context,
        name: str,
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The canary's candidate serves every request (the primary stays warm for a rollback)."""
        path = f"/v1/admin/models/{name}/canary/promote"
        _status(_call(ctx, "POST", path, (url, config, api_key)), as_json)

    @models_app.command("abort")
    def abort(
        ctx: typer.Context,
        name: str,
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Drop the canary's candidate: every request goes to the primary again."""
        path = f"/v1/admin/models/{name}/canary/abort"
        _status(_call(ctx, "POST", path, (url, config, api_key)), as_json)
