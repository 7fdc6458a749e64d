"""The `optimize` spec field at load: apply the forced or the measured variant to the serving model, guarded.

"auto" reuses the result cached under (model commit, tasks, hardware, library versions) (optimize/store.py) and
measures only when there is none. Whatever the variant, the guard runs once more on the serving model before it
serves (one probe batch per task): a variant that changes the answers is refused here as at measurement.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hf_provider.errors import ModelLoadError
from hf_provider.hub.resolve import Resolved
from hf_provider.optimize import guard, store
from hf_provider.optimize.candidates import CANDIDATES
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.runtime.model import LoadedModel
from hf_provider.variants import BASELINE

log = logging.getLogger(__name__)


class VariantRejected(ModelLoadError):
    """The variant the spec names cannot serve this model, or its outputs fail the accuracy guard."""

    code = "variant_rejected"


def auto_result(model: LoadedModel, *, cache_dir: Path | None = None, **kwargs: Any) -> tuple[dict, bool]:
    """(the measurement for this model on this machine, whether it came from the cache)."""
    from hf_provider.optimize.run import optimize

    tasks = list(model.handlers)
    kwargs.setdefault("repeats", 7)  # at load, a shorter measurement than `hfp optimize`'s
    kwargs.setdefault("batch_repeats", 2)
    key = store.result_key(store.model_id(model.path, model.commit), tasks)
    cached = store.read_result(key, cache_dir)
    if cached is not None:
        return cached, True
    resolved = Resolved(
        path=model.path,
        commit=model.commit,
        kind="hub" if model.commit else "local",
        source=model.spec.source,
        revision=model.spec.revision,
    )
    with FOREGROUND.undisturbed():  # a swap's load yields to forward passes, but not while it measures
        report = optimize(model.spec, tasks=tasks, resolved=resolved, cache_dir=cache_dir, **kwargs)
    result = report.to_json()
    store.write_result(key, result, cache_dir)
    return result, False


def apply_optimize(model: LoadedModel, *, cache_dir: Path | None = None, **kwargs: Any) -> str | None:
    """Apply `model.spec.optimize` to a loaded model whose handlers are attached; returns the variant now
    serving (None for optimize = "none"). Raises VariantRejected when it cannot apply or fails the guard."""
    mode = model.spec.optimize
    if mode == "none":
        return None
    variant = mode
    if mode == "auto":
        result, cached = auto_result(model, cache_dir=cache_dir, **kwargs)
        variant = result["chosen"]
        log.info("optimize auto for %s: %s (%s)", model.name, variant, "cached" if cached else "measured now")
    model.variant = variant
    if variant == BASELINE:
        return variant
    cand = CANDIDATES[variant]
    tasks = list(model.handlers)
    reason = cand.unavailable(model, tasks)
    if reason is not None:
        raise VariantRejected(
            f"optimize={variant!r} cannot serve model {model.name!r}: {reason}", model=model.name
        )
    refs = {t: guard.reference(h) for t, h in model.handlers.items()}  # before an in-place change
    cand.build(model, tasks, cache_dir)
    for t, h in model.handlers.items():
        v = guard.check(h, refs[t])
        if not v.accepted:
            raise VariantRejected(
                f"optimize={variant!r} refused for model {model.name!r} ({t}): {v.reason}", model=model.name
            )
    return variant
