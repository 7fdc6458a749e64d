"""Issue 12's generation workload, served through the Provider's Python API against static `generate`, in one run.

    python bench/gpu_generation.py [OUT]        (OUT: a .json path or a folder; default $OUT, else gpu-out/)
    SMOKE=1 python bench/gpu_generation.py      (small, on the CPU: a tiny GPT-2 and few requests)
    MODES=continuous-eager,static,continuous    (Provider modes; -eager: continuous without CUDA graphs)

1. Poisson: N requests (256) arrive as a Poisson stream (128/s), a quarter asking LONG (256) new tokens and the rest
   SHORT (16); greedy, a GPT-2 124M-shaped random model in bf16. Served tokens/s (generated tokens over the time
   from the first arrival to the last answer) against the ceiling: static `generate` over the same prompts grouped
   by length (one batch per group), measured in the same process. Short requests' latency (p50, p99) under that
   load against a lone short request's latency on the idle Provider (its unloaded latency).
2. Burst: BURST (64) single-prompt requests of BURST_NEW (64) new tokens arriving together, against one static
   `generate` over the same prompts; best of a few interleaved rounds after warm-up.
Targets on a GPU (issue 12): served/ceiling >= 0.8; short p50 <= 2x unloaded; burst >= 0.9 of static.
Each mode gets its own Provider (continuous is the default on CUDA; static is the previous behaviour).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from sentences import sentences

SMOKE = os.environ.get("SMOKE") == "1"
DEV = "cpu" if SMOKE else "cuda"
DTYPE = "float32" if SMOKE else "bfloat16"
N = 24 if SMOKE else 256
RATE = 48.0 if SMOKE else 128.0  # arrivals per second
LONG, SHORT = (32, 8) if SMOKE else (256, 16)
BURST, BURST_NEW = (8, 8) if SMOKE else (64, 64)
SLOTS = 16 if SMOKE else 128  # max_batch_size: continuous batching's KV slots, static batching's batch size
MAX_LEN = 256 if SMOKE else 512  # the model's max_length: prompt + new tokens per slot
# Continuous batching with CUDA graphs last: the newest path, so the others' figures are written first.
MODES = [m for m in os.environ.get("MODES", "continuous-eager,static,continuous").split(",") if m]
ROUNDS = 2 if SMOKE else 3


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def build_model(root: Path) -> Path:
    """GPT-2 124M's shape (768 x 12 layers, 1024 positions, 50257 vocab), random weights, the tiny BPE tokenizer."""
    from hf_provider.testing.models import build_sized_gpt2

    if SMOKE:
        return build_sized_gpt2(root, 64, 2, "gpt2-smoke", 1024, heads=2, vocab=50257)
    return build_sized_gpt2(root, 768, 12, "gpt2-124m", 1024, vocab=50257)


def workload() -> tuple[list[str], list[int], list[float]]:
    rng = random.Random(12)
    prompts = sentences(N, seed=3)
    kinds = [LONG] * (N // 4) + [SHORT] * (N - N // 4)
    rng.shuffle(kinds)
    t, arrivals = 0.0, []
    for _ in range(N):
        t += rng.expovariate(RATE)
        arrivals.append(t)
    return prompts, kinds, arrivals


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Static:
    """The baseline: `generate` on the raw model, batches left-padded like the static path pads them."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, DTYPE)).to(DEV).eval()
        self.eos = self.tok.eos_token_id

    def generate(self, prompts: list[str], new: int) -> int:
        """Tokens generated (each row up to and with its end-of-sequence token, as the Provider counts)."""
        enc = self.tok(prompts, return_tensors="pt", padding=True).to(DEV)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=self.tok.pad_token_id
            )
        n = 0
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            n += row.index(self.eos) + 1 if self.eos in row else len(row)
        return n

    def grouped(self, prompts: list[str], kinds: list[int]) -> dict[str, float]:
        sync()
        t0 = time.perf_counter()
        tokens = 0
        for new in sorted(set(kinds)):
            tokens += self.generate([p for p, k in zip(prompts, kinds, strict=True) if k == new], new)
        sync()
        dt = time.perf_counter() - t0
        return {"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt}

    def burst(self, prompts: list[str]) -> float:
        sync()
        t0 = time.perf_counter()
        n = self.generate(prompts, BURST_NEW)
        sync()
        return n / (time.perf_counter() - t0)


def concurrent(fn: Any, n: int) -> tuple[list[Any], float]:
    results: list[Any] = [None] * n
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


def poisson(p: Provider, prompts: list[str], kinds: list[int], arrivals: list[float]) -> dict[str, Any]:
    """Each request sent at its arrival time by its own thread; latency from its arrival to its answer."""
    lat: list[float | None] = [None] * N
    tokens = [0] * N
    errors: list[str] = []
    done_at = [0.0] * N
    start = time.perf_counter() + 0.1

    def client(i: int) -> None:
        delay = start + arrivals[i] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        try:
            r = p.run("gpt2", "text-generation", prompts[i], {"max_new_tokens": kinds[i]})
        except Exception as e:  # counted, not fatal: the figures say how many failed
            errors.append(type(e).__name__)
            return
        done_at[i] = time.perf_counter()
        lat[i] = done_at[i] - t0
        tokens[i] = r["completion_tokens"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    span = max(done_at) - (start + arrivals[0])
    short = [x for x, k in zip(lat, kinds, strict=True) if k == SHORT and x is not None]
    long = [x for x, k in zip(lat, kinds, strict=True) if k == LONG and x is not None]
    return {
        "tokens": sum(tokens),
        "seconds": span,
        "tokens_per_s": sum(tokens) / span,
        "short_p50_s": pct(short, 0.5),
        "short_p99_s": pct(short, 0.99),
        "long_p50_s": pct(long, 0.5),
        "errors": errors,
    }


def serve(mode: str, path: Path, static: Static, ceiling: float) -> dict[str, Any]:
    prompts, kinds, arrivals = workload()
    spec = ModelSpec(
        name="gpt2",
        source=str(path),
        tasks=["text-generation"],
        dtype=DTYPE,
        device=DEV,
        max_length=MAX_LEN,
        batching={"max_batch_size": SLOTS, "generation": mode.removesuffix("-eager")},
        cuda_graphs=not mode.endswith("-eager"),
    )
    out: dict[str, Any] = {}
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("gpt2")
        sched = p.manager.get("gpt2").scheduler
        out["engine"] = sched.engine is not None
        if sched.engine is not None:
            out["kv_slots"] = sched.engine.slots
            graphs = sched.engine.graphs
            out["decode_graphs"] = 0 if graphs is None else sum(v is not None for v in graphs.steps.values())
        # Warm-up: kernels for the shapes both sides use.
        concurrent(lambda i: p.run("gpt2", "text-generation", prompts[i], {"max_new_tokens": SHORT}), 8)
        unloaded = []
        for i in range(5):
            t0 = time.perf_counter()
            p.run("gpt2", "text-generation", prompts[i], {"max_new_tokens": SHORT})
            unloaded.append(time.perf_counter() - t0)
        out["short_unloaded_s"] = statistics.median(unloaded)
        before = dict(sched.engine.stats) if sched.engine is not None else None
        res = poisson(p, prompts, kinds, arrivals)
        if before is not None:  # where the engine's time went during the Poisson stream
            st = {k: v - before[k] for k, v in sched.engine.stats.items()}
            steps, fills = max(1, st["decode_steps"]), max(1, st["prefills"])
            res["engine"] = {
                **st,
                "decode_ms_per_step": 1000 * st["decode_s"] / steps,
                "rows_per_decode_step": st["decode_rows"] / steps,
                "prefill_ms_each": 1000 * st["prefill_s"] / fills,
                "prompt_tokens_per_prefill": st["prefill_tokens"] / fills,
            }
        res["served_over_ceiling"] = res["tokens_per_s"] / ceiling
        res["short_p50_over_unloaded"] = res["short_p50_s"] / out["short_unloaded_s"]
        out["poisson"] = res
        burst_prompts = sentences(BURST, seed=1)

        def one(i: int) -> int:
            r = p.run("gpt2", "text-generation", burst_prompts[i], {"max_new_tokens": BURST_NEW})
            return r["completion_tokens"]

        served, raw = [], []
        concurrent(one, BURST)  # warm-up
        static.burst(burst_prompts)
        for _ in range(ROUNDS):
            raw.append(static.burst(burst_prompts))
            res_b, dt = concurrent(one, BURST)
            served.append(sum(res_b) / dt)
        out["burst"] = {
            "served_tokens_per_s": served,
            "static_tokens_per_s": raw,
            "ratio_best": max(served) / max(raw),
            "ratio_median": statistics.median(served) / statistics.median(raw),
        }
    return out


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "gpu-out"))
    dest = target if target.suffix == ".json" else target / "gpu_generation.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    root = Path(os.environ.get("HFP_BENCH_MODELS", "/tmp/hfp-gpu-models"))
    t_start = time.perf_counter()
    path = build_model(root)
    report: dict[str, Any] = {
        "device": "cpu-smoke" if SMOKE else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "workload": {"requests": N, "rate_per_s": RATE, "long": LONG, "short": SHORT, "slots": SLOTS},
    }
    static = Static(path)
    prompts, kinds, _ = workload()
    static.generate(prompts[:8], SHORT)  # warm-up
    ceilings = [static.grouped(prompts, kinds) for _ in range(ROUNDS)]
    best = max(ceilings, key=lambda c: c["tokens_per_s"])
    report["ceiling_static_grouped"] = best
    for mode in MODES:
        t0 = time.perf_counter()
        try:
            report[mode] = serve(mode, path, static, best["tokens_per_s"])
        except Exception as e:
            import traceback

            report[mode] = {"error": repr(e), "trace": traceback.format_exc()[-3000:]}
        report[mode]["check_seconds"] = time.perf_counter() - t0
        r = report[mode]
        if "poisson" in r:
            po, bu = r["poisson"], r["burst"]
            print(
                f"{mode:>10}: served/ceiling {po['served_over_ceiling']:.2f} "
                f"({po['tokens_per_s']:.0f} vs {best['tokens_per_s']:.0f} tokens/s); short p50 "
                f"{po['short_p50_s'] * 1000:.0f} ms = {po['short_p50_over_unloaded']:.2f}x unloaded "
                f"({r['short_unloaded_s'] * 1000:.0f} ms), p99 {po['short_p99_s'] * 1000:.0f} ms; "
                f"burst {bu['ratio_best']:.2f} of static (median {bu['ratio_median']:.2f}); "
                f"errors {len(po['errors'])}",
                flush=True,
            )
        else:
            print(mode, json.dumps(r)[:2000], flush=True)
        dest.write_text(json.dumps(report, indent=1))  # after each mode: a crash later keeps these figures
    heavy = {"fastapi", "uvicorn", "typer", "rich", "orjson", "psutil", "prometheus_client", "starlette"}
    report["imported_optional"] = sorted(heavy & {m.split(".")[0] for m in sys.modules})
    report["total_seconds"] = time.perf_counter() - t_start
    dest.write_text(json.dumps(report, indent=1))
    print("wrote", dest, f"in {report['total_seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
