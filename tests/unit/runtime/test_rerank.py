"""rerank and score against transformers and sentence-transformers on the same weights; failure paths first."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_provider.errors import InvalidInput, TaskNotSupported, TooManyItems
from hf_provider.runtime.tasks import build_handler

QUERY = "Where does Alice live?"
DOCS = [
    "Alice lives in Paris with her cat.",
    "The weather in Rome was great today, said Carol.",
    "Bob",
    "Stocks fell sharply on Monday after the council announced a new plan for the harbour.",
    "Alice and Bob travelled from London to Paris.",
]


def _request(docs: list = DOCS, query: str = QUERY) -> dict:
    return {"query": query, "documents": docs}


# failure paths ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "param", "match"),
    [
        ({"query": "", "documents": DOCS}, "query", "'query' must be a non-empty string"),
        ({"query": "  ", "documents": DOCS}, "query", "'query' must be a non-empty string"),
        ({"query": QUERY, "documents": []}, "documents", "'documents' must be a non-empty list"),
        ({"query": QUERY, "documents": "Alice"}, "documents", "'documents' must be a non-empty list"),
        ({"query": QUERY, "documents": ["ok", " "]}, "documents", r"'documents\[1\]' is empty"),
        ({"query": QUERY, "documents": ["ok", 3]}, "documents", r"'documents\[1\]' must be a string"),
        ({"query": QUERY}, "inputs", "exactly the keys query"),
        ({"query": QUERY, "documents": DOCS, "top_n": 2}, "inputs", "exactly the keys query"),
        (["a", "b"], "inputs", "exactly the keys query"),
    ],
)
def test_rerank_bad_inputs_name_the_field(handler, run, inputs, param: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as e:
        run(handler("bert-rerank", "rerank"), inputs)
    assert e.value.param == param


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"top_n": 0}, "top_n"),
        ({"top_n": "2"}, "top_n"),
        ({"return_documents": "yes"}, "return_documents"),
        ({"method": "bm25"}, "method"),
        ({"method": "cosine"}, "method"),  # a cross-encoder does not rank by cosine
        ({"temperature": 1.0}, "temperature"),
        ({"truncate": 1}, "truncate"),
    ],
)
def test_rerank_bad_params(handler, run, params: dict, param: str) -> None:
    with pytest.raises(InvalidInput) as e:
        run(handler("bert-rerank", "rerank"), _request(), params)
    assert e.value.param == param


def test_too_many_documents_is_refused_with_the_setting(handler, run) -> None:
    h = handler("bert-rerank", "rerank", batching={"max_documents": 3})
    with pytest.raises(TooManyItems, match=r"'documents' has 5 items; at most 3 .*max_documents"):
        run(h, _request())
    assert len(run(h, _request(DOCS[:3]))["results"]) == 3  # at the limit: served


def test_too_many_texts_for_the_request_limit(handler, run) -> None:
    h = handler("minilm", "rerank", batching={"max_items_per_request": 5})
    with pytest.raises(TooManyItems, match="6 inputs; at most 5"):  # the query is embedded too
        run(h, _request(), {"method": "cosine"})


def test_over_long_pair_is_refused_unless_truncated(handler, run) -> None:
    h = handler("bert-rerank", "rerank", max_length=16)
    long_doc = " ".join(["harbour"] * 40)
    with pytest.raises(InvalidInput, match=r"the query with document 1 is .* tokens long; .* at most 16"):
        run(h, _request(["short", long_doc]))
    out = run(h, _request(["short", long_doc]), {"truncate": True})
    assert sorted(r["index"] for r in out["results"]) == [0, 1]


@pytest.mark.parametrize("task", ["rerank", "score"])
def test_models_that_cannot_score_pairs_say_why(loaded, task: str) -> None:
    with pytest.raises(TaskNotSupported, match="has 2 labels; a cross-encoder has one") as e:
        build_handler(task, loaded("bert-cls"))  # a classifier with two labels
    assert e.value.task == task
    with pytest.raises(TaskNotSupported, match="neither a cross-encoder"):
        build_handler(task, loaded("decoder"))


def test_embedding_model_ranks_only_when_cosine_is_asked(handler, run) -> None:
    h = handler("minilm", "rerank")
    with pytest.raises(InvalidInput, match='pass method="cosine"') as e:
        run(h, _request())
    assert e.value.param == "method"
    with pytest.raises(InvalidInput, match="embedding model"):
        run(h, _request(), {"method": "cross-encoder"})
    with pytest.raises(InvalidInput, match="raw_scores"):
        run(h, _request(), {"method": "cosine", "raw_scores": True})


# results equal the reference ----------------------------------------------------------------------------------
def _pipeline_scores(model, query: str, docs: list[str]) -> list[float]:
    import transformers

    pipe = transformers.pipeline(
        "text-classification", model=model.module, tokenizer=model.tokenizer, device="cpu"
    )
    return [pipe({"text": query, "text_pair": d})["score"] for d in docs]


def test_cross_encoder_rerank_equals_the_pipeline(loaded, handler, run) -> None:
    model = loaded("bert-rerank")
    ref = _pipeline_scores(model, QUERY, DOCS)
    out = run(handler("bert-rerank", "rerank"), _request())
    assert out["method"] == "cross-encoder"
    order = [r["index"] for r in out["results"]]
    assert order == sorted(range(len(DOCS)), key=lambda i: -ref[i])
    assert [r["relevance_score"] for r in out["results"]] == pytest.approx([ref[i] for i in order], abs=1e-4)
    assert all("document" not in r for r in out["results"])
    top = run(handler("bert-rerank", "rerank"), _request(), {"top_n": 2, "return_documents": True})
    assert [r["index"] for r in top["results"]] == order[:2]
    assert [r["document"] for r in top["results"]] == [{"text": DOCS[i]} for i in order[:2]]
    # top_n past the number of documents: all of them, ranked ("at most top_n")
    assert len(run(handler("bert-rerank", "rerank"), _request(), {"top_n": 50})["results"]) == len(DOCS)


def test_cohere_document_objects_and_raw_scores(loaded, handler, run) -> None:
    model = loaded("bert-rerank")
    enc = model.tokenizer([QUERY] * len(DOCS), DOCS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model.module(**enc).logits[:, 0].tolist()
    out = run(handler("bert-rerank", "rerank"), _request([{"text": d} for d in DOCS]), {"raw_scores": True})
    for r in out["results"]:
        assert r["relevance_score"] == pytest.approx(logits[r["index"]], abs=1e-4)


def test_score_forms_equal_the_pipeline(loaded, handler, run) -> None:
    model = loaded("bert-rerank")
    h = handler("bert-rerank", "score")
    one_many = run(h, {"text_1": QUERY, "text_2": DOCS})
    assert one_many["method"] == "cross-encoder"
    assert one_many["scores"] == pytest.approx(_pipeline_scores(model, QUERY, DOCS), abs=1e-4)
    pairs = run(h, {"text_1": DOCS[:3], "text_2": DOCS[2:5]})
    ref = [_pipeline_scores(model, a, [b])[0] for a, b in zip(DOCS[:3], DOCS[2:5], strict=True)]
    assert pairs["scores"] == pytest.approx(ref, abs=1e-4)
    assert run(h, {"text_1": QUERY, "text_2": DOCS[0]})["scores"] == pytest.approx(
        one_many["scores"][:1], abs=1e-4
    )
    assert run(h, {"text_1": [QUERY], "text_2": DOCS})["scores"] == pytest.approx(
        one_many["scores"], abs=1e-4
    )
    with pytest.raises(InvalidInput, match="'text_1' has 2 texts and 'text_2' 3") as e:
        run(h, {"text_1": DOCS[:2], "text_2": DOCS[:3]})
    assert e.value.param == "text_2"
    with pytest.raises(InvalidInput, match="'text_1' must be a non-empty string"):
        run(h, {"text_1": "", "text_2": DOCS})
    with pytest.raises(InvalidInput, match=r"'inputs' must be an object"):
        run(h, {"text_1": QUERY})


def test_cosine_rerank_and_score_equal_sentence_transformers(minilm_path, handler, run) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_path), device="cpu")
    vecs = st.encode([QUERY, *DOCS], normalize_embeddings=True, convert_to_numpy=True)
    ref = vecs[1:] @ vecs[0]
    out = run(handler("minilm", "rerank"), _request(), {"method": "cosine", "return_documents": True})
    assert out["method"] == "cosine"
    order = [r["index"] for r in out["results"]]
    assert order == list(np.argsort(-ref, kind="stable"))
    assert [r["relevance_score"] for r in out["results"]] == pytest.approx(list(ref[order]), abs=1e-4)
    assert out["results"][0]["document"] == {"text": DOCS[order[0]]}
    score = run(handler("minilm", "score"), {"text_1": DOCS[:2], "text_2": DOCS[3:5]}, {"method": "cosine"})
    expected = [float(vecs[1 + i] @ vecs[4 + i]) for i in range(2)]
    assert score["scores"] == pytest.approx(expected, abs=1e-4)


def test_scores_do_not_depend_on_batch_neighbours(handler) -> None:
    """The pairs of two requests in one batch (as the scheduler forms it) score as each request alone."""
    h = handler("bert-rerank", "rerank")
    a_items, a_params, _ = h.parse(_request(DOCS[:2]), {})
    b_items, b_params, _ = h.parse(_request(DOCS, query="Who fell on Monday?"), {"top_n": 3})
    assert h.batch_key(a_params) == h.batch_key(b_params)  # one queue key: they may share a batch
    batch = h.preprocess(a_items + b_items, a_params)
    with torch.inference_mode():
        res = h.postprocess(batch, h.forward(batch, a_params), a_params)
    together = h.assemble(res[2:], b_params, False)
    alone_items, _, _ = h.parse(_request(DOCS, query="Who fell on Monday?"), {"top_n": 3})
    alone_batch = h.preprocess(alone_items, b_params)
    with torch.inference_mode():
        alone = h.assemble(
            h.postprocess(alone_batch, h.forward(alone_batch, b_params), b_params), b_params, False
        )
    assert [r["index"] for r in together["results"]] == [r["index"] for r in alone["results"]]
    for x, y in zip(together["results"], alone["results"], strict=True):
        assert math.isclose(x["relevance_score"], y["relevance_score"], abs_tol=1e-5)
