"""What tracing costs on the CPU serving path (observability/tracing.py).

    python bench/tracing.py [--requests 400] [--clients 4] [--rounds 3]

One Provider serving the tiny BERT's embeddings in-process; `--clients` threads send single-sentence requests.
Rounds alternate between tracing off (the baseline, measured in the same run on the same loaded model) and
tracing on with an in-memory span exporter (every span recorded), so drift of a shared CPU hits both alike.
Printed: requests/s, p50 / p99 latency and CPU seconds per request per mode, as ratios to tracing off; and, for
tracing off, the cost of
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


def run_round(provider: Provider, texts: list[str], clients: int) -> tuple[float, list[float], float]:
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if provider.tracing is not None:
        provider.tracing.flush()  # the spans' CPU is counted in the round that made them
    cpu = (time.process_time() - cpu0) / len(lat)
    return len(lat) / (time.perf_counter() - t0), lat, cpu


def span_cost_us(n: int = 2000) -> float:
    """CPU to build one traced request's spans (hfp.request and its six children, plus hfp.parse), alone: what
    tracing on adds per request, free of the shared machine's noise."""
    from types import SimpleNamespace

    from opentelemetry import context

    from hf_provider.observability.tracing import Trace

    tracing = Tracing(InMemorySpanExporter(), batch=True)
    trace = Trace(tracing, context.get_current())
    timings = {"preprocess": 0.001, "forward": 0.003, "postprocess": 0.0005}
    batch = SimpleNamespace(size=4, formed_at=0.001, decided=0.002, timings=timings, padded_tokens=40)
    req = SimpleNamespace(
        model="enc", handler=SimpleNamespace(task="embeddings"), revision="abc", outcome="ok", items=[1],
        priority=0, fallback_reason=None, settled_at=0.01,
    )  # fmt: skip
    t0 = time.process_time()
    for _ in range(n):
        trace.parsed(time.perf_counter())
        rt = trace.request(0.0)
        rt.batch(batch, 0.009)  # type: ignore[arg-type]
        rt.finish(req, None)  # type: ignore[arg-type]
    cost = (time.process_time() - t0) / n * 1e6
    tracing.shutdown()
    return cost


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
    sys.setswitchinterval(0.001)  # as `hfp serve` sets it ([server] gil_switch_interval_ms)
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
        results: dict[str, list[tuple[float, list[float], float]]] = {"off": [], "on": []}
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

    def summary(mode: str) -> tuple[float, float, float, float]:
        rps = statistics.median(r for r, _, _ in results[mode])
        lat = sorted(x for _, lats, _ in results[mode] for x in lats)
        cpu = statistics.median(c for _, _, c in results[mode])
        return rps, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, cpu * 1e3

    base = summary("off")
    print(
        f"{args.rounds} rounds x {args.requests} requests, {args.clients} clients, tiny BERT embeddings, CPU"
    )
    # CPU per request (all threads of the process) is the steadier figure on a shared machine: other processes
    # slow the wall clock of a round, not the CPU this process spends on it.
    print(
        f"{'mode':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"
        f"{'req/s vs off':>14}{'p50 vs off':>12}{'CPU vs off':>12}"
    )
    for mode, label in (("off", "tracing off (baseline)"), ("on", "tracing on, in-memory exporter")):
        rps, p50, p99, cpu = summary(mode)
        print(
            f"{label:<34}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>12.3f}"
            f"{rps / base[0]:>14.3f}{p50 / base[1]:>12.3f}{cpu / base[3]:>12.3f}"
        )
    print(
        f"spans recorded with tracing on: {spans} ({spans / (args.rounds * args.requests):.1f} per request)"
    )
    sc = span_cost_us()
    print(
        f"tracing on, building one request's 8 spans alone: {sc:.0f} us CPU = {sc / (base[3] * 1e3):.1%} of the"
    )
    print(
        "  CPU of a request with tracing off (the rounds' CPU also counts torch's threads spinning while they wait)"
    )
    g = guard_cost_ns()
    print(
        f"tracing off, the guard alone: {g:.0f} ns per request = {g / (base[1] * 1e6):.5%} of a p50 request"
    )


if __name__ == "__main__":
    main()
