"""Encoder embeddings served through the Provider against the raw tokenize + forward loop, same run (issue 12).

`python bench/gpu_encoder.py [OUT.json]` on a GPU: a random BERT-base (768 x 12) in fp16. The raw loop tokenizes
256 sentences in one call of the fast tokenizer, runs the forward pass, pools, normalizes and copies the vectors
to the host. Served: the same sentences through `Provider.arun` from asyncio clients (as the HTTP server calls it),
(a) 16 clients x 32 sentences and (b) 256 clients x 1 sentence, each client sending its next request when the
last is answered. Prints sentences/s and served/raw, with the batch sizes and the stage times per batch, so the
CPU time left around the device shows. `--compare-src DIR` runs the served part again with another copy of
`src/` (a child process), for a before/after in the same run.

SMOKE=1 runs it small on the CPU (a tiny BERT) to catch mistakes before spending device time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SMOKE = os.environ.get("SMOKE") == "1"
ROOT = Path("/tmp/hfp-gpu-models")
SECONDS = 2.0 if SMOKE else 8.0
BATCH = 256


def build_model() -> Path:
    from hf_provider.testing.models import build_sized_bert

    if SMOKE:
        return build_sized_bert(ROOT, hidden=64, layers=2, name="bert-small-random")
    return build_sized_bert(ROOT, hidden=768, layers=12, name="bert-base-random")


def device_and_dtype() -> tuple[str, str]:
    return ("cpu", "float32") if SMOKE else ("cuda", "float16")


def sync() -> None:
    import torch

    if torch.cuda.is_available() and not SMOKE:
        torch.cuda.synchronize()


def raw_rate(path: Path, texts: list[str]) -> dict:
    """The ceiling: one tokenizer call per 256 sentences, forward, mean pooling, normalize, vectors to the host."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    dev, dtype = device_and_dtype()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype)).to(dev).eval()

    def step(chunk: list[str]) -> torch.Tensor:
        enc = tok(chunk, padding=True, truncation=True, return_tensors="pt").to(dev)
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v.float(), dim=-1).cpu()

    chunks = [texts[k : k + BATCH] for k in range(0, len(texts), BATCH)]
    with torch.inference_mode():
        for c in chunks[:3]:
            step(c)
        sync()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < SECONDS:
            for c in chunks:
                step(c)
                n += len(c)
        sync()
        dt = time.perf_counter() - t0
        # the forward pass alone, on pre-tokenized batches already on the device
        encs = [tok(c, padding=True, truncation=True, return_tensors="pt").to(dev) for c in chunks]
        sync()
        f, t1 = 0, time.perf_counter()
        while time.perf_counter() - t1 < SECONDS / 2:
            for e in encs:
                model(**e)
                f += e["input_ids"].shape[0]
        sync()
        fdt = time.perf_counter() - t1
    return {"raw_sentences_per_s": n / dt, "forward_only_sentences_per_s": f / fdt}


async def closed_loop(p, clients: int, per_request: int, texts: list[str]) -> tuple[int, float, int]:
    """`clients` tasks, each sending `per_request` sentences at a time until SECONDS have passed."""
    stop = time.perf_counter() + SECONDS
    done = [0]
    failed = [0]

    async def client(i: int) -> None:
        k = i * per_request
        while time.perf_counter() < stop:
            chunk = [texts[(k + j) % len(texts)] for j in range(per_request)]
            k += per_request * clients
            try:
                out = await p.arun("m", "embeddings", chunk)
                assert len(out) == per_request
                done[0] += per_request
            except Exception:
                failed[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return done[0], time.perf_counter() - t0, failed[0]


def served(path: Path, texts: list[str]) -> dict:
    from hf_provider.provider import Provider
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec

    dev, dtype = device_and_dtype()
    spec = ModelSpec(
        name="m",
        source=str(path),
        tasks=["embeddings"],
        dtype=dtype,
        device=dev,
        batching={"max_batch_size": BATCH, "max_batch_tokens": 1 << 20},
    )
    out: dict = {}
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("m")
        sched = p.manager.get("m").scheduler
        for name, clients, per in (("c16x32", 16, 32), ("c256x1", 256, 1)):
            asyncio.run(closed_loop(p, clients, per, texts))  # warm-up: shapes, allocator, kernel choice
            before = sched.batches
            timings: list[tuple[int, float, float, float, float]] = []
            orig = sched.observer.batch_done

            def spy(model, task, size, padded, queue_s, pre, fwd, post, peak, _orig=orig, _t=timings):
                _t.append((size, queue_s, pre, fwd, post))
                return _orig(model, task, size, padded, queue_s, pre, fwd, post, peak)

            sched.observer.batch_done = spy
            n, dt, failed = asyncio.run(closed_loop(p, clients, per, texts))
            sched.observer.batch_done = orig
            batches = sched.batches - before

            def med(i: int, _t=timings) -> float:
                return statistics.median(t[i] for t in _t) * 1000 if _t else 0.0

            out[name] = {
                "sentences_per_s": n / dt,
                "failed": failed,
                "batches": batches,
                "mean_batch": n / max(1, batches),
                "median_ms": {
                    "queue": med(1),
                    "preprocess": med(2),
                    "forward": med(3),
                    "postprocess": med(4),
                },
                "forward_busy_share": sum(t[3] for t in timings) / dt,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--compare-src", type=Path, help="another copy of src/ to serve with, same run")
    ap.add_argument("--served-only", action="store_true", help=argparse.SUPPRESS)  # the --compare-src child
    args = ap.parse_args()
    from sentences import sentences

    texts = sentences(1024 if SMOKE else 4096)
    path = build_model()
    if args.served_only:
        print(json.dumps(served(path, texts)))
        return
    import torch

    report: dict = {
        "device": "cpu-smoke" if SMOKE else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "model": str(path.name),
    }
    report.update(raw_rate(path, texts))
    report["served"] = served(path, texts)
    if args.compare_src:
        env = {**os.environ, "PYTHONPATH": f"{args.compare_src.resolve()}:{os.environ.get('PYTHONPATH', '')}"}
        child = subprocess.run(
            [sys.executable, __file__, "--served-only"], env=env, capture_output=True, text=True, check=False
        )
        if child.returncode == 0:
            report["before"] = json.loads(child.stdout.strip().splitlines()[-1])
        else:
            report["before_error"] = child.stderr[-2000:]
    raw = report["raw_sentences_per_s"]
    fwd = report["forward_only_sentences_per_s"]
    print(f"device {report['device']}; raw loop {raw:.0f} sentences/s (forward only {fwd:.0f})")
    for name, target in (("c16x32", 0.85), ("c256x1", 0.5)):
        s = report["served"][name]
        rate = s["sentences_per_s"]
        line = f"{name}: served {rate:.0f}/s = {rate / raw:.2f} of raw (target {target})"
        if "before" in report:
            b = report["before"][name]
            line += f"; before {b['sentences_per_s'] / raw:.2f}"
        print(line, f"| mean batch {s['mean_batch']:.0f}, stages ms {s['median_ms']}, failed {s['failed']}")
        s["ratio_to_raw"] = s["sentences_per_s"] / raw
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
