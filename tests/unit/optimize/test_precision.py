"""optimize/: every candidate's precision is explicit. OpenVINO compiles (for real) at the precision asked for,
whatever the CPU's default; `openvino-bf16` exists only where the CPU has native bf16; ONNX Runtime sessions pin
the entries that would trade precision for speed. One tiny hand-built ONNX graph, no model loads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from hf_provider.optimize import backends
from hf_provider.optimize.candidates import CANDIDATES, openvino_bf16_unavailable, precision_of
from hf_provider.spec import ModelSpec
from hf_provider.variants import VARIANTS

HIDDEN = 16


def _graph(dest: Path) -> np.ndarray:
    """logits = float(input_ids)[..., None] @ W: a MatMul whose fp32 result bf16 (8-bit mantissa) cannot keep."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(1, HIDDEN)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["x", "axis"], ["x3"]),
        helper.make_node("MatMul", ["x3", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([2], np.int64), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", backends.OPSET)])
    onnx.save(model, str(dest))
    return w


def _logits(backend: Any, ids: torch.Tensor) -> np.ndarray:
    return backend(input_ids=ids).logits.numpy()


IDS = torch.tensor([[1001, 2003, 30521, 7], [4093, 12, 29999, 101]])


def test_openvino_compiles_at_f32_whatever_the_cpu_default(tmp_path):
    pytest.importorskip("openvino")
    w = _graph(tmp_path / "model.onnx")
    backend = backends.OpenVinoBackend(tmp_path / "model.onnx", ("logits",), 1)
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    assert backend.compiled.get_property("EXECUTION_MODE_HINT").name == "ACCURACY"
    expected = IDS.numpy().astype(np.float32)[..., None] @ w
    np.testing.assert_allclose(_logits(backend, IDS), expected, rtol=1e-6)  # bf16 would be off by ~1e-3


def test_openvino_bf16_compiles_at_bf16_where_the_cpu_has_it(tmp_path):
    pytest.importorskip("openvino")
    if "BF16" not in backends.openvino_capabilities():
        pytest.skip("this CPU has no native bf16")
    _graph(tmp_path / "model.onnx")
    backend = backends.OpenVinoBackend(tmp_path / "model.onnx", ("logits",), 1, "bf16")
    assert backend.precision == "bf16"
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"


def test_openvino_bf16_is_unavailable_with_the_reason_when_the_cpu_lacks_bf16():
    pytest.importorskip("openvino")
    model: Any = SimpleNamespace(config=SimpleNamespace(), device=torch.device("cpu"))
    reason = openvino_bf16_unavailable(lambda: ["FP32", "INT8", "BIN"])(model, ["fill-mask"])
    assert reason == "this CPU has no native bf16 (OpenVINO CPU capabilities: FP32, INT8, BIN)"
    assert openvino_bf16_unavailable(lambda: ["FP32", "BF16"])(model, ["fill-mask"]) is None
    # the model's own reasons still apply on a bf16 CPU
    assert "2 tasks" in openvino_bf16_unavailable(lambda: ["BF16"])(model, ["fill-mask", "embeddings"])


def test_ort_session_pins_the_precision_entries(tmp_path):
    pytest.importorskip("onnxruntime")
    w = _graph(tmp_path / "model.onnx")
    backend = backends.OrtBackend(tmp_path / "model.onnx", ("logits",), 1)
    options = backend.session.get_session_options()
    for key, value in backends.ORT_PRECISION_ENTRIES.items():
        assert options.get_session_config_entry(key) == value
    expected = IDS.numpy().astype(np.float32)[..., None] @ w
    np.testing.assert_allclose(_logits(backend, IDS), expected, rtol=1e-6)


def test_every_candidate_is_a_spec_variant_and_names_its_precision():
    assert tuple(CANDIDATES) == VARIANTS
    assert ModelSpec(name="m", source="x", optimize="openvino-bf16").optimize == "openvino-bf16"
    fp32: Any = SimpleNamespace(dtype=torch.float32)
    got = {name: precision_of(c, fp32) for name, c in CANDIDATES.items()}
    assert got["eager"] == got["compile"] == got["onnx"] == got["openvino"] == "fp32"
    assert got["openvino-bf16"] == got["bf16"] == "bf16" and got["onnx-int8"] == "int8 dynamic"
    assert precision_of(CANDIDATES["sdpa"], SimpleNamespace(dtype=torch.bfloat16)) == "bf16"  # type: ignore[arg-type]
