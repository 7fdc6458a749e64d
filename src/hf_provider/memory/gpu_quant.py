"""Optional adapter: GPU 8-bit / 4-bit weights through bitsandbytes (every bitsandbytes touch lives here).

bitsandbytes is imported lazily, only when a GPU quantization is asked for; without it the load fails with an
install hint instead of an ImportError deep in transformers.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from hf_provider.errors import ModelLoadError

GpuQuantMode = Literal["int8", "nf4", "fp4"]
MODES: tuple[str, ...] = ("int8", "nf4", "fp4")
INSTALL_HINT = "pip install bitsandbytes"


class MissingDependency(ModelLoadError, ImportError):
    """An optional dependency needed by the configured feature is not installed."""

    code = "missing_dependency"


def _require_bitsandbytes() -> Any:
    try:
        return importlib.import_module("bitsandbytes")
    except ImportError as exc:
        raise MissingDependency(
            f"GPU quantization needs bitsandbytes, which is not installed: {INSTALL_HINT} "
            "(or use quantization 'int8' on CPU)"
        ) from exc


def load_kwargs(mode: GpuQuantMode, compute_dtype: Any = None) -> dict[str, Any]:
    """Keyword arguments for from_pretrained: {"quantization_config": BitsAndBytesConfig(...)}.

    mode "int8" loads 8-bit weights (LLM.int8); "nf4" / "fp4" load 4-bit weights computing in `compute_dtype`
    (default torch.float16). Raises MissingDependency with an install hint when bitsandbytes is absent.
    """
    if mode not in MODES:
        raise ValueError(f"unknown GPU quantization {mode!r}; use one of: {', '.join(MODES)}")
    _require_bitsandbytes()
    import torch
    from transformers import BitsAndBytesConfig

    if mode == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=compute_dtype or torch.float16
        )
    return {"quantization_config": config}
