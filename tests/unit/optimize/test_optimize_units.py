"""optimize/: the guard's verdicts per task family, the choice, timing arithmetic, names, lock records, the
artefact manifest, and the missing-dependency message. No model loads here."""

from __future__ import annotations

import sys

import pytest
import torch

from hf_provider.cache import artefacts
from hf_provider.hub.lockfile import LockEntry, dumps, read_lock, update_entry
from hf_provider.optimize import backends, guard, store
from hf_provider.optimize.measure import timed
from hf_provider.optimize.run import Row, choose
from hf_provider.spec import ModelSpec
from hf_provider.variants import check_optimize

COMMIT = "a" * 40


# ---- guard -------------------------------------------------------------------------------------------------
def test_embeddings_guard_refuses_below_cosine_threshold_with_the_figure():
    ref = [[1.0, 0.0], [0.0, 1.0]]
    bad = guard.judge("embeddings", ref, [[1.0, 0.0], [0.3, 1.0]])  # cosine ~0.958
    assert not bad.accepted and bad.figure == pytest.approx(0.9578, abs=1e-3) and "0.99" in bad.reason
    ok = guard.judge("embeddings", ref, [[2.0, 0.0], [0.0, 1.01]])  # scale does not matter
    assert ok.accepted and ok.figure == pytest.approx(1.0)


def test_classification_guard_needs_same_top_label_and_probabilities_within_tolerance():
    ref = [torch.tensor([[0.7, 0.3]] * 100)]
    flipped = [torch.tensor([[0.7, 0.3]] * 98 + [[0.4, 0.6]] * 2)]  # 98% agreement < 99%
    v = guard.judge("classification", ref, flipped)
    assert not v.accepted and v.figure == pytest.approx(0.98) and "top label differs" in v.reason
    moved = [torch.tensor([[0.67, 0.33]] * 100)]  # same labels, probabilities off by 0.03
    v = guard.judge("classification", ref, moved)
    assert not v.accepted and "0.0300" in v.reason
    assert guard.judge("classification", ref, [torch.tensor([[0.71, 0.29]] * 100)]).accepted


def test_generation_guard_needs_identical_greedy_tokens():
    ref = [[5, 6, 7], [8, 9, 10]]
    v = guard.judge("generation", ref, [[5, 6, 7], [8, 9, 11]])
    assert not v.accepted and v.figure == 0.5 and "prompt 1" in v.reason
    assert guard.judge("generation", ref, [list(r) for r in ref]).accepted


# ---- choice and timing ---------------------------------------------------------------------------------------
def _row(name: str, thr: float | None, accepted: bool = True) -> Row:
    return Row(name, "torch", "", accepted=accepted, throughput_per_s=thr, latency_ms_p50=1.0)


def test_choice_is_the_fastest_accepted_variant_beating_eager_by_the_margin():
    rows = [
        _row("eager", 100.0),
        _row("onnx", 240.0),
        _row("int8", 400.0, accepted=False),
        _row("sdpa", 150.0),
    ]
    assert choose(rows) == "onnx"  # the refused int8 is faster but never chosen
    assert choose([_row("eager", 100.0), _row("sdpa", 103.0)]) == "eager"  # within noise: keep eager
    assert choose([_row("eager", 100.0), _row("onnx", None, accepted=False)]) == "eager"


def test_timed_uses_the_injected_clock():
    ticks = iter([0.0, 0.25, 1.0, 1.5])
    calls = []
    assert timed(lambda: calls.append(1), 2, lambda: next(ticks)) == [0.25, 0.5]
    assert len(calls) == 2


# ---- spec and names -----------------------------------------------------------------------------------------
def test_optimize_field_accepts_modes_and_variants_and_refuses_others():
    assert ModelSpec(name="m", source="x").optimize == "none"
    assert ModelSpec(name="m", source="x", optimize="onnx").optimize == "onnx"
    with pytest.raises(ValueError, match=r"invalid optimize 'onxx'.*'auto'"):
        ModelSpec(name="m", source="x", optimize="onxx")
    with pytest.raises(ValueError, match="set one of them"):
        ModelSpec(name="m", source="x", quantization="int8", optimize="auto")
    assert check_optimize("auto") == "auto"


# ---- missing dependency ----------------------------------------------------------------------------------------
def test_missing_runtime_is_reported_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` does when it is not installed
    reason = backends.missing("onnxruntime", "openvino")
    assert reason == "needs openvino (not installed): pip install 'hf-provider[optimize]'"
    assert backends.missing("onnxruntime") is None


# ---- lock ------------------------------------------------------------------------------------------------------
def test_lock_records_the_choice_and_old_locks_still_read(tmp_path):
    lock = tmp_path / "hfp.lock"
    old = LockEntry("m", "org/m", "main", COMMIT)
    lock.write_text(dumps([old]))  # a lock written before `optimized` existed
    assert read_lock(lock)["m"].optimized == ()
    chosen = (("hardware", 'x86_64 "EPYC" (2 cores; avx2)'), ("task", "embeddings"), ("variant", "onnx"))
    update_entry(lock, LockEntry("m", "org/m", "main", COMMIT, optimized=chosen))
    back = read_lock(lock)["m"]
    assert back.optimized == chosen and back.to_dict()["optimized"]["variant"] == "onnx"
    assert dumps(read_lock(lock)) == lock.read_text()  # deterministic bytes


def test_lock_with_a_malformed_optimized_field_is_a_config_error(tmp_path):
    from hf_provider.errors import ConfigError

    lock = tmp_path / "hfp.lock"
    text = dumps([LockEntry("m", "org/m", "main", COMMIT)]).replace(
        "files = []", 'optimized = "onnx"\nfiles = []'
    )
    lock.write_text(text)
    with pytest.raises(ConfigError, match="not a valid hfp lock"):
        read_lock(lock)


# ---- artefact manifest -----------------------------------------------------------------------------------------
def test_artefacts_are_keyed_by_commit_and_a_changed_file_is_detected(tmp_path):
    cache = tmp_path / "hub"
    cache.mkdir()
    folder = store.artefact_dir(tmp_path, COMMIT, "embeddings", cache)
    assert folder.name.startswith(COMMIT) and folder.is_relative_to(artefacts.root(cache))
    (folder / "model.onnx").write_bytes(b"graph-bytes")
    assert not store.intact(folder, ["model.onnx"], cache)  # no manifest yet
    store.write_manifest(folder, ["model.onnx"], cache)
    assert store.intact(folder, ["model.onnx"], cache)
    (folder / "model.onnx").write_bytes(b"graph-bytez")  # same size, other bytes
    assert not store.intact(folder, ["model.onnx"], cache)
    assert not (folder / "model.onnx").exists()  # dropped, so the caller builds it again


def test_budget_drop_removes_a_commits_artefacts_and_results(tmp_path):
    cache = tmp_path / "hub"
    cache.mkdir()
    keep = "b" * 40
    for c in (COMMIT, keep):
        d = store.artefact_dir(tmp_path, c, "embeddings", cache)
        (d / "model.onnx").write_bytes(b"x" * 10)
        store.write_result(f"k-{c[:4]}", {"model_id": c, "chosen": "onnx"}, cache)
    freed = artefacts.drop_commits(cache, {COMMIT})
    assert freed >= 10
    left = [p.name for p in (artefacts.root(cache) / "artefacts").iterdir()]
    assert len(left) == 1 and left[0].startswith(keep)
    assert store.read_result(f"k-{COMMIT[:4]}", cache) is None and store.read_result(f"k-{keep[:4]}", cache)
