"""Variant names a spec's `optimize` field accepts; no heavy imports, so spec validation stays cheap."""

from __future__ import annotations

BASELINE = "eager"
# Every candidate `hfp optimize` knows (optimize/candidates.py builds them); the order is the table's order.
VARIANTS: tuple[str, ...] = (
    BASELINE,
    "sdpa",
    "eager-attention",
    "compile",
    "int8",
    "int8-weight-only",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "fp16",
    "bf16",
)
MODES: tuple[str, ...] = ("none", "auto")


def check_optimize(value: str) -> str:
    """`value` when it is a mode or a variant name, else ValueError listing what is allowed."""
    if value in MODES or value in VARIANTS:
        return value
    raise ValueError(
        f"invalid optimize {value!r}; use 'none', 'auto' (measure at first load) or a variant: {', '.join(VARIANTS)}"
    )
