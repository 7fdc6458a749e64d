"""hf-provider: serve HuggingFace models from one Python API, one HTTP server and one CLI.

Public names are re-exported lazily so `import hf_provider` (and `hfp --help`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_provider import errors
from hf_provider.errors import (
    InvalidInput,
    ModelNotFound,
    ProviderError,
    TaskNotSupported,
    Unavailable,
)

if TYPE_CHECKING:
    from hf_provider.provider import Provider
    from hf_provider.spec import ModelSpec

__all__ = [
    "InvalidInput",
    "ModelNotFound",
    "ModelSpec",
    "Provider",
    "ProviderError",
    "TaskNotSupported",
    "Unavailable",
    "errors",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Provider":
        from hf_provider.provider import Provider

        return Provider
    if name == "ModelSpec":
        from hf_provider.spec import ModelSpec

        return ModelSpec
    raise AttributeError(f"module 'hf_provider' has no attribute {name!r}")
