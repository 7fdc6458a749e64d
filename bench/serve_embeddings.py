"""Served embeddings vs the raw model, in one run: `python bench/serve_embeddings.py [--quick] [--metrics-compare]`.

Measures the raw in-process baseline first (SentenceTransformer.encode, nothing else running), then starts
`hfp serve` on all-MiniLM-L6-v2 and drives HTTP load from a separate client process. Prints ratios to the raw
baseline; targets from issue 3: >= 0.85 (32 clients x 1 sentence), <= +2 ms p50 (1 client), >= 0.95 (8 x 32).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import run_client, start_server, stop_server
from sentences import sentences

MODEL = "all-MiniLM-L6-v2"


def raw_baseline(texts: list[str], singles: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from hf_provider.testing.models import minilm_path

    st = SentenceTransformer(str(minilm_path()), device="cpu")
    st.encode(texts[:64], batch_size=32)  # warm-up
    t0 = time.perf_counter()
    st.encode(texts, batch_size=32)
    batch_rate = len(texts) / (time.perf_counter() - t0)
    lat = []
    for t in texts[:singles]:
        s = time.perf_counter()
        st.encode([t], batch_size=1)
        lat.append(time.perf_counter() - s)
    del st
    return {"sentences_per_s": batch_rate, "single_ms": statistics.median(lat) * 1000,
            "torch_threads": torch.get_num_threads()}


def served(url: str, texts: list[str], quick: bool) -> dict:
    out = {}
    n_single = 400 if quick else 1536
    run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:64]], 8)  # warm-up
    r = run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:n_single]], 32)
    out["c32x1"] = {"requests": n_single, "errors": r["errors"], "sentences_per_s": n_single / r["seconds"]}
    r = run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:200]], 1)
    out["c1x1"] = {"requests": 200, "errors": r["errors"], "p50_ms": statistics.median(r["latencies"]) * 1000}
    n_req = 24 if quick else 64
    payloads = [{"model": MODEL, "input": texts[i * 32:(i + 1) * 32]} for i in range(n_req)]
    r = run_client(url, "/v1/embeddings", payloads, 8)
    out["c8x32"] = {"requests": n_req, "errors": r["errors"], "sentences_per_s": n_req * 32 / r["seconds"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument("--metrics-compare", action="store_true", help="also run with metrics and history off")
    args = ap.parse_args()
    texts = sentences(2048)
    raw = raw_baseline(texts[:1536] if not args.quick else texts[:512], 200)
    print(f"raw: {raw['sentences_per_s']:.1f} sentences/s at batch 32; single sentence {raw['single_ms']:.2f} ms")
    runs = {"metrics_on": {}}
    if args.metrics_compare:
        runs["metrics_off"] = {"HFP_METRICS_ENABLED": "false", "HFP_HISTORY_ENABLED": "false"}
    results = {}
    for name, env in runs.items():
        proc, url = start_server(env)
        try:
            results[name] = served(url, texts, args.quick)
        finally:
            stop_server(proc)
    on = results["metrics_on"]
    report = {
        "raw": raw,
        "served": results,
        "ratio_c32x1": on["c32x1"]["sentences_per_s"] / raw["sentences_per_s"],
        "added_p50_ms_c1x1": on["c1x1"]["p50_ms"] - raw["single_ms"],
        "ratio_c8x32": on["c8x32"]["sentences_per_s"] / raw["sentences_per_s"],
    }
    print(f"32 clients x 1 sentence: {on['c32x1']['sentences_per_s']:.1f}/s -> ratio {report['ratio_c32x1']:.3f} "
          "(target >= 0.85)")
    print(f"1 client x 1 sentence: p50 {on['c1x1']['p50_ms']:.2f} ms -> +{report['added_p50_ms_c1x1']:.2f} ms "
          "over raw (target <= 2 ms)")
    print(f"8 clients x 32 sentences: {on['c8x32']['sentences_per_s']:.1f}/s -> ratio {report['ratio_c8x32']:.3f} "
          "(target >= 0.95)")
    if "metrics_off" in results:
        off = results["metrics_off"]
        report["metrics_on_off_ratio_c32x1"] = on["c32x1"]["sentences_per_s"] / off["c32x1"]["sentences_per_s"]
        print(f"metrics on/off throughput (32 x 1): {report['metrics_on_off_ratio_c32x1']:.3f} (target >= 0.97)")
    errors = sum(v["errors"] for r in results.values() for v in r.values())
    print(f"failed requests: {errors}")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
