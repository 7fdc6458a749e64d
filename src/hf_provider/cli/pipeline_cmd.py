"""`hfp run --pipeline NAME INPUT... [--param step.key=value] [--steps]`: run a configured pipeline in-process
and print its output (every step's with --steps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hf_provider.cli.common import fail, load


def step_params(pairs: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """--param translate.max_new_tokens=16 -> {"translate": {"max_new_tokens": 16}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in pairs:
        step, dot, name = key.partition(".")
        if not dot or not step or not name:
            fail(
                f"with --pipeline, --param takes step.name=value (such as summary.max_new_tokens=32), got {key!r}",
                2,
            )
        out.setdefault(step, {})[name] = value
    return out


def run_pipeline(
    name: str,
    values: list[Any],
    config: Path | None,
    params: list[tuple[str, Any]],
    *,
    as_json: bool,
    steps: bool,
) -> None:
    from hf_provider.errors import ProviderError
    from hf_provider.provider import Provider

    settings = load(config, load_on_start=False)
    if not any(p.name == name for p in settings.pipelines):
        names = ", ".join(p.name for p in settings.pipelines) or "none (declare [[pipelines]] in hfp.toml)"
        fail(f"unknown pipeline {name!r}; configured pipelines: {names}", 2)
    inputs: Any = values[0] if len(values) == 1 else values
    try:
        with Provider(settings=settings) as provider:
            result = provider.pipeline(name, inputs, step_params(params), return_steps=steps)
    except ProviderError as e:  # a config mistake (naming pipeline, step, field) or a failed step
        fail(e.message, 2 if e.code == "invalid_config" else 1)
    if as_json or steps or not isinstance(result, dict):
        sys.stdout.write(json.dumps(result, default=_plain) + "\n")
        return
    text = next((v for k, v in result.items() if k.endswith("text") or k == "answer"), None)
    sys.stdout.write((text if isinstance(text, str) else json.dumps(result, default=_plain)) + "\n")


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
