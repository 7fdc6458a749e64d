"""Exported-graph backends: the model's forward as an ONNX file, run by ONNX Runtime or OpenVINO.

A backend replaces only the module call of a task handler (`LoadedModel.backend`): tokenization, padding,
pooling and postprocessing stay the handler's own. Export goes through torch's TorchScript-based ONNX exporter
(`dynamo=False`): on torch 2.13 it exports MiniLM in ~2 s against ~15 s for the dynamo exporter, needs neither
onnxscript nor onnx, and its graph matches eager to ~1e-6 on every real token (pad positions are not compared:
pooling and heads mask them). Each optional runtime is imported lazily; a missing one is reported with the
install hint, never raised at import.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from hf_provider.runtime.model import LoadedModel

INSTALL_HINT = "pip install 'hf-provider[optimize]'"
# What each exportable task reads from the module's output.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "embeddings": ("last_hidden_state",),
    "text-classification": ("logits",),
    "token-classification": ("logits",),
    "fill-mask": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def missing(*modules: str) -> str | None:
    """None when every module imports, else the reason with the install hint."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return f"needs {name} (not installed): {INSTALL_HINT}"
    return None


def export_reason(model: LoadedModel, tasks: list[str]) -> str | None:
    """Why this model's forward cannot be served from one exported graph (None: it can)."""
    if len(tasks) != 1:
        return f"serves {len(tasks)} tasks from one weight set; an exported graph covers one task's forward"
    if tasks[0] not in OUTPUTS:
        return f"{tasks[0]} runs generate() (a decoding loop), which is not exported here"
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder models are not exported here"
    if model.device.type != "cpu":
        return "exported graphs run on the CPU here; the model is on " + str(model.device)
    return None


def _target(model: LoadedModel, task: str) -> Any:
    if task == "embeddings":
        if model.sentence_model is not None:
            return model.sentence_model[0].auto_model
        return model.module.base_model
    return model.module


def export_onnx(model: LoadedModel, task: str, dest: Path) -> Path:
    """Write `task`'s forward of `model` to `dest` with dynamic batch and sequence axes."""
    import torch

    target = _target(model, task)
    accepted = set(inspect.signature(target.forward).parameters)
    names = [n for n in _INPUTS if n in accepted and n in model.tokenizer.model_input_names]
    if "input_ids" not in names:
        names.insert(0, "input_ids")
    outputs = OUTPUTS[task]

    class _Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.target = target

        def forward(self, *args: Any) -> tuple[Any, ...]:
            out = self.target(**dict(zip(names, args, strict=True)), return_dict=True)
            return tuple(getattr(out, o) for o in outputs)

    example = model.tokenizer(
        ["an example sentence for the export", "two"], padding=True, return_tensors="pt"
    )
    args = tuple(example[n] if n in example else torch.zeros_like(example["input_ids"]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    for o in outputs:
        axes[o] = (
            {0: "batch", 1: "sequence"} if o != "logits" or task != "text-classification" else {0: "batch"}
        )
    tmp = dest.with_suffix(".tmp")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings of the TorchScript exporter
        torch.onnx.export(
            _Graph().eval(),
            args,
            str(tmp),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    tmp.replace(dest)
    return dest


def quantize_onnx(src: Path, dest: Path) -> Path:
    """ONNX Runtime dynamic int8 quantization of the MatMul weights (per channel, int8 activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dest.with_suffix(".tmp")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(dest)
    return dest


class GraphBackend:
    """Called like the module it replaces (`backend(**inputs).logits`); returns torch tensors on the CPU."""

    name = "graph"

    def __init__(self, path: Path, outputs: tuple[str, ...]) -> None:
        self.path, self.outputs = path, outputs
        self.nbytes = path.stat().st_size

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        import numpy as np
        import torch

        ids = inputs["input_ids"]
        feeds = {}
        for n in self.input_names:
            v = inputs.get(n)
            feeds[n] = np.zeros(tuple(ids.shape), np.int64) if v is None else v.cpu().numpy().astype(np.int64)
        return SimpleNamespace(**dict(zip(self.outputs, map(torch.from_numpy, self.run(feeds)), strict=True)))

    input_names: list[str]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        raise NotImplementedError


# ONNX Runtime's CPU EP computes a float graph in fp32 on every machine; these are the session entries that would
# trade precision for speed, pinned so no default (or a future one) decides it:
# - bf16 fast math for fp32 GEMMs exists on arm64 only (default off, x86 has no such path): off;
# - GELU approximation (tanh for erf) is a graph rewrite, default off: off;
# - x64quantprecision: the int8 graph (onnx-int8) multiplies u8 activations by s8 weights, which x86 CPUs
#   without VNNI sum in saturating 16 bits; "1" makes ORT use exact u8u8 there (no effect with VNNI or off x86),
#   so the int8 arithmetic is the same on every CPU.
ORT_PRECISION_ENTRIES: dict[str, str] = {
    "mlas.enable_gemm_fastmath_arm64_bfloat16": "0",
    "optimization.enable_gelu_approximation": "0",
    "session.x64quantprecision": "1",
}


class OrtBackend(GraphBackend):
    """ONNX Runtime on the CPU with every graph optimization (operator fusion: attention, GELU, layer norm),
    in fp32 (int8 where the graph is quantized)."""

    name = "onnxruntime"

    def __init__(self, path: Path, outputs: tuple[str, ...], threads: int) -> None:
        import onnxruntime as ort

        super().__init__(path, outputs)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        for key, value in ORT_PRECISION_ENTRIES.items():
            so.add_session_config_entry(key, value)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return self.session.run(list(self.outputs), feeds)


def openvino_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin runs natively here (`OPTIMIZATION_CAPABILITIES`: FP32, BF16, INT8, ...)."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend(GraphBackend):
    """OpenVINO compiling the ONNX file for the CPU, tuned for latency (one inference at a time, as served), at an
    explicit inference precision: left to its default, the CPU plugin runs bf16 wherever the CPU has native bf16
    (avx512_bf16, AMX), so the same candidate would compute differently from one machine to the next."""

    name = "openvino"

    def __init__(
        self, path: Path, outputs: tuple[str, ...], threads: int, precision: Literal["f32", "bf16"] = "f32"
    ) -> None:
        import openvino as ov

        super().__init__(path, outputs)
        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": precision,
                # ACCURACY also keeps the plugin from its other lossy steps (dynamic quantization of matmuls,
                # ARM's fast math); PERFORMANCE is what bf16 is asked for.
                "EXECUTION_MODE_HINT": "ACCURACY" if precision == "f32" else "PERFORMANCE",
            },
        )
        # The precision is a hint the plugin may not honour (no hardware support): refuse rather than mislabel.
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if got != precision:
            raise RuntimeError(
                f"OpenVINO compiled with {got} inference precision where {precision} was asked"
            )
        self.precision = got
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._index = [self.compiled.output(o) for o in outputs]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        result = self.compiled(feeds)
        return [result[o] for o in self._index]
