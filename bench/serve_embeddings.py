"""Served embeddings vs the raw model, in one run: `python bench/serve_embeddings.py [--quick] [--metrics-compare]`.

Starts `hfp serve` (and with --metrics-compare a second server with metrics and history off), then runs
rounds that interleave the raw in-process baseline (SentenceTransformer.encode, servers idle) with HTTP load
from a separate client process. Prints ratios of medians to the raw
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


class Raw:
    """The raw in-process baseline: SentenceTransformer.encode on the same model files."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from hf_provider.testing.models import minilm_path

        self.st = SentenceTransformer(str(minilm_path()), device="cpu")
        self.st.encode(["warm-up"] * 64, batch_size=32)

    def batch_rate(self, texts: list[str]) -> float:
        t0 = time.perf_counter()
        self.st.encode(texts, batch_size=32)
        return len(texts) / (time.perf_counter() - t0)

    def single_ms(self, texts: list[str]) -> float:
        lat = []
        for t in texts:
            s = time.perf_counter()
            self.st.encode([t], batch_size=1)
            lat.append(time.perf_counter() - s)
        return statistics.median(lat) * 1000


def c32x1(url: str, texts: list[str]) -> dict:
    r = run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts], 32)
    return {"rate": len(texts) / r["seconds"], "errors": r["errors"]}


def c1x1(url: str, texts: list[str]) -> dict:
    r = run_client(url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts], 1)
    return {"p50_ms": statistics.median(r["latencies"]) * 1000, "errors": r["errors"]}


def c8x32(url: str, texts: list[str]) -> dict:
    payloads = [{"model": MODEL, "input": texts[i : i + 32]} for i in range(0, len(texts), 32)]
    r = run_client(url, "/v1/embeddings", payloads, 8)
    return {"rate": len(texts) / r["seconds"], "errors": r["errors"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument(
        "--metrics-compare", action="store_true", help="also a server with metrics and history off"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument(
        "--compare-src",
        type=Path,
        help="a src/ folder of another version (e.g. a `git worktree` of the previous commit): its server runs "
        "in the same rounds with the same client, and the after/before ratios are printed",
    )
    args = ap.parse_args()
    texts = sentences(2048)
    n = 512 if args.quick else 1536
    servers = {"on": start_server()}
    if args.metrics_compare:
        servers["off"] = start_server({"HFP_METRICS_ENABLED": "false", "HFP_HISTORY_ENABLED": "false"})
    if args.compare_src:
        servers["before"] = start_server({"PYTHONPATH": str(args.compare_src.resolve())})
    raw = Raw()
    rows: dict[str, list[float]] = {}
    errors = 0

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    try:
        for _, url in servers.values():
            run_client(
                url, "/v1/embeddings", [{"model": MODEL, "input": t} for t in texts[:64]], 8
            )  # warm-up
        # Rounds interleave the raw baseline with the served runs (servers idle while raw runs), so a drift in
        # this machine's speed moves both sides of each ratio together.
        for i in range(args.rounds):
            add("raw_rate", raw.batch_rate(texts[:n]))
            add("raw_single_ms", raw.single_ms(texts[:100]))
            # the servers' order flips every round: the one measured right after the raw baseline (its caches
            # cold, the CPU hot) is not always the same one
            order = list(servers.items()) if i % 2 == 0 else list(reversed(servers.items()))
            for name, (_, url) in order:
                r = c32x1(url, texts[:n])
                add(f"{name}_c32x1", r["rate"])
                errors += r["errors"]
            for name in [k for k, _ in order if k in ("on", "before")]:
                r = c1x1(servers[name][1], texts[:100])
                add(f"{name}_c1x1_p50_ms", r["p50_ms"])
                r2 = c8x32(servers[name][1], texts[: n // 2])
                add(f"{name}_c8x32", r2["rate"])
                errors += r["errors"] + r2["errors"]
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    med = {k: statistics.median(v) for k, v in rows.items()}
    report = {
        "runs": rows,
        "median": med,
        "ratio_c32x1": med["on_c32x1"] / med["raw_rate"],
        "added_p50_ms_c1x1": med["on_c1x1_p50_ms"] - med["raw_single_ms"],
        "ratio_c8x32": med["on_c8x32"] / med["raw_rate"],
        "failed_requests": errors,
    }
    print(
        f"raw: {med['raw_rate']:.1f} sentences/s at batch 32; single sentence {med['raw_single_ms']:.2f} ms "
        f"(medians of {args.rounds} interleaved rounds)"
    )
    print(
        f"32 clients x 1 sentence: {med['on_c32x1']:.1f}/s -> ratio {report['ratio_c32x1']:.3f} (target >= 0.85)"
    )
    print(
        f"1 client x 1 sentence: p50 {med['on_c1x1_p50_ms']:.2f} ms -> +{report['added_p50_ms_c1x1']:.2f} ms "
        "over raw (target <= 2 ms)"
    )
    print(
        f"8 clients x 32 sentences: {med['on_c8x32']:.1f}/s -> ratio {report['ratio_c8x32']:.3f} (target >= 0.95)"
    )
    if "off" in servers:
        report["metrics_on_off_ratio_c32x1"] = med["on_c32x1"] / med["off_c32x1"]
        print(
            f"metrics on/off throughput (32 x 1): {report['metrics_on_off_ratio_c32x1']:.3f} (target >= 0.97)"
        )
    if "before" in servers:
        report["after_before"] = {
            "c32x1": med["on_c32x1"] / med["before_c32x1"],
            "c1x1_p50": med["on_c1x1_p50_ms"] / med["before_c1x1_p50_ms"],
            "c8x32": med["on_c8x32"] / med["before_c8x32"],
        }
        ab = report["after_before"]
        print(
            f"this version / --compare-src (same rounds, same client): 32 x 1 throughput {ab['c32x1']:.3f}, "
            f"1 x 1 p50 latency {ab['c1x1_p50']:.3f}, 8 x 32 throughput {ab['c8x32']:.3f}"
        )
    print(f"failed requests: {errors}")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
