"""`hfp lock`, `hfp outdated` and `hfp cache ls | verify | prune`: the lockfile and the HF cache, from the CLI.

These work on the files (hfp.lock beside the config, the standard HF cache), not on a running server, so they
need no server and see exactly what `hf cache ls` sees.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hf_provider.cli.common import ConfigOpt, JsonOpt, fail, load
from hf_provider.cli.tables import WideOpt, print_table
from hf_provider.units import format_size

cache_app = typer.Typer(help="The HF cache: list revisions, verify files, prune to the disk budget.")


def _setup(config: Path | None):
    from hf_provider.defaults import default_specs

    settings = load(config)
    if not settings.models:
        settings.models = default_specs()
    lock_file = settings.lock_file or Path.cwd() / "hfp.lock"
    return settings, lock_file


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, time.time() - ts)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _table(
    columns: list[str],
    rows: list[list[str]],
    *,
    right: tuple[str, ...] = (),
    cut: tuple[str, ...] = (),
    wide: bool = False,
) -> None:
    """One line a row at the terminal's width: the `cut` columns end in an ellipsis unless --wide."""
    print_table(columns, rows, right=right, cut=cut, wide=wide)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")

    @app.command("lock")
    def lock_command(config: ConfigOpt = None) -> None:
        """Resolve every configured model to an exact commit and write hfp.lock (file sizes and sha256)."""
        from hf_provider.errors import ProviderError
        from hf_provider.hub.lock import lock_models
        from hf_provider.hub.lockfile import write_lock

        settings = load(config)
        if (
            not settings.models
        ):  # the built-in default is not a choice worth pinning (nor a place for the lock)
            fail(
                "nothing to lock: no models are configured; pass --config hfp.toml whose [models] name Hub "
                "models (hfp.lock is written beside it). No file written."
            )
        _, lock_file = _setup(config)
        try:
            result = lock_models(settings.models)
        except ProviderError as e:
            fail(e.message)
        if not result.entries:
            fail(
                "nothing to lock: every configured model is a local folder ("
                + "; ".join(f"{n}: {why}" for n, why in result.skipped.items())
                + "); a lock pins Hub models to commits. No file written."
            )
        write_lock(lock_file, result.entries)
        rows = [[e.name, e.source, e.revision, e.commit, str(len(e.files))] for e in result.entries.values()]
        _table(["model", "source", "revision", "commit", "files"], rows, right=("files",))
        for name, why in result.skipped.items():
            typer.echo(f"{name}: not locked ({why})")
        typer.echo(f"wrote {lock_file}")

    @app.command("outdated")
    def outdated_command(config: ConfigOpt = None, as_json: JsonOpt = False, wide: WideOpt = False) -> None:
        """Models whose revision has moved on the Hub since hfp.lock was written."""
        from hf_provider.hub.lock import outdated
        from hf_provider.hub.lockfile import read_lock

        settings, lock_file = _setup(config)
        rows = outdated(settings.models, read_lock(lock_file))
        if as_json:
            _emit_json([r.to_dict() for r in rows])
        else:
            cells = [
                [
                    r.name,
                    r.source,
                    r.revision,
                    (r.locked or "-")[:12],
                    (r.upstream or "-")[:12],
                    r.status,
                    r.detail,
                ]
                for r in rows
            ]
            columns = ["model", "source", "revision", "locked", "upstream", "status", "detail"]
            _table(columns, cells, cut=("source", "detail"), wide=wide)
        if any(r.status == "outdated" for r in rows):
            raise typer.Exit(1)  # scripts can gate on it, as on `npm outdated`

    @cache_app.command("ls")
    def cache_ls(config: ConfigOpt = None, as_json: JsonOpt = False, wide: WideOpt = False) -> None:
        """Cached revisions, least recently used first (the order the disk budget removes them in)."""
        data = _ls(config)
        if as_json:
            _emit_json(data)
            return
        rows = [
            [
                r["repo_id"],
                r["commit"][:12],
                ",".join(r["refs"]) or "-",
                format_size(r["size"]),
                _ago(r["last_used"]),
                ",".join(r["protected"]) or "-",
            ]
            for r in data["revisions"]
        ]
        columns = ["repo", "commit", "refs", "size", "last used", "protected"]
        _table(columns, rows, right=("size",), cut=("repo", "refs", "protected"), wide=wide)
        budget = data["budget"]
        typer.echo(
            f"{data['cache_dir']}: {format_size(data['size'])}"
            + (f" of a {format_size(budget)} budget" if budget is not None else " (no [cache] disk_budget)")
        )

    @cache_app.command("verify")
    def cache_verify(
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        wide: WideOpt = False,
        online: Annotated[
            bool,
            typer.Option("--online", help="also compare with the Hub's checksums (verify_repo_checksums)"),
        ] = False,
    ) -> None:
        """Check every cached file against the lock's sha256, else what the Hub advertised at download."""
        data = _verify(config, online)
        if as_json:
            _emit_json(data)
        else:
            rows = [
                [
                    r["repo_id"],
                    r["commit"][:12],
                    str(r["checked"]),
                    str(r["hashed"]),
                    r["status"],
                    r["problems"],
                ]
                for r in data
            ]
            columns = ["repo", "commit", "files", "hashed", "status", "problems"]
            _table(columns, rows, right=("files", "hashed"), cut=("repo", "problems"), wide=wide)
        if any(r["status"] != "ok" for r in data):
            raise typer.Exit(1)

    @cache_app.command("prune")
    def cache_prune(
        config: ConfigOpt = None,
        budget: Annotated[
            str | None,
            typer.Option(help="bytes ('20GiB') or a fraction of the disk; default [cache] disk_budget"),
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would be removed")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Remove least recently used revisions until the cache fits the budget (never a locked one)."""
        from hf_provider.cache.budget import enforce
        from hf_provider.hub.lockfile import read_lock
        from hf_provider.hub.resolve import HubEnv

        settings, lock_file = _setup(config)
        value = budget if budget is not None else settings.cache.disk_budget
        if value is None:
            fail("no budget: pass --budget (e.g. 20GiB or 0.5) or set [cache] disk_budget", 2)
        protect = {(e.source, e.commit): {"locked"} for e in read_lock(lock_file).values()}
        try:
            plan = enforce(HubEnv.current().cache_dir, value, protect=protect, dry_run=dry_run)
        except ValueError as e:
            fail(str(e), 2)
        removed = [{"repo_id": r.repo_id, "commit": r.commit, "size": r.size} for r in plan.remove]
        if as_json:
            _emit_json(
                {
                    "budget": plan.budget,
                    "before": plan.total,
                    "after": plan.after,
                    "within": plan.within,
                    "dry_run": dry_run,
                    "removed": removed,
                }
            )
            return
        verb = "would remove" if dry_run else "removed"
        for r in plan.remove:
            typer.echo(f"{verb} {r.repo_id}@{r.commit[:12]} ({format_size(r.size)})")
        typer.echo(
            f"cache {format_size(plan.total)} -> {format_size(plan.after)} (frees {format_size(plan.freed)}; "
            f"blobs a kept revision shares stay), budget {format_size(plan.budget)}"
            + ("" if plan.within else ": still over; the rest is locked or in use")
        )


def _ls(config: Path | None) -> dict[str, Any]:
    from huggingface_hub import scan_cache_dir

    from hf_provider.cache.budget import budget_bytes, revisions
    from hf_provider.cache.state import state_for
    from hf_provider.hub.lockfile import read_lock
    from hf_provider.hub.resolve import HubEnv

    settings, lock_file = _setup(config)
    cache_dir = HubEnv.current().cache_dir
    budget = settings.cache.disk_budget
    out: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "budget": budget_bytes(budget, cache_dir) if budget is not None else None,
        "size": 0,
        "revisions": [],
    }
    if not cache_dir.exists():
        return out
    info = scan_cache_dir(cache_dir)
    protect = {(e.source, e.commit): {"locked"} for e in read_lock(lock_file).values()}
    used = state_for(cache_dir).last_used()
    out["size"] = info.size_on_disk
    out["revisions"] = [
        {
            "repo_id": r.repo_id,
            "commit": r.commit,
            "refs": list(r.refs),
            "size": r.size,
            "last_used": used.get((r.repo_id, r.commit)),
            "protected": list(r.protected),
        }
        for r in revisions(info, state_for(cache_dir), protect)
    ]
    return out


def _verify(config: Path | None, online: bool) -> list[dict[str, Any]]:
    from huggingface_hub import scan_cache_dir

    from hf_provider.cache.integrity import expected_files, verify
    from hf_provider.cache.state import state_for
    from hf_provider.hub.lockfile import read_lock
    from hf_provider.hub.resolve import HubEnv

    _, lock_file = _setup(config)
    env = HubEnv.current()
    if not env.cache_dir.exists():
        return []
    locked = {(e.source, e.commit): e for e in read_lock(lock_file).values()}
    state = state_for(env.cache_dir)
    rows = []
    for repo in sorted(scan_cache_dir(env.cache_dir).repos, key=lambda r: r.repo_id):
        for rev in sorted(repo.revisions, key=lambda r: r.commit_hash):
            entry = locked.get((repo.repo_id, rev.commit_hash))
            expected = expected_files(repo.repo_id, rev.commit_hash, rev.snapshot_path, env.cache_dir)
            if entry is not None:  # the lock's sha256 wins for the files it lists that are here
                lock_exp = expected_files(
                    repo.repo_id, rev.commit_hash, rev.snapshot_path, env.cache_dir, entry
                )
                expected.update({p: e for p, e in lock_exp.items() if (rev.snapshot_path / p).exists()})
            verdicts = verify(rev.snapshot_path, expected, state)
            problems = [f"{v.path}: {v.reason}" for v in verdicts if not v.ok]
            if online:
                problems += _online_problems(repo.repo_id, rev.commit_hash, env)
            rows.append(
                {
                    "repo_id": repo.repo_id,
                    "commit": rev.commit_hash,
                    "checked": len(verdicts),
                    "hashed": sum(v.hashed for v in verdicts),
                    "locked": entry is not None,
                    "status": "ok" if not problems else "corrupt",
                    "problems": "; ".join(problems),
                }
            )
    return rows


def _online_problems(repo_id: str, commit: str, env) -> list[str]:
    from huggingface_hub import HfApi

    from hf_provider.hub.resolve import _hub_online

    try:
        with _hub_online():
            result = HfApi(endpoint=env.endpoint).verify_repo_checksums(
                repo_id, revision=commit, cache_dir=env.cache_dir
            )
    except Exception as e:  # the Hub unreachable: say so for this revision, keep the offline verdicts
        return [f"online check failed ({type(e).__name__})"]
    return [f"{m['path']}: {m['algorithm']} mismatch (Hub)" for m in result.mismatches]
