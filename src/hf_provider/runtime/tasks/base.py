"""The task handler contract: parse (per request) / preprocess (CPU) / forward (device) / postprocess (CPU).

Split in stages so the scheduler overlaps CPU work with the device (infinity `transformer/abstract.py`).
Handlers hold a reference to the shared `LoadedModel`; they never copy weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from hf_provider.errors import InvalidInput
from hf_provider.runtime.model import LoadedModel

# A per-item sink for streamed text deltas (text-generation); None at the end of the stream.
DeltaSink = Callable[[str | None], None]


@dataclass(slots=True)
class Item:
    """One input of a request, validated and tokenized. `n_tokens` is its cost for batching and sorting."""

    data: Any
    n_tokens: int


class TaskHandler(ABC):
    task: ClassVar[str]
    streaming: ClassVar[bool] = False

    def __init__(self, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.defaults: dict[str, Any] = dict(defaults or {})

    @classmethod
    @abstractmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        """None when the model's architecture can serve this task, else a short reason."""

    @abstractmethod
    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        """Validate one request: returns its items, the resolved parameters (defaults merged, bounds checked)
        and whether the caller sent a single input (so the result is unwrapped). Raises InvalidInput."""

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        """Requests whose keys are equal may share a forward pass."""
        return ()

    @abstractmethod
    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        """Build device-ready tensors for a batch (padding, collation). CPU only."""

    @abstractmethod
    def forward(self, batch: Any, params: Mapping[str, Any], sinks: list[DeltaSink] | None = None) -> Any:
        """Run the model on the batch. Called inside torch.inference_mode() on the forward thread."""

    @abstractmethod
    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        """One JSON-serialisable result per item, in batch order."""

    # helpers shared by handlers -------------------------------------------------------------------------------
    def merged(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.defaults)
        out.update({k: v for k, v in params.items() if v is not None})
        return out

    @staticmethod
    def as_text_list(inputs: Any, max_items: int, param: str = "inputs") -> tuple[list[str], bool]:
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, list) or not texts:
            raise InvalidInput(f"'{param}' must be a non-empty string or a non-empty list of strings", param=param)
        if len(texts) > max_items:
            raise InvalidInput(f"'{param}' has {len(texts)} items; at most {max_items} are accepted per request",
                               param=param)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"'{param}[{i}]' must be a string, got {type(t).__name__}", param=param)
            if not t.strip():
                raise InvalidInput(f"'{param}[{i}]' is empty", param=param)
        return texts, single
