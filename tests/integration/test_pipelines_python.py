"""Pipelines through the Python API on real tiny models: `Provider.pipeline` / `apipeline` / `pipeline_stream`,
routing by a classifier's label, a map over a list as one batched request, fan-out on two models, a step whose
model failed to load served by its fallback, a cancelled `apipeline` that stops the running step, and `timeout=`
for the whole pipeline."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from hf_provider.errors import DeadlineExceeded, PipelineNotFound
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.testing.models import build_sized_gpt2

FEW = {"max_new_tokens": 4}


class Counts:
    """Observer: requests ended per (model, task, outcome) and tokens generated (other hooks are no-ops)."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, str, str]] = []
        self.tokens = 0
        self.pipelines: list[tuple[str, str | None, str]] = []
        self.lock = threading.Lock()

    def request_done(self, model: str, task: str, revision: Any, outcome: str, *a: Any) -> None:
        with self.lock:
            self.ends.append((model, task, outcome))

    def tokens_generated(self, model: str, task: str, n: int) -> None:
        with self.lock:
            self.tokens += n

    def pipeline_done(self, pipeline: str, step: str | None, outcome: str, seconds: float) -> None:
        self.pipelines.append((pipeline, step, outcome))

    def __getattr__(self, name: str) -> Any:
        if name == "outcome":  # an `outcome` hook would replace request_done (observability/outcomes.py)
            raise AttributeError(name)
        return lambda *a, **k: None


@pytest.fixture(scope="module")
def provider(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    broken = tmp_path_factory.mktemp("broken")
    (broken / "config.json").write_text("{not json")
    lm = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=4096)
    t5 = str(tiny_models["t5"])
    cfg = {
        "metrics_enabled": False,
        "models": [
            {"name": "t5", "source": t5, "device": "cpu", "tasks": ["translation", "summarization"]},
            {"name": "cls", "source": str(tiny_models["bert-cls"]), "device": "cpu"},
            {"name": "lm", "source": str(lm), "device": "cpu", "tasks": ["text-generation"]},
            {"name": "gone", "source": str(broken), "tasks": ["summarization"], "fallbacks": ["t5"]},
        ],
        "pipelines": [
            {
                "name": "route",
                "steps": [
                    {"name": "classify", "model": "cls", "task": "text-classification"},
                    {
                        "name": "short",
                        "model": "t5",
                        "task": "summarization",
                        "input": "{inputs}",
                        "parameters": FEW,
                        "when": {"value": "{classify.label}", "one_of": ["NEGATIVE", "LABEL_0"]},
                    },
                    {
                        "name": "long",
                        "model": "lm",
                        "task": "text-generation",
                        "input": "{inputs}",
                        "parameters": FEW,
                        "when": {"value": "{classify.label}", "not_equals": "NEGATIVE"},
                    },
                    {
                        "name": "answer",
                        "model": "t5",
                        "task": "translation",
                        "input": "{short.text|long.text}",
                    },
                ],
            },
            {
                "name": "each",
                "steps": [
                    {
                        "name": "sums",
                        "model": "t5",
                        "task": "summarization",
                        "map": "{inputs.docs}",
                        "parameters": FEW,
                    }
                ],
            },
            {
                "name": "fan",
                "steps": [
                    {"name": "t", "model": "t5", "task": "translation", "parameters": FEW},
                    {
                        "name": "g",
                        "model": "lm",
                        "task": "text-generation",
                        "input": "{inputs}",
                        "parameters": FEW,
                    },
                    {"name": "both", "model": "t5", "task": "summarization", "input": "{t.text} / {g.text}"},
                ],
            },
            {
                "name": "rescued",
                "steps": [{"name": "s", "model": "gone", "task": "summarization", "parameters": FEW}],
            },
            {
                "name": "slow",
                "steps": [
                    {
                        "name": "ramble",
                        "model": "lm",
                        "task": "text-generation",
                        "parameters": {"max_new_tokens": 3000},
                    },
                    {"name": "after", "model": "t5", "task": "summarization", "parameters": FEW},
                ],
            },
            {
                "name": "talk",
                "steps": [
                    {"name": "t", "model": "t5", "task": "translation", "parameters": FEW},
                    {
                        "name": "say",
                        "model": "lm",
                        "task": "text-generation",
                        "parameters": {"max_new_tokens": 6},
                    },
                ],
            },
        ],
    }
    obs = Counts()
    with Provider(settings=load_settings(cfg), observer=obs) as p:
        yield p, obs


def test_routing_by_a_classifiers_label_runs_one_branch(provider: Any) -> None:
    p, obs = provider
    out = p.pipeline("route", "a fine day", return_steps=True)
    steps = out["steps"]
    label = steps["classify"]["output"][0]["label"]
    ran = "short" if label == "NEGATIVE" else "long"
    other = {"short": "long", "long": "short"}[ran]
    assert not steps[ran]["skipped"] and steps[other]["skipped"]
    assert steps[other]["served_by"] is None
    assert out["outputs"] == steps["answer"]["output"]
    assert ("route", other, "skipped") in obs.pipelines and ("route", None, "ok") in obs.pipelines


def test_a_map_is_one_batched_request_of_all_items(provider: Any) -> None:
    p, obs = provider
    before = len(obs.ends)
    out = p.pipeline("each", {"docs": ["first text", "second text", "third text"]})
    assert len(out) == 3 and all(isinstance(o["summary_text"], str) for o in out)
    assert obs.ends[before:] == [("t5", "summarization", "ok")]  # one request for the three items


def test_fan_out_over_two_models_then_fan_in_async(provider: Any) -> None:
    p, _ = provider
    out = asyncio.run(p.apipeline("fan", "hello there", return_steps=True))
    assert set(out["steps"]) == {"t", "g", "both"}
    assert out["steps"]["t"]["output"]["translation_text"] is not None
    assert "summary_text" in out["outputs"]


def test_a_steps_model_fallbacks_apply(provider: Any) -> None:
    p, _ = provider
    out = p.pipeline("rescued", "some text to summarise", return_steps=True)
    assert out["steps"]["s"]["served_by"] == "t5" and out["steps"]["s"]["model"] == "gone"


def test_timeout_holds_for_the_whole_pipeline(provider: Any) -> None:
    p, obs = provider
    with pytest.raises(DeadlineExceeded, match="pipeline 'slow', step 'ramble'"):
        p.pipeline("slow", "Once upon", timeout=0.3)
    assert p.pipelines.last.started == ["ramble"]
    assert ("slow", "after", "ok") not in obs.pipelines


def test_cancelling_apipeline_stops_the_running_step(provider: Any) -> None:
    p, obs = provider
    before_ends = len(obs.ends)

    async def main() -> None:
        task = asyncio.create_task(p.apipeline("slow", "Once upon"))
        start = obs.tokens
        while obs.tokens < start + 3:  # step 1 is generating
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    sched = p.manager.get("lm").scheduler
    idle = threading.Event()
    for _ in range(1000):
        if sched.in_flight == 0 and not sched.pending.device_busy:
            break
        idle.wait(0.01)
    assert sched.in_flight == 0
    assert ("lm", "text-generation", "cancelled") in obs.ends[before_ends:]
    assert not [e for e in obs.ends[before_ends:] if e[0] == "t5"]  # step 2 never ran


def test_the_last_step_streams_and_unknown_pipelines_are_named(provider: Any) -> None:
    p, _ = provider

    async def main() -> tuple[list[str], Any]:
        stream = await p.pipeline_stream("talk", "Hello", {"say": {"max_new_tokens": 4}})
        deltas = [d async for d in stream]
        return deltas, stream.result

    deltas, result = asyncio.run(main())
    assert deltas and result.output["generated_text"] == "".join(deltas)
    assert result.output["completion_tokens"] == 4
    with pytest.raises(PipelineNotFound, match="Configured pipelines: each, fan, rescued, route, slow, talk"):
        p.pipeline("nope", "x")
