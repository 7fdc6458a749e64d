"""`hfp optimize NAME`: measure the candidate backends for one model on this machine, print the table, record
the choice in hfp.lock (with the hardware and library versions) and in the `optimize = "auto"` result cache."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hf_provider.cli.common import ConfigOpt, check_model_name, fail, load
from hf_provider.units import format_size


def _spec(name: str, task: str | None, config: Path | None):
    from hf_provider.defaults import DEFAULT_MODEL_NAME, default_specs
    from hf_provider.spec import ModelSpec

    settings = load(config, load_on_start=False)
    specs = list(settings.models) or default_specs()
    if name == DEFAULT_MODEL_NAME and not any(s.name == name for s in specs):
        specs += default_specs()
    check_model_name(name, [s.name for s in specs])
    configured = next((s for s in specs if s.name == name), None)
    # a folder or Hub id named with --task serves that task alone, as `hfp run` would load it
    return configured or ModelSpec(name=name, source=name, tasks=[task] if task else [])


def record_in_lock(lock: Path, report: Any, resolved: Any) -> tuple[bool, str]:
    """Write the choice into the model's lock entry (creating the entry from its snapshot when the lock lacks
    it). A plain local folder has no commit to lock: (False, why)."""
    from hf_provider.hub.lockfile import entry_from_snapshot, read_lock, update_entry
    from hf_provider.optimize.env import hardware_text, versions_text

    if not resolved.commit:
        return (
            False,
            "a local folder has no Hub commit to lock; the choice is kept in the optimize cache only",
        )
    optimized = (
        ("hardware", hardware_text(report.hardware)),
        ("task", report.task),
        ("variant", report.chosen),
        ("versions", versions_text(report.versions)),
    )
    entry = read_lock(lock).get(report.model)
    if entry is None or entry.commit != resolved.commit:
        entry = entry_from_snapshot(
            report.model, resolved.source, resolved.revision or "main", resolved.commit, resolved.path
        )
    update_entry(lock, dataclasses.replace(entry, optimized=optimized))
    return True, str(lock)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from hf_provider.optimize.env import hardware_text

    eager = report.row("eager")
    t = Table(title=f"{report.model} ({report.task}) on {hardware_text(report.hardware)}")
    for col in (
        "variant",
        "precision",
        "p50 ms @1",
        f"items/s @{report.max_batch}",
        "vs eager",
        "accuracy",
        "memory",
    ):
        t.add_column(col, justify="left" if col in ("variant", "precision") else "right")
    t.add_column("build s", justify="right")
    t.add_column("verdict")
    for r in report.variants:
        fast = r.throughput_per_s and eager.throughput_per_s
        ratio = f"{r.throughput_per_s / eager.throughput_per_s:.2f}x" if fast else "-"
        verdict = (
            "[green]accepted[/]"
            if r.accepted
            else f"[red]{'unavailable' if not r.available else 'refused'}[/]"
        )
        if r.reason:
            verdict += f": {r.reason}"
        if r.name == report.chosen:
            verdict += " [bold](chosen)[/]"
        t.add_row(
            r.name,
            r.precision or "-",
            _fmt(r.latency_ms_p50, ".2f"),
            _fmt(r.throughput_per_s, ".1f"),
            ratio,
            "-" if r.accuracy is None else f"{r.accuracy:.4f} {r.accuracy_metric or ''}".strip(),
            format_size(r.memory_bytes),
            _fmt(r.build_s, ".2f"),
            verdict,
        )
    Console(width=200).print(t)


def register(app: typer.Typer) -> None:
    @app.command()
    def optimize(
        name: Annotated[str, typer.Argument(help="configured name, local folder or Hub id")],
        task: Annotated[
            str | None, typer.Option(help="the task to measure (default: the model's first)")
        ] = None,
        config: ConfigOpt = None,
        candidates: Annotated[
            str | None,
            typer.Option(help="comma-separated variants to try (default: all): onnx,openvino,int8,..."),
        ] = None,
        repeats: Annotated[int, typer.Option(min=1, help="timed batch-1 calls per variant")] = 20,
        lock: Annotated[bool, typer.Option(help="record the choice in hfp.lock beside --config")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Measure eager, SDPA, torch.compile, ONNX Runtime, OpenVINO, int8 and (on GPU) fp16/bf16 for one model;
        keep the fastest that passes the accuracy guard."""
        from hf_provider.errors import ProviderError
        from hf_provider.hub.lockfile import lock_path_for
        from hf_provider.hub.resolve import resolve
        from hf_provider.optimize import store
        from hf_provider.variants import VARIANTS

        names = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
        unknown = [c for c in names or [] if c not in VARIANTS]
        if unknown:
            fail(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}", 2)
        spec = _spec(name, task, config)
        from hf_provider.optimize.run import optimize as run_optimize

        try:
            resolved = resolve(spec.source, spec.revision)
            report = run_optimize(spec, task=task, candidates=names, resolved=resolved, repeats=repeats)
        except ProviderError as e:
            fail(e.message)
        except ValueError as e:
            fail(str(e), 2)
        result = report.to_json()
        store.write_result(store.result_key(report.model_id, report.tasks), result)
        recorded, where = (
            record_in_lock(lock_path_for(config), report, resolved) if lock else (False, "--no-lock")
        )
        if as_json:
            sys.stdout.write(json.dumps({**result, "lock": {"recorded": recorded, "detail": where}}) + "\n")
            return
        _table(report)
        typer.echo(f"chosen: {report.chosen}; hfp.lock: {'recorded in ' + where if recorded else where}")
