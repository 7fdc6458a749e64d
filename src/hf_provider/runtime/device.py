"""Device and dtype choice: auto = cuda, then mps, then cpu; dtype auto = bf16/fp16 on GPU, fp32 on CPU."""

from __future__ import annotations

import torch

from hf_provider.errors import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {requested!r} requested but CUDA is not available; use 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {requested!r} requested but MPS is not available; use 'auto' or 'cpu'")
    return dev


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
