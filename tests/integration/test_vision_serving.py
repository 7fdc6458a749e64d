"""Vision tasks through the real Provider and its scheduler: requests of several callers share forward passes
(zero-shot ones with different labels too) and each caller gets its own answer; one CLIP weight set serves text
embeddings, image embeddings and zero-shot classification, accounted once."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_provider.errors import MediaTypeMismatch
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

N = 24
POOL = ["cat", "dog", "bird", "a red car", "house", "tree", "river", "mountain"]


def data_uri(seed: int) -> str:
    image = Image.fromarray((np.random.RandomState(seed).rand(36 + seed % 5, 44, 3) * 255).astype("uint8"))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def labels_of(i: int) -> list[str]:
    return [POOL[(i + k * 3) % len(POOL)] for k in range(2 + i % 4)]  # other labels, other counts


def run_together(n: int, call) -> list:
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def spec(name: str, path: Path, **kw) -> ModelSpec:
    return ModelSpec(
        name=name, source=str(path), device="cpu", dtype="float32", batching={"max_wait_ms": 5}, **kw
    )


@pytest.fixture(scope="module")
def provider(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    settings = load_settings(
        {"metrics_enabled": False, "history_enabled": False, "home": str(tmp_path_factory.mktemp("vision"))}
    )
    with Provider(
        [spec("vit", tiny_models["vit"]), spec("clip", tiny_models["clip"])], settings=settings
    ) as p:
        p.load("vit")
        p.load("clip")
        yield p


def test_concurrent_zero_shot_requests_with_other_labels_share_batches(provider: Provider) -> None:
    alone = [
        provider.run(
            "clip", "zero-shot-image-classification", data_uri(i), {"candidate_labels": labels_of(i)}
        )
        for i in range(N)
    ]
    sched = provider.manager.get("clip").scheduler
    sched.last_batch_sizes = []
    got = run_together(
        N,
        lambda i: provider.run(
            "clip", "zero-shot-image-classification", data_uri(i), {"candidate_labels": labels_of(i)}
        ),
    )
    sizes = list(sched.last_batch_sizes)
    assert sum(sizes) == N and max(sizes) > 1, sizes
    for i, (a, g) in enumerate(zip(alone, got, strict=True)):
        assert [x["label"] for x in g] == [x["label"] for x in a], i
        assert sorted(x["label"] for x in g) == sorted(labels_of(i))  # its own labels, nobody else's
        np.testing.assert_allclose([x["score"] for x in g], [x["score"] for x in a], atol=1e-5)


def test_concurrent_image_classification_shares_batches(provider: Provider) -> None:
    alone = [provider.run("vit", "image-classification", data_uri(i)) for i in range(N)]
    sched = provider.manager.get("vit").scheduler
    sched.last_batch_sizes = []
    got = run_together(N, lambda i: provider.run("vit", "image-classification", data_uri(i)))
    assert max(sched.last_batch_sizes) > 1, sched.last_batch_sizes
    for a, g in zip(alone, got, strict=True):
        assert [x["label"] for x in g] == [x["label"] for x in a]
        np.testing.assert_allclose([x["score"] for x in g], [x["score"] for x in a], atol=1e-5)


def test_concurrent_text_and_image_embeddings_share_batches_in_order(provider: Provider) -> None:
    def ask(i: int) -> list:
        return [f"a photo of a {POOL[i % len(POOL)]}", data_uri(i)]

    alone = [provider.run("clip", "embeddings", ask(i)) for i in range(N)]
    sched = provider.manager.get("clip").scheduler
    sched.last_batch_sizes = []
    got = run_together(N, lambda i: provider.run("clip", "embeddings", ask(i)))
    assert max(sched.last_batch_sizes) > 2, sched.last_batch_sizes
    for a, g in zip(alone, got, strict=True):
        np.testing.assert_allclose(np.array(g), np.array(a), atol=1e-5)


def test_one_clip_weight_set_serves_three_tasks_accounted_once(
    tiny_models: dict[str, Path], tmp_path
) -> None:
    """The model's byte accounting (what the memory budget admits against) for text embeddings alone, then with
    image embeddings (the same handler) and zero-shot classification: the second and third cost no weights."""
    settings = load_settings({"metrics_enabled": False, "history_enabled": False, "home": str(tmp_path)})
    one = spec("clip", tiny_models["clip"], tasks=["embeddings"])
    both = spec("clip", tiny_models["clip"], tasks=["embeddings", "zero-shot-image-classification"])
    accounted = []
    for s in (one, both):
        with Provider([s], settings=settings) as p:
            p.run("clip", "embeddings", ["a photo of a cat", data_uri(0)])
            if "zero-shot-image-classification" in s.tasks:
                p.run("clip", "zero-shot-image-classification", data_uri(1), {"candidate_labels": POOL[:3]})
            e = p.manager.get("clip")
            assert {id(h.model.module) for h in e.model.handlers.values()} == {id(e.model.module)}
            accounted.append((e.accounted_bytes, e.model.weight_bytes))
    (first, weights), (third, weights3) = accounted
    assert weights3 == weights and third <= 1.10 * first, accounted


def test_a_clip_in_a_worker_process_answers_as_in_process(provider: Provider, tiny_models, tmp_path) -> None:
    """isolation = "process": the parent decodes and checks images, the worker runs processor and towers."""
    settings = load_settings({"metrics_enabled": False, "history_enabled": False, "home": str(tmp_path)})
    ask = {"candidate_labels": POOL[:4]}
    with Provider([spec("clip", tiny_models["clip"], isolation="process")], settings=settings) as p:
        zs = p.run("clip", "zero-shot-image-classification", data_uri(3), ask)
        emb = p.run("clip", "embeddings", ["a photo of a cat", data_uri(4)])
        with pytest.raises(MediaTypeMismatch):
            p.run("clip", "embeddings", ["data:image/png;base64,AAAA"])
    assert [x["label"] for x in zs] == [
        x["label"] for x in provider.run("clip", "zero-shot-image-classification", data_uri(3), ask)
    ]
    np.testing.assert_allclose(
        np.array(emb),
        np.array(provider.run("clip", "embeddings", ["a photo of a cat", data_uri(4)])),
        atol=1e-5,
    )
