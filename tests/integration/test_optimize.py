"""optimize/ end to end on tiny random models: candidates built, guarded and served through the real task
handlers; `optimize = "auto"` on a T5 serving three tasks; the result cache; `hfp optimize --json`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hf_provider.errors import ProviderError
from hf_provider.hub.lockfile import read_lock
from hf_provider.hub.resolve import Resolved
from hf_provider.optimize import store
from hf_provider.optimize.backends import openvino_capabilities
from hf_provider.optimize.candidates import Candidate
from hf_provider.optimize.run import optimize
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

FAST = {"repeats": 2, "batch_repeats": 1}
SMALL = {"max_batch_size": 2}


def _provider(*specs: ModelSpec) -> Provider:
    return Provider(list(specs), settings=load_settings({"metrics_enabled": False}))


def _flip_labels(model, tasks, cache_dir) -> None:
    """A 'variant' that changes the answers: the classifier's logits negated."""
    with torch.no_grad():
        model.module.classifier.weight.neg_()
        model.module.classifier.bias.neg_()


BROKEN = Candidate("broken", "torch", lambda m, t: None, _flip_labels, "deliberately wrong")


def test_guard_refuses_a_deliberately_broken_variant_and_eager_stays(tiny_models, tmp_path):
    spec = ModelSpec(
        name="cls", source=str(tiny_models["bert-cls"]), tasks=["text-classification"], batching=SMALL
    )
    report = optimize(spec, candidates=[BROKEN], **FAST)
    row = report.row("broken")
    assert row is not None and not row.accepted and row.available
    assert "text-classification: top label differs" in row.reason and row.throughput_per_s is None
    assert report.chosen == "eager"
    # the choice goes into hfp.lock with the hardware it was measured on (a Hub snapshot has a commit to lock)
    from hf_provider.cli.optimize import record_in_lock

    commit = "c" * 40
    resolved = Resolved(tiny_models["bert-cls"], commit, "hub", "org/bert-cls", "main")
    recorded, _ = record_in_lock(tmp_path / "hfp.lock", report, resolved)
    entry = read_lock(tmp_path / "hfp.lock")["cls"]
    assert recorded and entry.commit == commit and entry.files
    assert dict(entry.optimized)["variant"] == "eager" and "cores" in dict(entry.optimized)["hardware"]


def test_exported_graphs_serve_embeddings_through_the_handler_and_rebuild_a_corrupt_artefact(tiny_models):
    source = str(tiny_models["bert-mlm"])
    report = optimize(
        ModelSpec(name="mlm", source=source, tasks=["fill-mask"], batching=SMALL),
        candidates=["onnx", "openvino", "openvino-bf16"],
        **FAST,
    )
    for name in ("onnx", "openvino"):  # both fp32 explicitly, on any CPU
        row = report.row(name)
        assert row.accepted and row.accuracy == 1.0, row  # same top token on every probe, probs within 0.02
        assert row.precision == "fp32"
    # bf16 exists only on a CPU with native bf16, where the guard judges it like any other (it may refuse it)
    bf16 = report.row("openvino-bf16")
    assert bf16.precision == "bf16" and bf16.available == ("BF16" in openvino_capabilities())
    assert bf16.accepted or bf16.reason, bf16
    texts = ["The quick brown fox jumps over the lazy dog.", "Is it safe?"]
    with _provider(ModelSpec(name="e", source=source, tasks=["embeddings"])) as p:
        eager = np.stack(p.run("e", "embeddings", texts))
    spec = ModelSpec(name="e", source=source, tasks=["embeddings"], optimize="onnx")
    with _provider(spec) as p:
        served = np.stack(p.run("e", "embeddings", texts))
        model = p.manager.get("e").model
        assert model.variant == "onnx" and model.backend is not None
        onnx_file = model.backend.path
    assert np.min(np.sum(eager * served, axis=1)) > 0.9999  # normalized vectors: cosine
    onnx_file.write_bytes(onnx_file.read_bytes()[:-8] + b"\0" * 8)  # corrupt the cached artefact
    with _provider(spec) as p:
        again = np.stack(p.run("e", "embeddings", texts))
    assert np.allclose(again, served, atol=1e-5)  # rebuilt from the model, not served from the bad file
    assert store.intact(onnx_file.parent, ["model.onnx"])


def test_t5_auto_serves_three_tasks_from_one_weight_set_identically_and_reuses_the_result(tiny_models):
    tasks = ["translation", "summarization", "question-answering"]
    text = "The city council announced a plan to rebuild the harbour after months of debate."
    calls = [
        ("translation", text, "translation_text"),
        ("summarization", text, "summary_text"),
        ("question-answering", {"question": "Who announced a plan?", "context": text}, "answer"),
    ]

    def outputs(spec: ModelSpec) -> tuple[list, object]:
        with _provider(spec) as p:
            p.load("t5")  # "auto" measures at first load: longer than a request's deadline under a loaded CPU
            got = [p.run("t5", t, x, {"max_new_tokens": 12})[k] for t, x, k in calls]
            model = p.manager.get("t5").model
            assert {id(h.model.module) for h in model.handlers.values()} == {id(model.module)}
            return got, model

    base = {"name": "t5", "source": str(tiny_models["t5"]), "tasks": tasks, "batching": SMALL}
    eager, _ = outputs(ModelSpec(**base))
    auto, model = outputs(ModelSpec(**base, optimize="auto"))
    assert auto == eager
    key = store.result_key(store.model_id(model.path, model.commit), tasks)
    result = store.read_result(key)
    assert result["chosen"] == model.variant
    onnx = next(v for v in result["variants"] if v["name"] == "onnx")
    assert not onnx["available"] and "3 tasks" in onnx["reason"]
    # a second load reuses the cached result without measuring: proven by serving what the cache now says
    result["chosen"] = "eager-attention"
    store.write_result(key, result)
    again, model = outputs(ModelSpec(**base, optimize="auto"))
    assert model.variant == "eager-attention" and again == eager


def test_forced_variant_without_its_dependency_fails_the_load_with_the_install_hint(tiny_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when onnxruntime is not installed
    spec = ModelSpec(name="e", source=str(tiny_models["bert-mlm"]), tasks=["embeddings"], optimize="onnx")
    with _provider(spec) as p, pytest.raises(ProviderError, match=r"pip install 'hf-provider\[optimize\]'"):
        p.load("e")
    report = optimize(spec.model_copy(update={"optimize": "none"}), candidates=["onnx"], **FAST)
    row = report.row("onnx")
    assert (
        not row.available
        and row.reason == "needs onnxruntime (not installed): pip install 'hf-provider[optimize]'"
    )


def test_hfp_optimize_json_shape(tiny_models):
    from hf_provider.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "optimize",
            str(tiny_models["bert-mlm"]),
            "--task",
            "embeddings",
            "--candidates",
            "onnx,fp16",
            "--repeats",
            "2",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["chosen"] in {"eager", "onnx"} and data["task"] == "embeddings"
    names = [v["name"] for v in data["variants"]]
    assert names == ["eager", "onnx", "fp16"]
    for v in data["variants"]:
        assert {"name", "latency_ms_p50", "throughput_per_s", "accuracy", "accepted", "reason"} <= set(v)
    eager, onnx, fp16 = data["variants"]
    assert eager["accepted"] and eager["latency_ms_p50"] > 0 and onnx["accuracy"] > 0.99
    assert not fp16["available"] and "GPU" in fp16["reason"]
    assert data["hardware"]["cores"] >= 1 and data["versions"]["torch"]
    assert data["lock"]["recorded"] is False and "local folder" in data["lock"]["detail"]


def test_hfp_optimize_refuses_an_unknown_candidate_before_loading():
    from hf_provider.cli.main import app

    res = CliRunner().invoke(app, ["optimize", "x", "--candidates", "onxx"])
    assert res.exit_code == 2 and "unknown candidate(s) onxx" in res.output


def test_a_process_isolated_model_serves_its_variant_from_the_child(tiny_models):
    source = str(tiny_models["bert-mlm"])
    texts = ["The quick brown fox jumps over the lazy dog.", "Is it safe?"]
    with _provider(ModelSpec(name="e", source=source, tasks=["embeddings"])) as p:
        eager = np.stack(p.run("e", "embeddings", texts))
    spec = ModelSpec(name="e", source=source, tasks=["embeddings"], optimize="onnx", isolation="process")
    with _provider(spec) as p:
        p.load("e")
        served = np.stack(p.run("e", "embeddings", texts))
    assert np.min(np.sum(eager * served, axis=1)) > 0.9999
