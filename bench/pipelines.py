"""What a pipeline costs over HTTP against its steps called in-process, and what it saves against a client that
chains the steps itself (pipelines/).

    python bench/pipelines.py [--requests 60] [--tokens 4] [--rtt-ms 1,2,5,10]

One `hfp serve` (a subprocess) serves the tiny T5 of hf_provider.testing (translation and summarization, fp32 on
the CPU) with two pipelines: `digest` (translate, then summarize the translation) and `fan` (two summaries of two
inputs, independent steps). In the bench process, a Provider on the same model gives the in-process baseline.
Each iteration runs every path once, back to back, so a shared CPU's drift hits them alike (figures are p50s, and
medians of the per-iteration ratios); one lean keep-alive client (bench/_http.py) sends every HTTP request, one
at a time:

- in-process: p50 of `provider.run(translation)` and of `provider.run(summarization)` on the translation, and of
  `provider.apipeline("digest")` (the run's own cost without HTTP);
- pipeline: p50 of POST /v1/pipelines/digest (`return_steps`: the server's own step latencies, for the overhead);
- chained: p50 of POST /v1/tasks/translation then POST /v1/tasks/summarization with its output (same client);
- fan-out: p50 of POST /v1/pipelines/fan, and of each of its steps alone (POST /v1/tasks/summarization);
- a client further away: the pipeline and the chained client again through a latency proxy per `--rtt-ms`
  (bench/_latency_proxy.py, default 1, 2, 5 and 10 ms round trips), which is where chaining costs most: a
  pipeline pays one round trip, a client chaining two steps pays two.

Printed: p50s, the pipeline's margin over the in-process sum (target <= 2 ms), its saving against the chained
client (target >= 20%), per-step overhead (a step's latency inside the pipeline minus its in-process p50, and the
rest: HTTP, JSON and the run's own work), and fan-out over the slower step alone (target <= 1.2x).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _http import Conn, start_server, stop_server
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.testing.models import build_tiny_models

TEXT = "The committee announced a new plan for the old library after a long debate."
OTHER = "A small startup built a quiet electric boat for the river near the city."


def config(t5: Path, home: Path, tokens: int) -> str:
    params = f"{{ max_new_tokens = {tokens} }}"
    return f"""home = "{home}"
history_enabled = false

[[models]]
name = "t5"
source = "{t5}"
device = "cpu"
dtype = "float32"
tasks = ["translation", "summarization"]

[[pipelines]]
name = "digest"
steps = [
  {{ name = "translate", model = "t5", task = "translation", parameters = {params} }},
  {{ name = "summary", model = "t5", task = "summarization", input = "{{translate.text}}", parameters = {params} }},
]

[[pipelines]]
name = "fan"
steps = [
  {{ name = "a", model = "t5", task = "summarization", input = "{{inputs.a}}", parameters = {params} }},
  {{ name = "b", model = "t5", task = "summarization", input = "{{inputs.b}}", parameters = {params} }},
]
"""


def p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000.0


class Timer:
    """Latencies (seconds) by name."""

    def __init__(self) -> None:
        self.out: dict[str, list[float]] = {}

    def add(self, key: str, seconds: float) -> None:
        self.out.setdefault(key, []).append(seconds)


async def over_link(conn: Conn, rtt: float, tokens: int, t: Timer) -> None:
    """The pipeline and the chained client through the latency proxy of `rtt` ms (and the round trip itself)."""
    params = {"max_new_tokens": tokens}
    t0 = time.perf_counter()
    await conn.get("/healthz")
    t.add(f"healthz@{rtt:g}", time.perf_counter() - t0)
    t0 = time.perf_counter()
    status, body = await conn.post("/v1/pipelines/digest", {"inputs": TEXT})
    t.add(f"pipeline@{rtt:g}", time.perf_counter() - t0)
    assert status == 200, body
    t0 = time.perf_counter()
    s1, b1 = await conn.post("/v1/tasks/translation", {"model": "t5", "inputs": TEXT, "parameters": params})
    text = orjson.loads(b1)["outputs"]["translation_text"]
    s2, b2 = await conn.post("/v1/tasks/summarization", {"model": "t5", "inputs": text, "parameters": params})
    t.add(f"chained@{rtt:g}", time.perf_counter() - t0)
    assert s1 == 200 and s2 == 200, (b1, b2)


async def one_iteration(
    p: Provider, conn: Conn, tokens: int, translated: str, t: Timer, links: dict[float, Conn]
) -> None:
    """Every measured path once, back to back, so a shared CPU's drift falls on all of them alike."""
    params = {"max_new_tokens": tokens}
    # in-process: the Provider's own synchronous API, off the loop (nothing else runs meanwhile)
    t0 = time.perf_counter()
    p.run("t5", "translation", TEXT, params)
    t.add("translate", time.perf_counter() - t0)
    t0 = time.perf_counter()
    p.run("t5", "summarization", translated, params)
    t.add("summary", time.perf_counter() - t0)
    # the pipeline in-process (the run's own cost, without HTTP)
    t0 = time.perf_counter()
    await p.apipeline("digest", TEXT)
    t.add("pipeline_inproc", time.perf_counter() - t0)
    # the pipeline over HTTP, with the server's own step latencies
    t0 = time.perf_counter()
    status, body = await conn.post("/v1/pipelines/digest", {"inputs": TEXT, "return_steps": True})
    t.add("pipeline", time.perf_counter() - t0)
    assert status == 200, body
    steps = orjson.loads(body)["steps"]
    t.add("in_pipeline_translate", steps["translate"]["latency_ms"] / 1000)
    t.add("in_pipeline_summary", steps["summary"]["latency_ms"] / 1000)
    # the same two steps chained by the client
    t0 = time.perf_counter()
    s1, b1 = await conn.post("/v1/tasks/translation", {"model": "t5", "inputs": TEXT, "parameters": params})
    text = orjson.loads(b1)["outputs"]["translation_text"]
    s2, b2 = await conn.post("/v1/tasks/summarization", {"model": "t5", "inputs": text, "parameters": params})
    t.add("chained", time.perf_counter() - t0)
    assert s1 == 200 and s2 == 200, (b1, b2)
    # fan-out, and each of its steps alone
    for key, path, payload in (
        ("fan", "/v1/pipelines/fan", {"inputs": {"a": TEXT, "b": OTHER}}),
        ("alone_a", "/v1/tasks/summarization", {"model": "t5", "inputs": TEXT, "parameters": params}),
        ("alone_b", "/v1/tasks/summarization", {"model": "t5", "inputs": OTHER, "parameters": params}),
    ):
        t0 = time.perf_counter()
        status, body = await conn.post(path, payload)
        t.add(key, time.perf_counter() - t0)
        assert status == 200, body
    t0 = time.perf_counter()
    await conn.get("/healthz")
    t.add("healthz@0", time.perf_counter() - t0)
    for rtt, link in links.items():
        await over_link(link, rtt, tokens, t)


async def measure(
    p: Provider, url: str, n: int, tokens: int, translated: str, t: Timer, proxies: dict[float, int]
) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = Conn(host, int(port))
    links = {rtt: Conn("127.0.0.1", proxy_port) for rtt, proxy_port in proxies.items()}
    try:
        for _ in range(n):
            await one_iteration(p, conn, tokens, translated, t, links)
    finally:
        conn.close()
        for link in links.values():
            link.close()


def start_proxies(url: str, rtts: list[float], tmp: Path) -> tuple[list[subprocess.Popen], dict[float, int]]:
    """One latency proxy (bench/_latency_proxy.py) per round trip, each in its own process."""
    procs, ports = [], {}
    for rtt in rtts:
        port_file = tmp / f"proxy-{rtt:g}.port"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("_latency_proxy.py")),
                    "--target",
                    url.removeprefix("http://"),
                    "--rtt-ms",
                    str(rtt),
                    "--port-file",
                    str(port_file),
                ]
            )
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError("the latency proxy did not start")
            time.sleep(0.05)
        ports[rtt] = int(port_file.read_text())
    return procs, ports


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60, help="iterations; each sends every request once")
    ap.add_argument("--tokens", type=int, default=4, help="max_new_tokens of every step")
    ap.add_argument(
        "--rtt-ms",
        default="1,2,5,10",
        help="round trips to emulate between client and server (bench/_latency_proxy.py), comma-separated; "
        "the pipeline and the chained client are also measured through each ('' for loopback only)",
    )
    args = ap.parse_args()
    rtts = [float(r) for r in args.rtt_ms.split(",") if r.strip()]
    default = Path(__file__).resolve().parent.parent / ".hfp" / "tiny-models"
    models = build_tiny_models(Path(os.environ.get("HFP_TEST_MODELS", default)))  # the tests' cache
    # The server runs with a 1 ms GIL switch interval (server.gil_switch_interval_ms); the in-process baseline
    # gets the same, else its stage threads hand the GIL over up to 5 ms late and it looks slower than it is.
    sys.setswitchinterval(0.001)
    t = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "hfp.toml"
        cfg.write_text(config(models["t5"], Path(tmp) / "home", args.tokens), encoding="utf-8")
        proc, url = start_server(config=cfg)
        proxies: list[subprocess.Popen] = []
        try:
            proxies, ports = start_proxies(url, rtts, Path(tmp))
            with Provider(settings=load_settings(cfg)) as p:
                params = {"max_new_tokens": args.tokens}
                translated = p.run("t5", "translation", TEXT, params)["translation_text"]
                asyncio.run(measure(p, url, 5, args.tokens, translated, Timer(), ports))  # warm-up
                asyncio.run(measure(p, url, args.requests, args.tokens, translated, t, ports))
        finally:
            for proxy in proxies:
                proxy.kill()
            stop_server(proc)
    out = t.out
    m = {k: p50(out[k]) for k in out}
    inproc = m["translate"] + m["summary"]
    print(f"\np50 in ms ({args.requests} requests each, tiny T5, {args.tokens} tokens a step)")
    print(f"  in-process: translate {m['translate']:.2f} + summary {m['summary']:.2f} = {inproc:.2f}")
    print(
        f"  pipeline over HTTP: {m['pipeline']:.2f}  (margin over in-process: {m['pipeline'] - inproc:+.2f} ms, "
        f"target <= +2.00)"
    )
    print(
        f"  pipeline in-process (Provider.apipeline): {m['pipeline_inproc']:.2f}  "
        f"({m['pipeline_inproc'] - inproc:+.2f} ms over the sum)"
    )
    saving = 1 - m["pipeline"] / m["chained"]
    print(
        f"  client chaining two HTTP calls: {m['chained']:.2f}  (pipeline {100 * saving:.1f}% lower, target >= 20%)"
    )
    for step in ("translate", "summary"):
        inside = m[f"in_pipeline_{step}"]
        print(
            f"  step {step}: {inside:.2f} inside the pipeline vs {m[step]:.2f} in-process: "
            f"{inside - m[step]:+.2f} ms overhead"
        )
    rest = m["pipeline"] - m["in_pipeline_translate"] - m["in_pipeline_summary"]
    print(f"  the rest (HTTP, JSON, the run's own scheduling): {rest:.2f} ms")
    slower = max(m["alone_a"], m["alone_b"])
    print(
        f"  fan-out of 2 steps: {m['fan']:.2f} vs the slower step alone {slower:.2f}: {m['fan'] / slower:.2f}x "
        "(target <= 1.2x)"
    )
    n = len(out["pipeline"])
    pairs = [
        (out["pipeline"][i], out["chained"][i], out["translate"][i] + out["summary"][i]) for i in range(n)
    ]
    fan = [out["fan"][i] / max(out["alone_a"][i], out["alone_b"][i]) for i in range(n)]
    saving_med = 100 * statistics.median([1 - a / b for a, b, _ in pairs])
    margin_med = 1000 * statistics.median([a - c for a, _, c in pairs])
    print(
        f"  paired, median over the {n} iterations: saving {saving_med:.1f}%, margin {margin_med:+.2f} ms, "
        f"fan-out {statistics.median(fan):.2f}x"
    )
    if rtts:
        print(
            "\n  client further away (round trip through bench/_latency_proxy.py; 'measured' is GET /healthz"
        )
        print("  through the proxy minus on loopback):")
        print(
            "  | round trip asked / measured | pipeline p50 | chained p50 | pipeline lower by | paired median |"
        )
        print("  |---|---|---|---|---|")
        for rtt in rtts:
            k = f"{rtt:g}"
            measured = m[f"healthz@{k}"] - m["healthz@0"]
            pairs_r = zip(out[f"pipeline@{k}"], out[f"chained@{k}"], strict=True)
            paired = 100 * statistics.median([1 - a / b for a, b in pairs_r])
            low = 100 * (1 - m[f"pipeline@{k}"] / m[f"chained@{k}"])
            print(
                f"  | {rtt:g} / {measured:.2f} ms | {m[f'pipeline@{k}']:.2f} | {m[f'chained@{k}']:.2f} | "
                f"{low:.1f}% | {paired:.1f}% |"
            )
    ok = m["pipeline"] <= inproc + 2.0 and saving >= 0.20 and m["fan"] <= 1.2 * slower
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
