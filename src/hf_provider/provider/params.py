"""A request's model parameters, checked before anything else: one explicit mapping, never the names that steer
the provider itself (`types.RESERVED_PARAMS`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_provider.errors import InvalidInput
from hf_provider.types import RESERVED_PARAMS

Params = Mapping[str, Any] | None


def check_params(params: Params) -> Mapping[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput(
            f"parameters must be an object (a mapping of names to values), got {type(params).__name__}",
            param="parameters",
        )
    for name in params:
        if name in RESERVED_PARAMS:
            hint = {
                "priority": " (send the header X-Priority, or priority= in Python)",
                "timeout": " (send the header X-Request-Timeout, or timeout= in Python)",
            }.get(name, "")
            raise InvalidInput(
                f"parameter {name!r} is reserved for the provider and cannot be set in a request's "
                f"parameters{hint}",
                param=name,
            )
    return params


def input_size(inputs: Any) -> int:
    """What parsing `inputs` costs, in characters (bytes for an uploaded file, decoded in parse). A URL or an image
    part counts as large: an image task may fetch or decode it, which must never run on the event loop."""
    if isinstance(inputs, bytes | bytearray):  # an audio file
        return len(inputs)
    if isinstance(inputs, str):
        return _URL_SIZE if inputs.startswith(("http://", "https://")) else len(inputs)
    if isinstance(inputs, list):
        return sum(input_size(x) if isinstance(x, str | dict | bytes | bytearray) else 256 for x in inputs)
    if isinstance(inputs, dict):
        if inputs.get("type") == "image_url":
            return _URL_SIZE
        return sum(input_size(v) for v in inputs.values())  # rerank's query and documents, score's two sides
    return 256


_URL_SIZE = 1 << 20
