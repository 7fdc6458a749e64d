"""One weight set, several tasks: proven by module identity and by memory."""

from __future__ import annotations

import pytest

from hf_provider.errors import TaskNotSupported
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_t5_small_random
from hf_provider.testing.probes import rss_of_load


def _provider(*specs: ModelSpec) -> Provider:
    return Provider(list(specs), settings=load_settings({"metrics_enabled": False}))


def test_t5_tasks_share_one_module(tiny_models):
    spec = ModelSpec(
        name="t5",
        source=str(tiny_models["t5"]),
        tasks=["translation", "summarization", "question-answering", "text2text-generation"],
    )
    with _provider(spec) as p:
        info = p.load("t5")
        entry = p.manager.get("t5")
        modules = {id(h.model.module) for h in entry.model.handlers.values()}
        assert modules == {id(entry.model.module)}
        assert set(info["tasks"]) == set(spec.tasks)
        text = "The city council announced a plan to rebuild the harbour after months of debate."
        assert isinstance(p.run("t5", "summarization", text, {"max_new_tokens": 4})["summary_text"], str)
        assert isinstance(p.run("t5", "translation", text, {"max_new_tokens": 4})["translation_text"], str)
        qa = p.run(
            "t5", "question-answering", {"question": "Who announced?", "context": text}, {"max_new_tokens": 4}
        )
        assert isinstance(qa["answer"], str)


def test_task_prefix_comes_from_model_config(tiny_models):
    with _provider(ModelSpec(name="t5", source=str(tiny_models["t5"]), tasks=["summarization"])) as p:
        handler = p.manager.handler(p.manager.get("t5"), "summarization")
        assert handler.prefix({}) == "summarize: "
        assert p.manager.handler(p.manager.get("t5"), "summarization").model.spec.name == "t5"


def test_add_task_reuses_loaded_weights(tiny_models):
    with _provider(ModelSpec(name="t5", source=str(tiny_models["t5"]), tasks=["summarization"])) as p:
        p.load("t5")
        entry = p.manager.get("t5")
        module = entry.model.module
        with pytest.raises(TaskNotSupported, match="not enabled"):
            p.run("t5", "translation", "hello")
        p.add_task("t5", "translation")
        assert entry.loads == 1 and entry.model.module is module
        assert p.manager.handler(entry, "translation").model.module is module
        assert "translation_text" in p.run("t5", "translation", "hello", {"max_new_tokens": 3})


def test_unservable_task_is_refused_at_load_naming_the_servable_ones(tiny_models):
    with _provider(ModelSpec(name="lm", source=str(tiny_models["decoder"]), tasks=["fill-mask"])) as p:
        with pytest.raises(TaskNotSupported) as e:
            p.load("lm")
        assert "text-generation" in e.value.message and "fill-mask" in e.value.message
        assert p.loaded() == []


def test_three_tasks_cost_under_ten_percent_over_one():
    """T5 of t5-small size (~60M parameters): RSS for three tasks vs one, each in a fresh process."""
    from tests.conftest import TINY_CACHE

    folder = build_t5_small_random(TINY_CACHE)
    one = rss_of_load(folder, ["summarization"])
    three = rss_of_load(folder, ["summarization", "translation", "question-answering"])
    weight = one["weight_bytes"]
    assert weight > 200_000_000  # ~60M float32 parameters
    assert three["distinct_modules"] == 1
    extra = three["rss_added"] - one["rss_added"]
    print(
        f"\nT5 weight bytes {weight}; RSS added: 1 task {one['rss_added']}, 3 tasks {three['rss_added']}; "
        f"extra {extra} = {extra / weight:.3%} of weights"
    )
    assert extra < 0.10 * weight
