"""Eager vs the variant `hfp optimize` chooses, both served over HTTP in one run: `python bench/optimize.py`.

1. Measures the candidates for all-MiniLM-L6-v2 embeddings in process (optimize/run.py; `--variant X` skips this
   and serves X), printing the table's figures.
2. Starts two `hfp serve` processes on the same model files, one with `optimize = "none"`, one with the variant
   forced, and runs interleaved rounds of 32 clients x 1 sentence and 1 client x 1 sentence against each from a
   separate client process; prints medians and the ratios variant / eager, and the cosine between the two
   servers' vectors. Issue 14's target: >= 1.3x eager's throughput at 32 x 1, or <= 0.75x its one-client p50,
   at cosine >= 0.99. On a CPU shared with other work every figure moves; the interleaving keeps both sides of a
   ratio under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import numpy as np

from _http import run_client, start_server, stop_server
from sentences import sentences

MODEL = "all-MiniLM-L6-v2"


def _config(variant: str) -> Path:
    from hf_provider.testing.models import minilm_path

    text = "\n".join(
        [
            "history_enabled = false",
            "",
            "[[models]]",
            f'name = "{MODEL}"',
            f'source = "{minilm_path()}"',
            'tasks = ["embeddings"]',
            'device = "cpu"',
            f'optimize = "{variant}"',
            "",
        ]
    )
    fd, path = tempfile.mkstemp(suffix=".toml", prefix=f"hfp-optimize-{variant}-")
    os.write(fd, text.encode())
    os.close(fd)
    return Path(path)


def choose(candidates: list[str] | None) -> str:
    from hf_provider.hub.resolve import resolve
    from hf_provider.optimize.run import optimize
    from hf_provider.spec import ModelSpec
    from hf_provider.testing.models import minilm_path

    spec = ModelSpec(name=MODEL, source=str(minilm_path()), tasks=["embeddings"], device="cpu")
    report = optimize(spec, candidates=candidates, resolved=resolve(spec.source), repeats=10, batch_repeats=2)
    for r in report.variants:
        print(
            f"  {r.name:17} p50@1 {r.latency_ms_p50 or 0:8.2f} ms  {r.throughput_per_s or 0:7.1f}/s@32  "
            f"acc {r.accuracy if r.accuracy is not None else float('nan'):.4f}  build {r.build_s or 0:5.2f}s  "
            f"{'accepted' if r.accepted else 'unavailable' if not r.available else 'refused'}"
            f"{': ' + r.reason if r.reason else ''}"
        )
    print(f"chosen by the in-process measurement: {report.chosen}")
    return report.chosen


def vectors(url: str, texts: list[str]) -> np.ndarray:
    r = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
    r.raise_for_status()
    return np.array([d["embedding"] for d in r.json()["data"]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", help="serve this variant (skip the in-process measurement)")
    ap.add_argument("--candidates", help="comma-separated candidates to measure (default: all but compile)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--n", type=int, default=512, help="sentences per 32-client run")
    args = ap.parse_args()
    default = ["sdpa", "eager-attention", "int8", "int8-weight-only", "onnx", "onnx-int8", "openvino"]
    variant = args.variant or choose(args.candidates.split(",") if args.candidates else default)
    if variant == "eager":
        print("no candidate beat eager on this machine: nothing to compare over HTTP")
        return
    texts = sentences(max(args.n, 200))
    servers = {name: start_server(config=_config(v)) for name, v in (("eager", "none"), ("variant", variant))}
    rows: dict[str, list[float]] = {}
    errors = 0
    try:
        for _, url in servers.values():  # warm-up
            run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:64]], 8)
        probe = texts[:64]
        a, b = (vectors(servers[k][1], probe) for k in ("eager", "variant"))
        cos = float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
        for _ in range(args.rounds):
            for name, (_, url) in servers.items():
                r = run_client(
                    url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[: args.n]], 32
                )
                rows.setdefault(f"{name}_c32x1", []).append(args.n / r["seconds"])
                r1 = run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:100]], 1)
                rows.setdefault(f"{name}_c1x1_p50_ms", []).append(statistics.median(r1["latencies"]) * 1000)
                errors += r["errors"] + r1["errors"]
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    med = {k: statistics.median(v) for k, v in rows.items()}
    thr = med["variant_c32x1"] / med["eager_c32x1"]
    lat = med["variant_c1x1_p50_ms"] / med["eager_c1x1_p50_ms"]
    print(json.dumps({"variant": variant, "runs": rows, "median": med, "cosine_min": cos, "errors": errors}))
    print(
        f"variant {variant} vs eager, medians of {args.rounds} interleaved rounds (HTTP, same machine, same run):"
    )
    print(
        f"  32 clients x 1 sentence: {med['eager_c32x1']:.1f}/s -> {med['variant_c32x1']:.1f}/s = {thr:.2f}x "
        "(target >= 1.3x)"
    )
    print(
        f"  1 client p50: {med['eager_c1x1_p50_ms']:.2f} ms -> {med['variant_c1x1_p50_ms']:.2f} ms = {lat:.2f}x "
        "(target <= 0.75x)"
    )
    print(
        f"  min cosine between the servers' vectors on 64 sentences: {cos:.5f} (target >= 0.99); errors {errors}"
    )


if __name__ == "__main__":
    main()
