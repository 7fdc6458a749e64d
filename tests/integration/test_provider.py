"""The Python API end to end on tiny models and the real MiniLM."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hf_provider.errors import InvalidInput, ModelNotFound, TaskNotSupported, TooManyItems
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec


@pytest.fixture(scope="module")
def provider(tiny_models, minilm_path):
    specs = [
        ModelSpec(
            name="minilm",
            source=str(minilm_path),
            tasks=["embeddings"],
            batching={"max_items_per_request": 16},
        ),
        ModelSpec(name="lm", source=str(tiny_models["decoder"])),
        ModelSpec(name="ner", source=str(tiny_models["bert-ner"])),
        ModelSpec(name="mlm", source=str(tiny_models["bert-mlm"])),
        ModelSpec(name="qa", source=str(tiny_models["bert-qa"])),
        ModelSpec(
            name="cls", source=str(tiny_models["bert-cls"]), defaults={"text-classification": {"top_k": 2}}
        ),
    ]
    with Provider(specs, settings=load_settings({"metrics_enabled": False}), allow_adhoc=False) as p:
        yield p


def test_minilm_semantics(provider):
    v = np.asarray(
        provider.embed(
            "minilm",
            [
                "A man is playing a guitar.",
                "Someone plays an instrument.",
                "The stock market fell sharply today.",
            ],
        )
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_loaded_reports_fields(provider, minilm_path):
    provider.load("minilm")
    row = next(d for d in provider.loaded() if d["name"] == "minilm")
    assert row["source"] == str(minilm_path) and row["commit"] is None
    assert row["device"] == "cpu" and row["dtype"] == "float32" and row["tasks"] == ["embeddings"]
    assert 80_000_000 < row["weight_bytes"] < 100_000_000  # 22.7M float32 parameters


def test_every_task_well_formed(provider):
    assert isinstance(
        provider.run("lm", "text-generation", "Hello", {"max_new_tokens": 3})["generated_text"], str
    )
    ents = provider.run("ner", "token-classification", "Alice lives in Paris")
    assert all({"entity_group", "score", "word", "start", "end"} <= set(e) for e in ents)
    masks = provider.run("mlm", "fill-mask", "Paris is a [MASK].")
    assert len(masks) == 5 and all("token_str" in m for m in masks)
    ans = provider.run("qa", "question-answering", {"question": "Who?", "context": "Alice lives in Paris."})
    assert {"answer", "score", "start", "end"} <= set(ans)
    labels = provider.run("cls", "text-classification", "great")  # default top_k=2 from the spec
    assert [x["label"] for x in labels] != [] and len(labels) == 2


def test_unknown_model_lists_configured(provider):
    with pytest.raises(ModelNotFound) as e:
        provider.run("nope", "embeddings", "x")
    assert "minilm" in e.value.message and "lm" in e.value.available


def test_unknown_or_unserved_task_lists_served(provider):
    with pytest.raises(TaskNotSupported) as e:
        provider.run("minilm", "summarization", "x")
    assert e.value.supported == ["embeddings"]


def test_bad_inputs_are_clear(provider):
    with pytest.raises(InvalidInput, match="non-empty"):
        provider.run("minilm", "embeddings", [])
    with pytest.raises(InvalidInput, match="must be a string"):
        provider.run("minilm", "embeddings", [1, "a"])  # [1, 2] alone is token ids
    with pytest.raises(TooManyItems, match="at most 16"):
        provider.run("minilm", "embeddings", ["x"] * 17)
    with pytest.raises(InvalidInput, match="truncate"):
        provider.run("minilm", "embeddings", "word " * 400)
    assert len(provider.run("minilm", "embeddings", "word " * 400, {"truncate": True})) == 384
    for bad in ("urgent", ["batch"]):
        with pytest.raises(InvalidInput, match="priority"):
            provider.run("minilm", "embeddings", "x", priority=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown parameter"):
        provider.run("minilm", "embeddings", "x", {"colour": "red"})
    for reserved in ("sink", "timeout", "priority"):
        with pytest.raises(InvalidInput, match=f"'{reserved}' is reserved") as e:
            provider.run("minilm", "embeddings", "x", {reserved: "x"})
        assert e.value.param == reserved
    with pytest.raises(InvalidInput, match="timeout must be positive"):
        provider.run("minilm", "embeddings", "x", timeout=0)
    with pytest.raises(InvalidInput, match="parameters must be an object"):
        provider.run("minilm", "embeddings", "x", ["truncate"])  # type: ignore[arg-type]


def test_stream_and_async(provider):
    deltas = list(provider.stream("lm", "text-generation", "Hello there", {"max_new_tokens": 6}))
    full = provider.run("lm", "text-generation", "Hello there", {"max_new_tokens": 6})["generated_text"]
    assert "".join(deltas) == full

    async def go():
        parts = [
            d async for d in provider.astream("lm", "text-generation", "Hello there", {"max_new_tokens": 6})
        ]
        out = await provider.arun("minilm", "embeddings", ["a", "b"])
        return parts, out

    parts, out = asyncio.run(go())
    assert "".join(parts) == full and len(out) == 2
    with pytest.raises(InvalidInput, match="does not stream"):
        list(provider.stream("minilm", "embeddings", "x"))


def test_from_config_and_adhoc_folder(tiny_models, tmp_path):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(
        f'[[models]]\nname = "c"\nsource = "{tiny_models["bert-cls"]}"\ntasks = ["text-classification"]\n'
    )
    with Provider.from_config(cfg) as p:
        assert p.run("c", "text-classification", "good")[0]["label"] in {"NEGATIVE", "POSITIVE"}
        # An unconfigured local folder is served on demand by the Python API.
        assert "generated_text" in p.run(
            str(tiny_models["decoder"]), "text-generation", "hi", {"max_new_tokens": 2}
        )


def test_admin_view_keeps_measured_memory_apart_from_the_estimates(provider):
    provider.embed("minilm", ["a sentence long enough to need some working memory"] * 16)
    row = next(m for m in provider.admin.describe() if m["name"] == "minilm")
    # Measured: the weights, and the largest forward pass's working memory since load.
    assert row["weight_bytes"] > 80 * 2**20
    assert isinstance(row["working_bytes_peak"], int) and row["working_bytes_peak"] >= 0
    # Estimated: the working memory of a full batch, held by the budget on top of the measured weights.
    assert row["working_bytes_estimated"] > 0
    assert row["accounted_bytes"] == row["weight_bytes"] + row["working_bytes_estimated"]
