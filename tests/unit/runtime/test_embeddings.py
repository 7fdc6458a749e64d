from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_provider.errors import InvalidInput, TooManyItems


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


@pytest.mark.parametrize("name", ["t5", "decoder", "bert-cls", "minilm"])
def test_shape_norm_and_batch_equals_single(handler, run, name: str) -> None:
    h = handler(name, "embeddings")
    texts = ["Alice lives in Paris.", "Bob", "The weather in Rome was great today, said Carol."]
    batch = run(h, texts)
    assert len(batch) == 3 and all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in batch)
    for text, vec in zip(texts, batch, strict=True):
        assert math.isclose(sum(x * x for x in vec), 1.0, rel_tol=1e-5)
        single = run(h, text)
        assert max(abs(a - b) for a, b in zip(single, vec, strict=True)) < 1e-5


def test_dimensions_and_normalize(handler, run) -> None:
    h = handler("bert-cls", "embeddings")
    full = run(h, "Alice lives in Paris.", {"normalize": False})
    short = run(h, "Alice lives in Paris.", {"dimensions": 8})
    assert len(full) == 32 and len(short) == 8
    assert math.isclose(sum(x * x for x in short), 1.0, rel_tol=1e-5)
    norm = math.sqrt(sum(x * x for x in full[:8]))
    assert short == pytest.approx([x / norm for x in full[:8]], abs=1e-5)


def test_minilm_matches_sentence_transformers(handler, loaded, run) -> None:
    h = handler("minilm", "embeddings")
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
    ]
    ours = torch.from_numpy(np.stack(run(h, texts)))
    ref = loaded("minilm").sentence_model.encode(texts, convert_to_tensor=True)
    assert ours.shape == (3, 384)
    assert torch.allclose(ours, ref.cpu(), atol=1e-5)
    assert _cos(ours[0].tolist(), ours[1].tolist()) > _cos(ours[0].tolist(), ours[2].tolist()) + 0.3


@pytest.mark.parametrize(
    ("inputs", "params", "match"),
    [
        ("", {}, "empty"),
        ([], {}, "non-empty"),
        ([1, "a"], {}, "must be a string"),  # [1] alone is one token-id input
        ("hi", {"dimensions": 0}, "dimensions"),
        ("hi", {"dimensions": 33}, "dimensions"),
        ("hi", {"dimensions": "8"}, "integer"),
        ("hi", {"normalize": "yes"}, "boolean"),
        ("hi", {"colour": 1}, "allowed: dimensions, normalize, truncate"),
    ],
)
def test_validation(handler, run, inputs, params, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        run(handler("bert-cls", "embeddings"), inputs, params)


def test_too_many_and_too_long(handler, run) -> None:
    h = handler("bert-cls", "embeddings", batching={"max_items_per_request": 2})
    with pytest.raises(TooManyItems, match="at most 2"):
        run(h, ["a", "b", "c"])
    long = "Alice lives in Paris. " * 60
    with pytest.raises(InvalidInput, match=r"tokens long; this model accepts at most 128 tokens"):
        run(h, long)
    assert len(run(h, long, {"truncate": True})) == 32
