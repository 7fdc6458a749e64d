"""What tracing costs on the CPU serving path (observability/tracing.py).

    python bench/tracing.py [--requests 400] [--clients 4] [--rounds 3]

One Provider serving the tiny BERT's embeddings in-process; `--clients` threads send single-sentence requests.
Rounds alternate between tracing off (the baseline, measured in the same run on the same loaded model) and
tracing on with an in-memory span exporter (every span recorded), so drift of a shared CPU hits both alike.
Printed: requests/s and p50 / p99 latency per mode, as ratios to tracing off; and, for tracing off, the cost of
the guard itself (a context-variable read per request and `is None` checks at settlement) timed alone, as a
share of one request's time.
"""

from __future__ import annotations

import argparse
import contextvars
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_provider.observability.tracing import Tracing
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.testing.models import build_tiny_models
from sentences import sentences


def run_round(provider: Provider, texts: list[str], clients: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    lock = threading.Lock()
    per = len(texts) // clients

    def client(part: list[str]) -> None:
        mine = []
        for t in part:
            t0 = time.perf_counter()
            provider.embed("enc", [t])
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [
        threading.Thread(target=client, args=(texts[i * per : (i + 1) * per],)) for i in range(clients)
    ]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(lat) / (time.perf_counter() - t0), lat


def guard_cost_ns(n: int = 200_000) -> float:
    """The off path's added work per request: two context-variable reads and three `is None` checks."""
    var: contextvars.ContextVar[object | None] = contextvars.ContextVar("x", default=None)
    trace = None
    t0 = time.perf_counter()
    for _ in range(n):
        if var.get() is not None:
            pass
        if var.get() is not None:
            pass
        if trace is not None:
            pass
        if trace is not None:
            pass
        if trace is not None:
            pass
    loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    empty = time.perf_counter() - t0
    return (loop - empty) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    models = build_tiny_models(Path(tempfile.gettempdir()) / "hfp-bench-models")
    config = {
        "home": tempfile.mkdtemp(),
        "history_enabled": False,
        "models": [
            {"name": "enc", "source": str(models["bert-cls"]), "tasks": ["embeddings"], "device": "cpu"}
        ],
    }
    provider = Provider(settings=load_settings(config), allow_adhoc=False)
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter, batch=True)
    texts = sentences(args.requests, seed=1)
    try:
        run_round(provider, texts[:100], args.clients)  # warm-up: load, first batches
        results: dict[str, list[tuple[float, list[float]]]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                provider.tracing = tracing if mode == "on" else None
                results[mode].append(run_round(provider, texts, args.clients))
        provider.tracing = None
        tracing.provider.force_flush()
        spans = len(exporter.get_finished_spans())
    finally:
        provider.close()
        tracing.shutdown()

    def summary(mode: str) -> tuple[float, float, float]:
        rps = statistics.median(r for r, _ in results[mode])
        lat = sorted(x for _, lats in results[mode] for x in lats)
        return rps, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3

    base = summary("off")
    print(
        f"{args.rounds} rounds x {args.requests} requests, {args.clients} clients, tiny BERT embeddings, CPU"
    )
    print(f"{'mode':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s vs off':>14}{'p50 vs off':>12}")
    for mode, label in (("off", "tracing off (baseline)"), ("on", "tracing on, in-memory exporter")):
        rps, p50, p99 = summary(mode)
        print(f"{label:<34}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{rps / base[0]:>14.3f}{p50 / base[1]:>12.3f}")
    print(
        f"spans recorded with tracing on: {spans} ({spans / (args.rounds * args.requests):.1f} per request)"
    )
    g = guard_cost_ns()
    print(
        f"tracing off, the guard alone: {g:.0f} ns per request = {g / (base[1] * 1e6):.5%} of a p50 request"
    )


if __name__ == "__main__":
    main()
