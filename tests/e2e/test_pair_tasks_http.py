"""rerank, score and zero-shot over real HTTP (its own server): answers equal transformers' pipelines and
sentence-transformers on the same weights; every bad input is a 4xx with an error code and the next request of
the same model is served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import serve
from tests.e2e.test_http_errors import assert_error

QUERY = "Where does Alice live?"
DOCS = [
    "Alice lives in Paris with her cat.",
    "The weather in Rome was great today, said Carol.",
    "Bob",
    "Stocks fell sharply on Monday after the council announced a new plan for the harbour.",
    "Alice and Bob travelled from London to Paris.",
]
LABELS = ["travel", "finance", "sport"]


@pytest.fixture(scope="module")
def http(
    tiny_models: dict[str, Path], minilm_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    base = tmp_path_factory.mktemp("e2e-pairs")
    config = {
        "home": str(base / "hfp-home"),
        "models": [
            {
                "name": "rr",
                "source": str(tiny_models["bert-rerank"]),
                "device": "cpu",
                "tasks": ["rerank", "score"],
                "batching": {"max_documents": 8},
            },
            {
                "name": "nli",
                "source": str(tiny_models["bert-nli"]),
                "device": "cpu",
                "tasks": ["zero-shot-classification", "text-classification"],
                "batching": {"max_candidate_labels": 5},
            },
            {
                "name": "minilm",
                "source": str(minilm_path),
                "device": "cpu",
                "tasks": ["embeddings", "rerank"],
            },
        ],
    }
    with serve(config, base) as served, httpx.Client(base_url=served.url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def pipelines(tiny_models: dict[str, Path]) -> dict:
    import transformers

    out = {}
    for name, task in (("bert-rerank", "text-classification"), ("bert-nli", "zero-shot-classification")):
        folder = str(tiny_models[name])
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype="float32")
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        out[name] = transformers.pipeline(task, model=model, tokenizer=tok, device="cpu")
    return out


def _ranking(pipe, query: str, docs: list[str]) -> list[tuple[int, float]]:
    scores = [pipe({"text": query, "text_pair": d})["score"] for d in docs]
    return sorted(enumerate(scores), key=lambda x: -x[1])


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerank_equals_the_pipeline(http: httpx.Client, pipelines: dict, path: str) -> None:
    ref = _ranking(pipelines["bert-rerank"], QUERY, DOCS)
    body = {"model": "rr", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "rr" and out["method"] == "cross-encoder" and out["usage"]["total_tokens"] > 0
    assert [x["index"] for x in out["results"]] == [i for i, _ in ref[:3]]
    assert [x["relevance_score"] for x in out["results"]] == pytest.approx([s for _, s in ref[:3]], abs=1e-4)
    assert [x["document"] for x in out["results"]] == [{"text": DOCS[i]} for i, _ in ref[:3]]
    # Cohere's document objects are accepted; without return_documents no document comes back
    r = http.post(path, json={"model": "rr", "query": QUERY, "documents": [{"text": d} for d in DOCS]})
    assert [x["index"] for x in r.json()["results"]] == [i for i, _ in ref]
    assert all("document" not in x for x in r.json()["results"])


def test_task_routes_answer_the_same(http: httpx.Client, pipelines: dict) -> None:
    ref = _ranking(pipelines["bert-rerank"], QUERY, DOCS)
    r = http.post(
        "/v1/tasks/rerank",
        json={"model": "rr", "inputs": {"query": QUERY, "documents": DOCS}, "parameters": {}},
    )
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["outputs"]["results"]] == [i for i, _ in ref]
    r = http.post("/v1/tasks/score", json={"model": "rr", "inputs": {"text_1": QUERY, "text_2": DOCS}})
    scores = r.json()["outputs"]["scores"]
    assert scores == pytest.approx([s for _, s in sorted(ref)], abs=1e-4)


def test_score_one_against_many_and_pairs(http: httpx.Client, pipelines: dict) -> None:
    pipe = pipelines["bert-rerank"]
    r = http.post("/v1/score", json={"model": "rr", "text_1": QUERY, "text_2": DOCS})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "list" and out["method"] == "cross-encoder"
    assert [d["index"] for d in out["data"]] == list(range(len(DOCS)))
    ref = [pipe({"text": QUERY, "text_pair": d})["score"] for d in DOCS]
    assert [d["score"] for d in out["data"]] == pytest.approx(ref, abs=1e-4)
    r = http.post("/v1/score", json={"model": "rr", "text_1": DOCS[:2], "text_2": DOCS[2:4]})
    ref = [pipe({"text": a, "text_pair": b})["score"] for a, b in zip(DOCS[:2], DOCS[2:4], strict=True)]
    assert [d["score"] for d in r.json()["data"]] == pytest.approx(ref, abs=1e-4)


def test_zero_shot_equals_the_pipeline(http: httpx.Client, pipelines: dict) -> None:
    pipe = pipelines["bert-nli"]
    for params in ({"candidate_labels": LABELS}, {"candidate_labels": LABELS, "multi_label": True}):
        r = http.post(
            "/v1/tasks/zero-shot-classification",
            json={"model": "nli", "inputs": DOCS[:3], "parameters": params},
        )
        assert r.status_code == 200, r.text
        for got, ref in zip(r.json()["outputs"], pipe(DOCS[:3], **params), strict=True):
            assert got["sequence"] == ref["sequence"] and got["labels"] == ref["labels"]
            assert got["scores"] == pytest.approx(ref["scores"], abs=1e-4)


def test_embedding_model_reranks_by_cosine_when_asked(http: httpx.Client, minilm_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    vecs = SentenceTransformer(str(minilm_path), device="cpu").encode(
        [QUERY, *DOCS], normalize_embeddings=True
    )
    ref = vecs[1:] @ vecs[0]
    r = http.post("/v1/rerank", json={"model": "minilm", "query": QUERY, "documents": DOCS})
    assert_error(r, 400, code="invalid_input", param="method")
    r = http.post(
        "/v1/rerank", json={"model": "minilm", "query": QUERY, "documents": DOCS, "method": "cosine"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["method"] == "cosine"
    assert [x["index"] for x in out["results"]] == list(np.argsort(-ref, kind="stable"))
    assert [x["relevance_score"] for x in out["results"]] == pytest.approx(
        sorted(ref, reverse=True), abs=1e-4
    )


OK_RERANK = {"model": "rr", "query": QUERY, "documents": DOCS[:2]}
OK_ZS = {"model": "nli", "inputs": "Alice went to Paris.", "parameters": {"candidate_labels": LABELS}}


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "param"),
    [
        ("/v1/rerank", {"model": "rr", "query": "", "documents": DOCS}, 400, "invalid_input", "query"),
        ("/v1/rerank", {"model": "rr", "query": QUERY, "documents": []}, 400, "invalid_input", "documents"),
        (
            "/v1/rerank",
            {"model": "rr", "query": QUERY, "documents": ["a", ""]},
            400,
            "invalid_input",
            "documents",
        ),
        (
            "/v1/rerank",
            {"model": "rr", "query": QUERY, "documents": ["d"] * 9},
            413,
            "too_many_items",
            "documents",
        ),
        ("/v1/rerank", {**OK_RERANK, "top_n": 0}, 400, "invalid_request", "top_n"),
        ("/v1/rerank", {**OK_RERANK, "rank_fields": ["text"]}, 400, "unsupported_parameter", "rank_fields"),
        ("/v1/rerank", {**OK_RERANK, "method": "bm25"}, 400, "invalid_request", "method"),
        ("/v1/rerank", {**OK_RERANK, "method": "cosine"}, 400, "invalid_input", "method"),
        ("/v1/rerank", {**OK_RERANK, "model": "nli"}, 400, "task_not_supported", None),  # 3-label classifier
        ("/v2/rerank", {"model": "rr", "query": QUERY}, 400, "invalid_request", "documents"),
        (
            "/v1/score",
            {"model": "rr", "text_1": DOCS[:2], "text_2": DOCS[:3]},
            400,
            "invalid_input",
            "text_2",
        ),
        ("/v1/score", {"model": "rr", "text_1": [], "text_2": DOCS}, 400, "invalid_input", "text_1"),
        (
            "/v1/tasks/zero-shot-classification",
            {**OK_ZS, "parameters": {"candidate_labels": []}},
            400,
            "invalid_input",
            "candidate_labels",
        ),
        (
            "/v1/tasks/zero-shot-classification",
            {**OK_ZS, "parameters": {"candidate_labels": list("abcdef")}},
            413,
            "too_many_items",
            "candidate_labels",
        ),
        (
            "/v1/tasks/zero-shot-classification",
            {**OK_ZS, "parameters": {"candidate_labels": LABELS, "hypothesis_template": "no slot"}},
            400,
            "invalid_input",
            "hypothesis_template",
        ),
        ("/v1/tasks/zero-shot-classification", {**OK_ZS, "inputs": ""}, 400, "invalid_input", "inputs"),
        ("/v1/tasks/zero-shot-classification", {**OK_ZS, "model": "rr"}, 400, "task_not_supported", None),
    ],
)
def test_bad_input_is_4xx_and_the_next_request_is_served(
    http: httpx.Client, path: str, body: dict, status: int, code: str, param: str | None
) -> None:
    assert_error(http.post(path, json=body), status, code=code, param=param)
    r = http.post("/v1/rerank", json=OK_RERANK)
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    r = http.post("/v1/tasks/zero-shot-classification", json=OK_ZS)
    assert r.status_code == 200 and sorted(r.json()["outputs"]["labels"]) == sorted(LABELS)
