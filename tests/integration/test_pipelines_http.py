"""Pipelines over HTTP on real tiny models (T5 for translation and summarization, a long-context decoder for a step
that runs until stopped): the answer and its steps, a deadline that passes during step 1 (504, step 2 never
computed), a client that disconnects during step 1 (nothing computed afterwards, nothing in flight), a failing
step 2 (its error names step, model and task; the error report groups by pipeline and step), streaming of the
last step, metrics, stats and one trace span per step."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hf_provider.observability.tracing import Tracing
from hf_provider.provider import Provider
from hf_provider.server.app import create_app
from hf_provider.server.factory import make_observer
from hf_provider.settings import FaultRule, load_settings
from hf_provider.testing.models import build_sized_gpt2

LONG = {"max_new_tokens": 3000}


def config(tiny_models: dict[str, Path], home: Path) -> dict[str, Any]:
    t5 = str(tiny_models["t5"])
    lm = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=4096)
    few = {"max_new_tokens": 4}
    return {
        "home": str(home),
        "history_enabled": False,
        "models": [
            {"name": "t5", "source": t5, "device": "cpu", "tasks": ["translation", "summarization"]},
            {"name": "t5b", "source": t5, "device": "cpu", "tasks": ["summarization"]},
            {"name": "lm", "source": str(lm), "device": "cpu", "tasks": ["text-generation"]},
        ],
        "faults": {"rules": []},
        "pipelines": [
            {
                "name": "digest",
                "steps": [
                    {"name": "translate", "model": "t5", "task": "translation", "parameters": few},
                    {"name": "summary", "model": "t5", "task": "summarization", "input": "{translate.text}"},
                ],
            },
            {
                "name": "slow",  # step 1 generates until the deadline or the client stops it
                "steps": [
                    {"name": "ramble", "model": "lm", "task": "text-generation", "parameters": LONG},
                    {"name": "summary", "model": "t5b", "task": "summarization", "parameters": few},
                ],
            },
            {
                "name": "broken",
                "steps": [
                    {"name": "translate", "model": "t5", "task": "translation", "parameters": few},
                    {"name": "summary", "model": "t5b", "task": "summarization", "parameters": few},
                ],
            },
            {
                "name": "talk",
                "steps": [
                    {"name": "translate", "model": "t5", "task": "translation", "parameters": few},
                    {
                        "name": "reply",
                        "model": "lm",
                        "task": "text-generation",
                        "parameters": {"max_new_tokens": 5},
                    },
                ],
            },
        ],
    }


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = load_settings(config(tiny_models, tmp_path_factory.mktemp("pipelines")))
    provider = Provider(settings=settings, observer=make_observer(settings), allow_adhoc=False)
    exporter = InMemorySpanExporter()
    provider.tracing = Tracing(exporter, batch=False)
    app = create_app(provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, provider, exporter


@pytest.fixture
def server(served: Any) -> Any:
    _client, provider, exporter = served
    provider.faults.set([])
    exporter.clear()
    return served


def requests_of(provider: Provider, model: str, task: str) -> float:
    """Requests the model ended for the task, every outcome (the Prometheus counter the observer keeps)."""
    total = 0.0
    for metric in provider.observer.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "hfp_requests_total" and s.labels["model"] == model and s.labels["task"] == task:
                total += s.value
    return total


def settled(provider: Provider, model: str) -> None:
    """Bounded wait (no timing asserted) until the model has nothing in flight and its device is idle."""
    sched = provider.manager.get(model).scheduler
    idle = threading.Event()
    for _ in range(1000):
        if sched.in_flight == 0 and not sched.pending.device_busy:
            return
        idle.wait(0.01)
    raise AssertionError(f"{sched.in_flight} requests of {model} still in flight")


def test_a_deadline_during_step_1_answers_504_and_step_2_is_never_computed(server: Any) -> None:
    client, provider, _ = server
    before = requests_of(provider, "t5b", "summarization")
    r = client.post("/v1/pipelines/slow", json={"inputs": "Once upon"}, headers={"X-Request-Timeout": "0.3"})
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["code"] == "timeout" and err["step"] == "ramble" and err["pipeline"] == "slow"
    assert "pipeline 'slow', step 'ramble' (model 'lm', task 'text-generation')" in err["message"]
    assert provider.pipelines.last.started == ["ramble"]
    settled(provider, "lm")
    assert requests_of(provider, "t5b", "summarization") == before  # step 2: not one request


def test_a_client_gone_during_step_1_leaves_nothing_computed_and_nothing_in_flight(server: Any) -> None:
    client, provider, _ = server
    app = client.app
    before = requests_of(provider, "t5b", "summarization")
    generating = threading.Event()
    sched = provider.manager.get("lm").scheduler
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        body = orjson.dumps({"inputs": "Once upon"})
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            while not generating.is_set():  # the disconnect comes once step 1 is generating
                if sched.in_flight and provider.pipelines.last.started == ["ramble"]:
                    generating.set()
                    break
                await asyncio.sleep(0.005)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": "/v1/pipelines/slow",
            "raw_path": b"/v1/pipelines/slow",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "scheme": "http",
            "state": {},
        }
        await app(scope, receive, send)

    asyncio.run(main())
    assert generating.is_set()
    assert provider.pipelines.last.started == ["ramble"]
    settled(provider, "lm")
    assert sched.in_flight == 0
    assert requests_of(provider, "t5b", "summarization") == before
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    assert status == 499


def test_a_failing_step_2_names_step_model_and_task_and_its_report_groups_by_step(server: Any) -> None:
    client, provider, _ = server
    provider.faults.set([FaultRule(phase="forward", model="t5b", rate=1.0)])
    r = client.post("/v1/pipelines/broken", json={"inputs": "some long text to summarise"})
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert (err["pipeline"], err["step"], err["model"], err["task"]) == (
        "broken",
        "summary",
        "t5b",
        "summarization",
    )
    assert err["code"] == "internal_error"
    assert "step 'summary' (model 't5b', task 'summarization')" in err["message"]
    groups = [g for g in provider.errors() if g["pipeline"] == "broken"]
    assert [(g["step"], g["model"]) for g in groups] == [("summary", "t5b")]
    # the same fault outside the pipeline is a group of its own
    provider.faults.set([FaultRule(phase="forward", model="t5b", rate=1.0)])
    plain = client.post("/v1/tasks/summarization", json={"model": "t5b", "inputs": "text"})
    assert plain.status_code == 500
    fps = {g["fingerprint"] for g in provider.errors(model="t5b")}
    assert len(fps) == 2


def test_a_bad_parameter_of_step_2_is_a_400_naming_the_step(server: Any) -> None:
    client, _, _ = server
    body = {"inputs": "text", "parameters": {"summary": {"max_new_tokens": -1}}}
    r = client.post("/v1/pipelines/digest", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["step"] == "summary"
    r = client.post("/v1/pipelines/digest", json={"inputs": "text", "parameters": {"sumary": {}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "parameters.sumary"
    r = client.post("/v1/pipelines/nope", json={"inputs": "text"})
    assert r.status_code == 404 and "digest" in r.json()["error"]["message"]


def test_two_steps_answer_with_every_steps_output_and_are_counted(server: Any) -> None:
    client, _provider, _exporter = server
    r = client.post("/v1/pipelines/digest", json={"inputs": "The cat sat on the mat.", "return_steps": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["steps"]) == {"translate", "summary"}
    assert body["outputs"] == body["steps"]["summary"]["output"]
    assert isinstance(body["outputs"]["summary_text"], str)
    plain = client.post("/v1/pipelines/digest", json={"inputs": "The cat sat on the mat."}).json()
    assert "steps" not in plain
    metrics = client.get("/metrics").text
    assert 'hfp_pipeline_requests_total{outcome="ok",pipeline="digest",step="summary"}' in metrics
    assert 'hfp_pipeline_latency_seconds_count{pipeline="digest",step=""}' in metrics
    stats = client.get("/v1/admin/stats", params={"window": 60}).json()["pipelines"]["digest"]
    assert stats["outcomes"]["ok"] >= 2 and set(stats["steps"]) == {"translate", "summary"}
    listed = client.get("/v1/pipelines").json()["data"]
    assert [s["name"] for s in next(p for p in listed if p["name"] == "digest")["steps"]] == [
        "translate",
        "summary",
    ]


def test_each_step_is_a_span_under_the_request_span(server: Any) -> None:
    client, _, exporter = server
    assert client.post("/v1/pipelines/digest", json={"inputs": "A short text."}).status_code == 200
    spans = exporter.get_finished_spans()
    http = next(s for s in spans if s.name == "POST /v1/pipelines/digest")
    steps = {s.attributes["hfp.step"]: s for s in spans if s.name == "hfp.pipeline.step"}
    assert set(steps) == {"translate", "summary"}
    assert all(s.parent.span_id == http.context.span_id for s in steps.values())
    requests = [s for s in spans if s.name == "hfp.request"]
    assert {r.parent.span_id for r in requests} == {s.context.span_id for s in steps.values()}


def test_the_last_step_streams_its_tokens(server: Any) -> None:
    client, _, _ = server
    with client.stream("POST", "/v1/pipelines/talk", json={"inputs": "Hello", "stream": True}) as r:
        assert r.status_code == 200
        events = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    deltas = [e["delta"] for e in events if "delta" in e]
    final = events[-1]
    assert deltas and final["outputs"]["generated_text"] == "".join(deltas)
    r = client.post("/v1/pipelines/digest", json={"inputs": "x", "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
