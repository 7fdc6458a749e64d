"""OpenTelemetry spans of the request path, read back from an in-memory span exporter (no collector, no mocks):
the client's traceparent is honoured and returned, spans carry model / revision / task / batch size / outcome and
never the inputs, failures and streams are traced, and with tracing off no layer is installed at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hf_provider.observability.tracing import INSTALL_HINT, Tracing, TracingSettings
from hf_provider.provider import Provider
from hf_provider.server.app import create_app
from hf_provider.server.factory import make_observer
from hf_provider.settings import FaultRule, load_settings

SECRET_INPUT = "the patient's name is Zebulon Quartermaine"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


def _config(tiny_models: dict[str, Path], tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "home": str(tmp_path / "home"),
        "history_enabled": False,
        "models": [
            {"name": "enc", "source": str(tiny_models["bert-cls"]), "tasks": ["embeddings"], "device": "cpu"},
            {
                "name": "gen",
                "source": str(tiny_models["decoder"]),
                "tasks": ["text-generation"],
                "device": "cpu",
                "batching": {"generation": "continuous"},  # rows join the running batch: hfp.generate
            },
        ],
        **extra,
    }


def _app(config: dict[str, Any], exporter: InMemorySpanExporter | None) -> Any:
    settings = load_settings(config)
    provider = Provider(settings=settings, observer=make_observer(settings), allow_adhoc=False)
    if exporter is not None:
        provider.tracing = Tracing(exporter, batch=False)  # what [tracing] builds, with an in-memory exporter
    return create_app(provider)


def _by_name(spans: list[Any]) -> dict[str, Any]:
    return {s.name: s for s in spans}


def _no_inputs(spans: list[Any]) -> None:
    for s in spans:
        for v in (s.attributes or {}).values():
            assert "Zebulon" not in str(v), (s.name, v)
        assert "Zebulon" not in s.name


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    exporter = InMemorySpanExporter()
    faults = {"rules": [{"phase": "forward", "model": "enc", "rate": 0}]}
    app = _app(_config(tiny_models, tmp_path_factory.mktemp("traced"), faults=faults), exporter)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, exporter, app


@pytest.fixture
def traced(server: Any) -> Any:
    _, exporter, app = server
    exporter.clear()
    app.state.provider.faults.set([])
    return server


def test_a_bad_request_is_traced_with_its_status_and_no_request_span(traced: Any) -> None:
    c, exporter, _ = traced
    r = c.post("/v1/embeddings", json={"model": "enc", "input": 42}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 400
    assert r.headers["traceparent"].split("-")[1] == CLIENT_TRACE
    spans = _by_name(exporter.get_finished_spans())
    server = spans["POST /v1/embeddings"]
    assert server.attributes["http.response.status_code"] == 400
    assert "hfp.request" not in spans  # refused before a Request existed


def test_a_failing_forward_pass_gives_an_error_span_with_the_class_only(traced: Any) -> None:
    c, exporter, app = traced
    app.state.provider.faults.set([FaultRule(phase="forward", model="enc", rate=1.0)])
    r = c.post("/v1/embeddings", json={"model": "enc", "input": SECRET_INPUT})
    assert r.status_code == 500
    spans = exporter.get_finished_spans()
    req = _by_name(spans)["hfp.request"]
    assert req.attributes["hfp.outcome"] == "error"
    assert req.attributes["error.type"] == "RuntimeError"
    assert req.status.status_code.name == "ERROR" and "Zebulon" not in (req.status.description or "")
    assert {"hfp.queue_wait", "hfp.batch", "hfp.preprocess"} <= set(_by_name(spans))
    _no_inputs(spans)


def test_spans_of_a_request_honour_the_client_traceparent(traced: Any) -> None:
    c, exporter, app = traced
    r = c.post(
        "/v1/embeddings",
        json={"model": "enc", "input": [SECRET_INPUT, "two"]},
        headers={"traceparent": TRACEPARENT},
    )
    assert r.status_code == 200
    version, trace_id, span_id, flags = r.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
    spans = exporter.get_finished_spans()
    names = _by_name(spans)
    expected = {"hfp.parse", "hfp.request", "hfp.queue_wait", "hfp.batch", "hfp.preprocess", "hfp.forward"}
    assert expected | {"hfp.postprocess", "POST /v1/embeddings"} <= set(names)
    assert all(f"{s.context.trace_id:032x}" == CLIENT_TRACE for s in spans)
    server = names["POST /v1/embeddings"]
    assert f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"  # the client's span is the parent
    assert f"{server.context.span_id:016x}" == span_id  # and the answer names the server's span
    req = names["hfp.request"]
    assert req.parent.span_id == server.context.span_id
    assert names["hfp.parse"].parent.span_id == server.context.span_id
    commit = app.state.provider.manager.entry("enc").model.commit
    assert req.attributes["hfp.model"] == "enc" and req.attributes["hfp.task"] == "embeddings"
    assert req.attributes["hfp.revision"] == (commit or "") and req.attributes["hfp.outcome"] == "ok"
    assert req.attributes["hfp.items"] == 2 and req.attributes["hfp.batch_size"] >= 2
    batch = names["hfp.batch"]
    assert batch.parent.span_id == req.context.span_id
    for stage in ("hfp.preprocess", "hfp.forward", "hfp.postprocess"):
        s = names[stage]
        assert s.parent.span_id == batch.context.span_id
        assert req.start_time <= s.start_time <= s.end_time <= req.end_time + 1_000_000, stage
    assert names["hfp.queue_wait"].end_time <= batch.start_time + 1_000_000
    assert server.start_time <= req.start_time and req.end_time <= server.end_time
    _no_inputs(spans)


def test_a_stream_gets_a_stream_span(traced: Any) -> None:
    c, exporter, _ = traced
    body = {"model": "gen", "prompt": SECRET_INPUT, "max_tokens": 4, "stream": True}
    with c.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        assert len(r.headers["traceparent"]) == 55
        "".join(r.iter_text())
    names = _by_name(exporter.get_finished_spans())
    assert names["hfp.request"].attributes["hfp.task"] == "text-generation"
    generate = names["hfp.generate"]
    assert generate.parent.span_id == names["hfp.request"].context.span_id
    assert names["hfp.queue_wait"].end_time <= generate.start_time
    stream = names["hfp.stream"]
    assert stream.parent.span_id == names["hfp.request"].context.span_id
    _no_inputs(list(names.values()))


def test_the_python_api_is_traced_under_the_callers_span(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = Provider(settings=load_settings(_config(tiny_models, tmp_path)), allow_adhoc=False)
    provider.tracing = Tracing(
        exporter
    )  # the server's way: spans built on the tracing thread, exported in batches
    try:
        with provider.tracing.tracer.start_as_current_span("caller") as caller:
            provider.embed("enc", ["hello"])
        provider.tracing.flush()
        names = _by_name(exporter.get_finished_spans())
        assert names["hfp.request"].parent.span_id == caller.get_span_context().span_id
        assert names["hfp.parse"].parent.span_id == caller.get_span_context().span_id
    finally:
        provider.close()


def test_tracing_off_installs_nothing(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    app = _app(_config(tiny_models, tmp_path, load_on_start=False), None)
    assert app.state.provider.tracing is None
    assert all(m.cls.__name__ != "TraceRequests" for m in app.user_middleware)
    with TestClient(app) as c:
        r = c.post(
            "/v1/embeddings", json={"model": "enc", "input": "x"}, headers={"traceparent": TRACEPARENT}
        )
        assert r.status_code == 200 and "traceparent" not in r.headers


def test_settings_build_the_otlp_exporter_only_when_an_endpoint_is_set() -> None:
    assert Tracing.from_settings(TracingSettings()) is None
    on = TracingSettings(otlp_endpoint="http://127.0.0.1:9/v1/traces", sample_ratio=0.5)
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401  (the `tracing` extra)
    except ImportError:
        with pytest.raises(ImportError, match=r"hf-provider\[tracing\]"):
            Tracing.from_settings(on)
    else:
        t = Tracing.from_settings(on)
        assert t is not None
        t.shutdown()
    assert "tracing" in INSTALL_HINT
    with pytest.raises(ValueError, match="sample_ratio"):
        TracingSettings(otlp_endpoint="x", sample_ratio=2)


def test_an_unsampled_request_makes_no_spans_and_no_trace_of_its_own(traced: Any) -> None:
    c, exporter, _ = traced
    unsampled = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-00"  # the client's sampled flag is off: followed
    r = c.post("/v1/embeddings", json={"model": "enc", "input": "x"}, headers={"traceparent": unsampled})
    assert r.status_code == 200
    assert r.headers["traceparent"].endswith("-00") and CLIENT_TRACE in r.headers["traceparent"]
    assert exporter.get_finished_spans() == ()
