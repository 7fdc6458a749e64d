"""GPU checks that only a GPU can show, in one run: `python bench/gpu_check.py OUT_DIR`.

1. Generation batching: 64 concurrent single-prompt requests (64 new tokens each) to a ~124M-parameter GPT-2
   (random weights from the GPT-2 config) through the Provider, against one static `generate` over the same 64
   prompts, measured in the same process. Prints served/static tokens/s.
2. CUDA out-of-memory recovery: the CUDA allocator is capped (torch.cuda.set_per_process_memory_fraction) so a
   batch of 256 long inputs raises a real torch.OutOfMemoryError; the scheduler splits the batch and every request
   succeeds.
3. Dtypes: MiniLM on CUDA in bf16 (dtype auto) vs fp32: weight bytes, cosine to fp32, served vs raw throughput.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

# SMOKE=1 runs every check small on the CPU, to catch mistakes before spending device time.
SMOKE = os.environ.get("SMOKE") == "1"
DEV = "cpu" if SMOKE else "cuda"
N_GEN = 8 if SMOKE else 64


def sync() -> None:
    if not SMOKE:
        torch.cuda.synchronize()


def build_gpt2_124m(root: Path) -> Path:
    """GPT-2 124M's shape (768 x 12 layers, 1024 positions, 50257 vocab), random weights, the tiny BPE tokenizer."""
    from hf_provider.testing.models import build_sized_gpt2

    if SMOKE:
        return build_sized_gpt2(root, 64, 2, "gpt2-smoke", 1024, heads=2, vocab=50257)
    return build_sized_gpt2(root, 768, 12, "gpt2-124m", 1024, vocab=50257)


def concurrent(fn, n: int) -> tuple[list, float]:
    results: list = [None] * n
    barrier = threading.Barrier(n + 1)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def generation_check(root: Path) -> dict:
    """Served (64 concurrent single-prompt requests through the Provider) vs one static generate over the same
    prompts, interleaved over several rounds after warm-up on both sides; medians and bests reported."""
    import statistics

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sentences import sentences

    path = build_gpt2_124m(root)
    prompts = sentences(N_GEN, seed=1)
    new = 8 if SMOKE else 64
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(DEV).eval()
    n_params = sum(p.numel() for p in model.parameters())
    enc = tok(prompts, return_tensors="pt", padding=True).to(DEV)

    def static() -> float:
        with torch.inference_mode():
            sync()
            t0 = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1)
            sync()
            dt = time.perf_counter() - t0
        gen = out[:, enc["input_ids"].shape[1] :]
        return int((gen != tok.pad_token_id).sum()) / dt

    spec = ModelSpec(
        name="gpt2",
        source=str(path),
        tasks=["text-generation"],
        dtype="bfloat16",
        device=DEV,
        batching={"max_batch_size": 64},
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("gpt2")

        def served() -> float:
            res, dt = concurrent(
                lambda i: p.run("gpt2", "text-generation", prompts[i], {"max_new_tokens": new}), N_GEN
            )
            return sum(r["completion_tokens"] for r in res) / dt

        for _ in range(3):  # warm-up both paths
            static()
            served()
        rounds = 2 if SMOKE else 5
        st_rates, sv_rates = [], []
        for _ in range(rounds):
            st_rates.append(static())
            sv_rates.append(served())
        sizes = list(p.manager.get("gpt2").scheduler.last_batch_sizes[-rounds:])

        def streamed(i: int) -> int:
            return sum(1 for _ in p.stream("gpt2", "text-generation", prompts[i], {"max_new_tokens": new}))

        _, sdt = concurrent(streamed, N_GEN)
    med_st, med_sv = statistics.median(st_rates), statistics.median(sv_rates)
    return {
        "params": n_params,
        "static_tokens_per_s": st_rates,
        "served_tokens_per_s": sv_rates,
        "ratio_median": med_sv / med_st,
        "ratio_best": max(sv_rates) / max(st_rates),
        "batch_sizes": sizes,
        "streamed_all_64_seconds": sdt,
        "streamed_tokens_per_s": N_GEN * new / sdt,
    }


def oom_check(root: Path) -> dict:
    from hf_provider.testing.models import build_sized_bert

    path = build_sized_bert(
        root,
        hidden=64 if SMOKE else 768,
        layers=2 if SMOKE else 12,
        name="bert-small-random" if SMOKE else "bert-base-random",
    )
    if SMOKE:
        return {"skipped": "needs CUDA", "built": str(path)}
    text = " ".join(["the harbour was rebuilt after the storm"] * 60)  # ~360 tokens
    spec = ModelSpec(
        name="bert",
        source=str(path),
        tasks=["embeddings"],
        dtype="float32",
        batching={"max_batch_size": 256, "max_batch_tokens": 1 << 20, "max_wait_ms": 50},
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("bert")
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        p.run("bert", "embeddings", [text] * 32, {"truncate": True})
        peak32 = torch.cuda.max_memory_allocated() - base
        total = torch.cuda.get_device_properties(0).total_memory
        cap = base + int(peak32 * 3)  # room for about 96 inputs: a batch of 256 cannot fit
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap / total)
        sched = p.manager.get("bert").scheduler
        before = sched.batches
        t0 = time.perf_counter()
        # One request of 256 inputs: the scheduler forms one batch of 256, which cannot fit under the cap.
        single = p.run("bert", "embeddings", [text] * 256, {"truncate": True})
        single_dt = time.perf_counter() - t0
        recoveries_single = sched.runner.oom_recoveries
        res, dt = concurrent(lambda i: p.run("bert", "embeddings", text, {"truncate": True}), 256)
        ok = sum(1 for r in res if isinstance(r, list) and len(r) == 768)
        sizes = sched.last_batch_sizes[-(sched.batches - before) :]
        # Then a normal request still works.
        after = p.run("bert", "embeddings", "still serving", {"truncate": True})
        torch.cuda.set_per_process_memory_fraction(1.0)
    return {
        "single_request_256_ok": len(single) == 256 and all(len(v) == 768 for v in single),
        "single_request_seconds": single_dt,
        "oom_recoveries_single_request": recoveries_single,
        "oom_recoveries_total": sched.runner.oom_recoveries,
        "weights_bytes": base,
        "peak_bytes_batch32": peak32,
        "cap_bytes": cap,
        "requests": 256,
        "ok": ok,
        "seconds": dt,
        "resolved_batch_sizes": sizes,
        "elapsed": time.perf_counter() - t0,
        "later_request_ok": len(after) == 768,
    }


def dtype_check(root: Path) -> dict:
    """bf16 (dtype auto on GPU) vs fp32 on a random BERT of MiniLM's shape (384 x 6; MiniLM's files are not on
    the device): weight bytes, cosine of the embeddings to fp32, served throughput vs a raw fp32 forward loop."""
    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    from hf_provider.testing.models import build_sized_bert
    from sentences import sentences

    path = build_sized_bert(root, hidden=384, layers=6, name="bert-minilm-shape")
    texts = sentences(256 if SMOKE else 4096)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(DEV).eval()

    def raw(chunk: list[str]):
        enc = tok(chunk, padding=True, truncation=True, return_tensors="pt").to(DEV)
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        v = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(v, dim=-1)

    with torch.inference_mode():
        ref = raw(texts[:64]).float().cpu().numpy()
        raw(texts[:256])
        sync()
        t0 = time.perf_counter()
        for k in range(0, len(texts), 128):
            raw(texts[k : k + 128]).cpu()
        sync()
        raw_rate = len(texts) / (time.perf_counter() - t0)
    out: dict = {"raw_fp32_sentences_per_s_batch128": raw_rate}
    for dtype in ("float32", "auto"):
        spec = ModelSpec(
            name="m",
            source=str(path),
            tasks=["embeddings"],
            dtype=dtype,
            device=DEV,
            batching={"max_batch_size": 128},
        )
        with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
            info = p.load("m")
            vec = np.asarray(p.embed("m", texts[:64]))
            cos = float((vec * ref).sum(1).min())
            for _ in range(3):  # warm-up: kernel selection for this dtype and these shapes
                concurrent(lambda i: p.embed("m", texts[i * 32 : (i + 1) * 32]), len(texts) // 32)
            _, dt = concurrent(lambda i: p.embed("m", texts[i * 32 : (i + 1) * 32]), len(texts) // 32)
            out[dtype] = {
                "dtype": info["dtype"],
                "weight_bytes": info["weight_bytes"],
                "min_cosine_vs_fp32": cos,
                "served_sentences_per_s_x32": len(texts) / dt,
                "ratio_to_raw_fp32": len(texts) / dt / raw_rate,
            }
    return out


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gpu-out")
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path("/tmp/hfp-gpu-models")
    report: dict = {
        "device": "cpu-smoke" if SMOKE else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }
    only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else {"generation", "oom", "dtype"}
    checks = (
        ("generation", lambda: generation_check(root)),
        ("oom", lambda: oom_check(root)),
        ("dtype", lambda: dtype_check(root)),
    )
    for name, fn in [c for c in checks if c[0] in only]:
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as e:
            import traceback

            report[name] = {"error": repr(e), "trace": traceback.format_exc()[-3000:]}
        report[name]["check_seconds"] = time.perf_counter() - t0
        print(name, json.dumps(report[name])[:1500], flush=True)
    (out_dir / "gpu_report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
