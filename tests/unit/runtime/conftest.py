"""`loaded(name)`: a LoadedModel from the real loader; `run_stages` runs one request through every stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import build_handler
from hf_provider.spec import ModelSpec
from hf_provider.testing.rows import SinkRows
from hf_provider.types import TaskHandler


@pytest.fixture(scope="session")
def loaded(tiny_models: dict[str, Path], minilm_path: Path) -> Callable[..., LoadedModel]:
    """LoadedModel through the real loader (runtime/loader.py), cached per name; spec overrides copy it."""
    from hf_provider.runtime.loader import load_model

    cache: dict[str, LoadedModel] = {}

    def make(name: str, **spec: Any) -> LoadedModel:
        if name not in cache:
            path = minilm_path if name == "minilm" else tiny_models[name]
            cache[name] = load_model(ModelSpec(name=name, source=str(path), device="cpu"))
        base = cache[name]
        if not spec:
            return base
        return LoadedModel(
            **{
                **base.__dict__,
                "spec": ModelSpec.model_validate({**base.spec.model_dump(), **spec}),
                "handlers": {},
            }
        )

    return make


def run_stages(
    handler: TaskHandler, inputs: Any, params: dict[str, Any] | None = None, sinks: list[Any] | None = None
) -> Any:
    """One request through every stage, as the scheduler would run it (single batch)."""
    items, resolved, single = handler.parse(inputs, params or {})
    batch = handler.preprocess(items, resolved)
    control = SinkRows(sinks) if sinks is not None else None
    with torch.inference_mode():
        outputs = handler.forward(batch, resolved, control)
    if control is not None:
        control.close()
    results = handler.postprocess(batch, outputs, resolved)
    assemble = getattr(handler, "assemble", None)  # as the Request does at settlement
    if assemble is not None:
        return assemble(results, resolved, single)
    return results[0] if single else results


@pytest.fixture(scope="session")
def handler(loaded: Callable[..., LoadedModel]) -> Callable[..., TaskHandler]:
    def make(name: str, task: str, defaults: dict[str, Any] | None = None, **spec: Any) -> TaskHandler:
        return build_handler(task, loaded(name, **spec), defaults)

    return make


@pytest.fixture(scope="session")
def run() -> Callable[..., Any]:
    """`run(handler, inputs, params=None, sinks=None)`: one request through every stage."""
    return run_stages
