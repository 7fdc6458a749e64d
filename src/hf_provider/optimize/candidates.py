"""The candidate variants, each a small adapter: why it cannot apply here (missing dependency with its install
hint, wrong device, task it cannot serve) and how to build it on a loaded model.

Every candidate names the precision it computes in (`Candidate.precision`), set explicitly where a library would
otherwise pick per machine (OpenVINO's CPU plugin defaults to bf16 where the CPU has it: `openvino` is f32,
`openvino-bf16` a separate candidate). torch runs fp32 as torch's process-wide defaults leave it ("highest"
float32 matmul precision, no oneDNN bf16 for fp32); the library never changes those (process-wide state belongs
to the server entry point), and eager and every candidate are measured in the same process, under the same ones.

Two kinds:
- "torch" variants change the shared module in place (attention implementation, torch.compile, int8 layers, a
  GPU half dtype), so every task of the model keeps working from the one weight set;
- "graph" variants set `LoadedModel.backend` to an exported graph for the model's one task (optimize/backends.py);
  the module stays for the parts that read it (config, memory accounting).
"""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hf_provider.optimize import backends, store
from hf_provider.runtime.model import LoadedModel


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: Literal["baseline", "torch", "graph"]
    unavailable: Callable[[LoadedModel, list[str]], str | None]
    build: Callable[[LoadedModel, list[str], Path | None], None]
    note: str = ""
    precision: str | None = None  # what it computes in; None: the dtype the model is loaded in


_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def precision_of(cand: Candidate, model: LoadedModel) -> str:
    dtype = str(model.dtype).removeprefix("torch.")
    return cand.precision or _SHORT.get(dtype, dtype)


def _nothing(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
    return None


def _always(model: LoadedModel, tasks: list[str]) -> str | None:
    return None


# ---- attention implementation --------------------------------------------------------------------------------
def _attn(impl: str) -> tuple[Callable, Callable]:
    def unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
        current = getattr(model.module.config, "_attn_implementation", None)
        if current == impl:
            return f"the model already loads with {impl} attention: that is the eager baseline"
        if not hasattr(model.module, "set_attn_implementation"):
            return "this transformers version cannot switch the attention implementation after load"
        return None

    def build(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
        model.module.set_attn_implementation(impl)  # ValueError when the architecture lacks it

    return unavailable, build


# ---- torch.compile ------------------------------------------------------------------------------------------
def _compile_unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
    gen = [t for t in tasks if model.handlers.get(t) is not None and model.handlers[t].generative]
    if gen:
        return f"{gen[0]} runs generate(), whose growing sequence recompiles the graph; not measured"
    if model.device.type == "cpu" and not shutil.which(sysconfig.get_config_var("CC") or "cc"):
        return "torch.compile on the CPU needs a C compiler (cc/gcc) to build its kernels"
    return None


def _compile(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
    import torch

    # dynamic=True: one graph for every batch size and length, not a recompilation per shape served. Precision
    # stays the module's: inductor builds its CPU kernels without unsafe math or FMA contraction unless configured.
    model.module.forward = torch.compile(model.module.forward, dynamic=True)


# ---- int8 (torch, CPU) --------------------------------------------------------------------------------------
def _int8_unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
    if model.device.type != "cpu":
        return "torch int8 here runs on the CPU; on GPU use the bitsandbytes quantization"
    if model.spec.quantization != "none":
        return f"the model is already quantized ({model.spec.quantization})"
    return None


def _int8(scheme: str) -> Callable:
    def build(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
        from hf_provider.memory.estimate import module_bytes
        from hf_provider.memory.quantize import quantize_int8

        quantize_int8(model.module, scheme, inplace=True)  # type: ignore[arg-type]
        model.weight_bytes = module_bytes(model.sentence_model or model.module)

    return build


# ---- half precision on GPU ----------------------------------------------------------------------------------
def _half(name: str) -> tuple[Callable, Callable]:
    def unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
        if model.device.type != "cuda":
            return f"{name} pays off on a GPU only; this model is on {model.device} (no CUDA here)"
        return None

    def build(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
        import torch

        from hf_provider.memory.estimate import module_bytes

        dtype = torch.float16 if name == "fp16" else torch.bfloat16
        (model.sentence_model or model.module).to(dtype)
        model.dtype = dtype
        model.weight_bytes = module_bytes(model.sentence_model or model.module)

    return unavailable, build


# ---- exported graphs ----------------------------------------------------------------------------------------
def _graph_unavailable(*modules: str) -> Callable:
    def unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
        return backends.missing(*modules) or backends.export_reason(model, tasks)

    return unavailable


def _onnx_file(model: LoadedModel, task: str, cache_dir: Path | None, int8: bool) -> Path:
    """The exported (and, for int8, quantized) file in the provider's cache, built on first use and verified
    against its manifest on every later one."""
    folder = store.artefact_dir(model.path, model.commit, task, cache_dir)
    names = ["model.onnx"] + (["model.int8.onnx"] if int8 else [])
    if not store.intact(folder, names, cache_dir):
        fp32 = folder / "model.onnx"
        if not store.intact(folder, ["model.onnx"], cache_dir):
            backends.export_onnx(model, task, fp32)
        if int8:
            backends.quantize_onnx(fp32, folder / "model.int8.onnx")
        store.write_manifest(folder, names, cache_dir)
    return folder / names[-1]


def openvino_bf16_unavailable(
    capabilities: Callable[[], Sequence[str]] = backends.openvino_capabilities,
) -> Callable[[LoadedModel, list[str]], str | None]:
    """`openvino-bf16` applies where OpenVINO reports native bf16 on this CPU (`capabilities` is the seam)."""

    def unavailable(model: LoadedModel, tasks: list[str]) -> str | None:
        if reason := backends.missing("openvino"):
            return reason
        caps = list(capabilities())
        if "BF16" not in caps:
            return f"this CPU has no native bf16 (OpenVINO CPU capabilities: {', '.join(caps) or 'none'})"
        return backends.export_reason(model, tasks)

    return unavailable


def _graph(runtime: str, int8: bool = False, precision: Literal["f32", "bf16"] = "f32") -> Callable:
    def build(model: LoadedModel, tasks: list[str], cache_dir: Path | None) -> None:
        import torch

        path = _onnx_file(model, tasks[0], cache_dir, int8)
        outputs, threads = backends.OUTPUTS[tasks[0]], torch.get_num_threads()
        if runtime == "onnxruntime":
            model.backend = backends.OrtBackend(path, outputs, threads)
        else:
            model.backend = backends.OpenVinoBackend(path, outputs, threads, precision)
        model.weight_bytes += model.backend.nbytes

    return build


_SDPA, _EAGER_ATTN, _FP16, _BF16 = _attn("sdpa"), _attn("eager"), _half("fp16"), _half("bf16")
CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("eager", "baseline", _always, _nothing, "torch eager, as loaded (the baseline)"),
        Candidate("sdpa", "torch", _SDPA[0], _SDPA[1], "torch scaled-dot-product attention"),
        Candidate("eager-attention", "torch", _EAGER_ATTN[0], _EAGER_ATTN[1], "plain matmul attention"),
        Candidate(
            "compile", "torch", _compile_unavailable, _compile, "torch.compile (inductor), dynamic shapes"
        ),
        Candidate(
            "int8",
            "torch",
            _int8_unavailable,
            _int8("dynamic"),
            "torch dynamic int8 (int8 matmuls)",
            "int8 dynamic",
        ),
        Candidate(
            "int8-weight-only",
            "torch",
            _int8_unavailable,
            _int8("weight_only"),
            "int8 weights, float activations",
            "int8 weights",
        ),
        Candidate(
            "onnx",
            "graph",
            _graph_unavailable("onnxruntime"),
            _graph("onnxruntime"),
            "ONNX Runtime, all fusions",
            "fp32",
        ),
        Candidate(
            "onnx-int8",
            "graph",
            _graph_unavailable("onnxruntime", "onnx"),
            _graph("onnxruntime", int8=True),
            "ONNX Runtime dynamic int8 (per channel)",
            "int8 dynamic",
        ),
        Candidate(
            "openvino",
            "graph",
            _graph_unavailable("openvino"),
            _graph("openvino"),
            "OpenVINO CPU, latency hint, f32 inference precision",
            "fp32",
        ),
        Candidate(
            "openvino-bf16",
            "graph",
            openvino_bf16_unavailable(),
            _graph("openvino", precision="bf16"),
            "OpenVINO CPU, latency hint, bf16 inference precision (native bf16 CPUs)",
            "bf16",
        ),
        Candidate("fp16", "torch", _FP16[0], _FP16[1], "half precision (CUDA)", "fp16"),
        Candidate("bf16", "torch", _BF16[0], _BF16[1], "bfloat16 (CUDA)", "bf16"),
    )
}
