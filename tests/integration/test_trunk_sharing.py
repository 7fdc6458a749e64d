"""Embeddings and fill-mask on one BERT through the real Provider (manager, thread runner, memory budget): requests
of both tasks arriving together share one batch and one pass of the encoder, and each caller gets what its task
alone gives. The batch waits for all four requests (max_batch_size 4, a long max_wait): one batch by construction."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

CALLS = [
    ("embeddings", "the harbour at night", {}),
    ("fill-mask", "the [MASK] sat on the mat", {"top_k": 3}),
    ("embeddings", "a longer sentence about the council and its plan for the river", {"dimensions": 8}),
    ("fill-mask", "paris is the [MASK] of france", {}),
]


def _provider(folder: Path, home: Path, cross_task: bool) -> Provider:
    spec = ModelSpec(
        name="bert",
        source=str(folder),
        tasks=["embeddings", "fill-mask"],
        device="cpu",
        dtype="float32",
        batching={"max_batch_size": len(CALLS), "max_wait_ms": 10_000, "cross_task": cross_task},
    )
    settings = load_settings(
        {
            "metrics_enabled": False,
            "history_enabled": False,
            "home": str(home),
            "memory": {"host_budget": "8GiB"},
        }
    )
    return Provider([spec], settings=settings)


def _together(p: Provider, calls: list[tuple[str, str, dict]]) -> list:
    barrier = threading.Barrier(len(calls))

    def one(i: int):
        task, text, params = calls[i]
        barrier.wait()
        return p.run("bert", task, text, params, timeout=60)

    with ThreadPoolExecutor(len(calls)) as ex:
        return list(ex.map(one, range(len(calls))))


def test_embeddings_and_fill_mask_share_one_encoder_pass(tiny_models, tmp_path) -> None:
    with _provider(tiny_models["bert-mlm"], tmp_path / "a", cross_task=True) as p:
        p.load("bert")
        model = p.manager.get("bert").model
        sched = p.manager.get("bert").scheduler
        sched.pending.queue.max_batch_size = 1
        alone = [p.run("bert", t, x, prm) for t, x, prm in CALLS]  # one request per batch
        assert model.trunk is None or model.trunk.runs == 0
        sched.pending.queue.max_batch_size = len(CALLS)
        sched.last_batch_sizes = []
        got = _together(p, CALLS)
        assert sched.last_batch_sizes == [len(CALLS)]
        assert model.trunk is not None and model.trunk.runs == 1
    for (task, _, _), g, a in zip(CALLS, got, alone, strict=True):
        if task == "embeddings":
            np.testing.assert_allclose(np.asarray(g), np.asarray(a), atol=1e-5, rtol=0)
        else:
            assert [c["token"] for c in g] == [c["token"] for c in a]
            assert [c["score"] for c in g] == pytest.approx([c["score"] for c in a], abs=1e-5)


def test_cross_task_false_runs_each_task_in_batches_of_its_own(tiny_models, tmp_path) -> None:
    with _provider(tiny_models["bert-mlm"], tmp_path / "b", cross_task=False) as p:
        p.load("bert")
        sched = p.manager.get("bert").scheduler
        sched.pending.queue.max_batch_size = 2  # each task's pair fills a batch
        calls = [(t, x, {}) for t, x, _ in CALLS]  # one key per task: parameters alike within each
        got = _together(p, calls)
        assert sched.last_batch_sizes == [2, 2]
        assert p.manager.get("bert").model.trunk is None  # never built: no mixed batch
    assert [len(g) for g in got] == [32, 5, 32, 5]  # a vector of the hidden size; top 5 fills
