"""Bucketed forward passes (runtime/graphs.py): padding a batch up to its bucket never changes its results.

CUDA capture itself needs a GPU (bench/gpu_encoder.py runs it there); here the bucket's "graph" is the eager
function at the bucket's shape, which is exactly what a captured graph replays.
"""

from __future__ import annotations

import random

import pytest
import torch

from hf_provider.provider import Provider
from hf_provider.runtime.graphs import LENGTH_STEP, MAX_GRAPHS, GraphRunner, bucket
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec


def test_buckets() -> None:
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 255, 256, 257)] == [1, 2, 4, 4, 8, 256, 256, 512]
    assert [bucket(n, 32) for n in (1, 32, 33, 100)] == [32, 32, 64, 128]


@pytest.fixture(scope="module")
def handler(tiny_models):
    spec = ModelSpec(name="m", source=str(tiny_models["bert-cls"]), tasks=["embeddings"], device="cpu")
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        e = p.manager.get("m")
        yield p.manager.handler(e, "embeddings")


def _batch(handler, texts: list[str]):
    items, params, _ = handler.parse(texts, {})
    return handler.preprocess(items, params)


def test_padded_to_buckets_gives_the_same_vectors(handler) -> None:
    runner = GraphRunner(handler._forward, {"input_ids": 0}, max_batch=64, max_length=128, capture=False)
    rng = random.Random(0)
    words = [
        "the",
        "harbour",
        "was",
        "rebuilt",
        "after",
        "the",
        "storm",
        "and",
        "the",
        "town",
        "came",
        "back",
        "slowly",
    ]
    with torch.inference_mode():
        for _ in range(25):
            texts = [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(rng.randint(1, 40))]
            batch = _batch(handler, texts)
            exact = handler._forward(batch)
            out = runner(batch)
            assert out is not None and out.shape == exact.shape
            torch.testing.assert_close(out, exact, rtol=1e-4, atol=1e-5)
    rows_lengths = {k for k in runner._graphs}
    assert all(r & (r - 1) == 0 and n % LENGTH_STEP == 0 for r, n in rows_lengths)
    assert runner.replays == 25


def test_a_batch_past_the_largest_bucket_or_the_graph_cap_runs_eagerly(handler, monkeypatch) -> None:
    runner = GraphRunner(handler._forward, {"input_ids": 0}, max_batch=8, max_length=128, capture=False)
    with torch.inference_mode():
        assert runner(_batch(handler, ["a sentence"] * 9)) is None  # 16 > the largest bucket, 8
        monkeypatch.setattr("hf_provider.runtime.graphs.MAX_GRAPHS", 1)
        assert runner(_batch(handler, ["one"])) is not None
        assert runner(_batch(handler, ["two", "three"])) is None  # a second shape past the cap
        assert runner(_batch(handler, ["four"])) is not None  # the first shape keeps its graph
    assert MAX_GRAPHS > 1


def test_graphs_stay_off_the_cpu_path(handler) -> None:
    assert handler.graphs is None  # only CUDA models capture graphs
