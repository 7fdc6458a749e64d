"""What an optimization result depends on besides the model: the hardware and the library versions.

A variant measured fastest on one CPU (AVX2, 2 cores) can be slower on another (AMX, 64 cores) or after an
onnxruntime upgrade, so both are part of the key a cached result is reused under.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
from typing import Any

# Libraries whose version changes what a variant computes or how fast it runs.
LIBRARIES: tuple[str, ...] = (
    "hf-provider",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnxruntime",
    "openvino",
)
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "neon")


@functools.cache
def library_versions() -> dict[str, str]:
    """Installed versions of LIBRARIES ("absent" for the optional ones not installed)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the processor string is what there is
        pass
    return model, [f for f in _CPU_FLAGS if f in flags]


@functools.cache
def hardware() -> dict[str, Any]:
    """The machine a measurement holds for: CPU model, its relevant SIMD flags, cores, and the GPU if any."""
    import torch

    model, flags = _cpu()
    hw: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": model,
        "cpu_flags": flags,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def hardware_text(hw: dict[str, Any] | None = None) -> str:
    hw = hw or hardware()
    text = (
        f"{hw['machine']} {hw['cpu']} ({hw['cores']} cores; {' '.join(hw['cpu_flags']) or 'no SIMD flags'})"
    )
    return text + (f" + {hw['gpu']}" if hw.get("gpu") else "")


def versions_text(versions: dict[str, str] | None = None) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((versions or library_versions()).items()))


def digest(*parts: Any) -> str:
    """A short stable key for JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]
