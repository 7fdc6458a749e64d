"""`Provider()` with nothing configured serves the built-in MiniLM offline, as `hfp serve` does."""

from __future__ import annotations

import numpy as np

from hf_provider import Provider
from hf_provider.defaults import DEFAULT_MODEL_NAME


def test_provider_without_models_serves_the_builtin_default_offline() -> None:
    with Provider() as p:  # HF_HUB_OFFLINE is set for every test: no network is reached
        assert p.manager.names() == [DEFAULT_MODEL_NAME]
        cat, kitten, car = np.asarray(p.embed(DEFAULT_MODEL_NAME, ["a cat", "a kitten", "a car engine"]))
        assert cat @ kitten > cat @ car
    with Provider([]) as empty:  # an explicit empty list stays empty
        assert empty.manager.names() == []
