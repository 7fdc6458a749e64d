"""rerank, score and zero-shot through the real Provider and scheduler: the pairs of concurrent requests share
batches (counted), each caller gets its own answer, and a refused request leaves the model serving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hf_provider.errors import InvalidInput, TaskNotSupported, TooManyItems
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

WORDS = ["harbour", "council", "plan", "river", "bridge", "market", "school", "garden", "winter", "train"]


def doc(i: int) -> str:
    return f"Document {i}: " + " ".join(WORDS[(i + k * 3) % len(WORDS)] for k in range(2 + i % 7)) + "."


@pytest.fixture(scope="module")
def provider(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    batching = {"max_batch_size": 16, "max_wait_ms": 20}
    specs = [
        ModelSpec(name="rr", source=str(tiny_models["bert-rerank"]), device="cpu", batching=batching),
        ModelSpec(
            name="nli",
            source=str(tiny_models["bert-nli"]),
            device="cpu",
            batching={**batching, "max_candidate_labels": 4},
        ),
    ]
    settings = load_settings(
        {"metrics_enabled": False, "history_enabled": False, "home": str(tmp_path_factory.mktemp("pairs"))}
    )
    with Provider(specs, settings=settings) as p:
        for s in specs:
            p.load(s.name)
        yield p


def together(n: int, call) -> list:
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_rerank_pairs_of_concurrent_requests_share_batches(provider: Provider) -> None:
    queries = [f"Which document is about the {w}?" for w in WORDS[:8]]
    docs = [doc(i) for i in range(10)]
    alone = [provider.run("rr", "rerank", {"query": q, "documents": docs}) for q in queries]
    sched = provider.manager.get("rr").scheduler
    shared_before, batches_before = sched.shared_batches, sched.batches
    got = together(8, lambda i: provider.run("rr", "rerank", {"query": queries[i], "documents": docs}))
    assert sched.shared_batches > shared_before, "no batch held the pairs of two requests"
    assert sched.batches - batches_before < 8  # 80 pairs in fewer passes than one per request
    for a, g in zip(alone, got, strict=True):
        assert [r["index"] for r in g["results"]] == [r["index"] for r in a["results"]]
        assert [r["relevance_score"] for r in g["results"]] == pytest.approx(
            [r["relevance_score"] for r in a["results"]], abs=1e-5
        )
    info = next(d for d in provider.admin.describe() if d["name"] == "rr")
    assert info["shared_batches"] == sched.shared_batches and info["batches"] == sched.batches


def test_zero_shot_hypotheses_of_concurrent_requests_share_batches(provider: Provider) -> None:
    texts = [doc(i) for i in range(6)]
    label_sets = [["travel", "finance"], ["sport", "news", "science"], ["cooking"]]

    def call(i: int):
        return provider.run(
            "nli", "zero-shot-classification", texts[i], {"candidate_labels": label_sets[i % 3]}
        )

    alone = [call(i) for i in range(6)]
    sched = provider.manager.get("nli").scheduler
    before = sched.shared_batches
    got = together(6, call)
    assert sched.shared_batches > before
    for a, g in zip(alone, got, strict=True):
        assert g["labels"] == a["labels"] and g["scores"] == pytest.approx(a["scores"], abs=1e-5)


def test_bad_requests_are_refused_and_the_next_is_served(provider: Provider) -> None:
    ok = {"query": "harbour plan", "documents": [doc(1), doc(2)]}
    bad = [
        ("rr", "rerank", {"query": "", "documents": [doc(1)]}, {}, InvalidInput),
        ("rr", "rerank", {"query": "q", "documents": []}, {}, InvalidInput),
        ("rr", "rerank", ok, {"method": "cosine"}, InvalidInput),
        ("rr", "zero-shot-classification", "text", {"candidate_labels": ["a"]}, TaskNotSupported),
        ("nli", "rerank", ok, {}, TaskNotSupported),  # three labels: not a cross-encoder
        ("nli", "zero-shot-classification", "text", {"candidate_labels": list("abcde")}, TooManyItems),
        ("nli", "zero-shot-classification", "text", {"candidate_labels": []}, InvalidInput),
    ]
    for model, task, inputs, params, error in bad:
        with pytest.raises(error):
            provider.run(model, task, inputs, params)
        assert provider.run("rr", "rerank", ok)["method"] == "cross-encoder"
        out = provider.run("nli", "zero-shot-classification", "text", {"candidate_labels": ["a", "b"]})
        assert sorted(out["labels"]) == ["a", "b"]


def test_a_process_isolated_model_answers_as_the_in_process_one(
    provider: Provider, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The child runs the stages, the parent assembles the answer from the items' results."""
    spec = ModelSpec(name="rr", source=str(tiny_models["bert-rerank"]), device="cpu", isolation="process")
    settings = load_settings({"metrics_enabled": False, "history_enabled": False, "home": str(tmp_path)})
    request = {"query": "harbour plan", "documents": [doc(i) for i in range(6)]}
    params = {"top_n": 4, "return_documents": True}
    with Provider([spec], settings=settings) as isolated:
        got = isolated.run("rr", "rerank", request, params)
        assert isolated.admin.describe()[0]["pid"] is not None
    ref = provider.run("rr", "rerank", request, params)
    assert [r["index"] for r in got["results"]] == [r["index"] for r in ref["results"]]
    assert [r["document"] for r in got["results"]] == [r["document"] for r in ref["results"]]
    assert [r["relevance_score"] for r in got["results"]] == pytest.approx(
        [r["relevance_score"] for r in ref["results"]], abs=1e-5
    )
