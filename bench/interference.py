"""Task interference on one weight set (issue 24): a probe's latency alone and under a flood, in one run.

    python bench/interference.py [--quick] [--t5-small] [--rounds N] [--probes N] [--requests N]
        [--generation auto|continuous|static] [--yield-to-interactive auto|always|when-full]
        [--max-batch-size N] [--device cpu] [--torch-threads N] [--only KEY,...] [--json PATH]

One `hfp serve` subprocess (the real HTTP server, generated hfp.toml) serves a T5 built by hf_provider.testing
(the tiny one, or with --t5-small one of t5-small's dimensions, about 60M parameters) with translation and
summarization from one weight set, under three names that differ only in scheduling config: `t5` (the flags
above), `t5-share` (t5 + task_share {translation = 3, summarization = 1}) and `t5-xt-off` (t5 +
batching.cross_task = false), and the real all-MiniLM-L6-v2 as `minilm`. Every row prints the model it ran on;
the legend above the table prints each model's config.

Scenarios (keys for --only): a probe client sends --probes requests one at a time (random gaps of 0-20 ms, so
it does not fall into step with the flood's batches), alone and then while N flood clients keep one request
each in flight; every request names its priority in X-Priority, so a task_priority default never changes what
is measured.
  batch-flood   interactive translation (8 new tokens) | 8 clients, summarization (32 new tokens), batch
  inter-flood   the same, flood at interactive priority
  share-flood   the same on t5-share (translation has 3 shares to summarization's 1)
  other-model   minilm embeddings (one sentence) | 8 clients, t5 summarization, interactive
  starved-batch batch-priority translation | 16 clients, interactive summarization
  starved-share summarization on t5-share (the lowest share) | 16 clients, interactive translation
  throughput    16 clients, closed loop: 50/50 translation + summarization vs translation only, and 50/50
                on t5 (cross_task on) vs on t5-xt-off (cross_task off): items/s, each workload's --requests
                in two halves run in the order A B C C B A within a round
Rounds interleave every phase (alone, loaded, alone, loaded ... for each scenario in turn, then the next round),
so a drift in this shared machine's speed moves both sides of a ratio alike. Reported: the median over rounds
of each round's p50 and p99 (nearest rank: with fewer than 100 probes a round's p99 is its slowest probe),
the worst latency of all rounds, ratios loaded / alone, the flood's items/s while
probed (a scheduler that starves the flood would pass the latency targets for nothing), and PASS/FAIL against
the issue's targets. Exits 0 either way: it is a benchmark, not a test.

The clients: Python asyncio on uvloop with bench/_http.py's lean keep-alive HTTP/1.1 client, in this process
(which holds no model). At these concurrencies (at most 17 connections, a few hundred requests/s) it costs a
few percent of one core (printed as "client CPU" after the table), so the server keeps the 2 cores; the C
client bench/loadgen.c is built for 1000 connections and one workload, while here the probe and the flood
need different requests, headers and phases under one clock.

Duration on the shared 2-core CPU: --quick about 1 minute; the full run 9-10 minutes with the tiny T5 (556 s
on 2026-12-07) and about 12 with --t5-small (706 s; fewer requests by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import ROOT, Conn, start_server, stop_server
from _interference_config import legend, model_configs, write_config
from _interference_table import LatencyRow, Target, ThroughputRow, pct, render
from sentences import sentences

TEXTS = sentences(256, seed=24)
GAP_S = 0.01  # mean pause between probe requests
FLOOD_WINDOW_S = 2.0  # shortest window the flood's items/s is measured over


@dataclass(frozen=True)
class Req:
    model: str
    task: str  # "embeddings" goes to /v1/embeddings, any other to /v1/tasks/{task}
    new_tokens: int = 0
    priority: str = "interactive"

    def http(self, i: int) -> tuple[str, dict, dict[str, str]]:
        text, headers = TEXTS[i % len(TEXTS)], {"X-Priority": self.priority}
        if self.task == "embeddings":
            return "/v1/embeddings", {"model": self.model, "input": text}, headers
        body = {"model": self.model, "inputs": text, "parameters": {"max_new_tokens": self.new_tokens}}
        return f"/v1/tasks/{self.task}", body, headers

    def describe(self) -> str:
        tokens = f", {self.new_tokens} new tokens" if self.new_tokens else ""
        return f"{self.task}{tokens}, {self.priority}"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    probe: Req
    flood: Req
    clients: int
    target: Target


TR = Req("t5", "translation", 8)
SU = Req("t5", "summarization", 32)
SCENARIOS = [
    Scenario(
        "batch-flood",
        "interactive translation (8 new tokens) while 8 clients flood summarization (32), X-Priority: batch",
        TR,
        Req("t5", "summarization", 32, "batch"),
        8,
        Target(p50_ratio=1.3, p99_ratio=1.5),
    ),
    Scenario("inter-flood", "the same, flood at interactive priority", TR, SU, 8, Target()),
    Scenario(
        "share-flood",
        "the same, task_share {translation=3, summarization=1}",
        Req("t5-share", "translation", 8),
        Req("t5-share", "summarization", 32),
        8,
        Target(p99_ratio=2.0),
    ),
    Scenario(
        "other-model",
        "minilm embeddings (another model) while 8 clients flood t5 summarization",
        Req("minilm", "embeddings"),
        SU,
        8,
        Target(),
    ),
    Scenario(
        "starved-batch",
        "batch-priority translation (8) while 16 clients flood interactive summarization (32)",
        Req("t5", "translation", 8, "batch"),
        SU,
        16,
        Target(p99_s=3.0),
    ),
    Scenario(
        "starved-share",
        "summarization (32), the lowest share, while 16 clients flood interactive translation (8)",
        Req("t5-share", "summarization", 32),
        Req("t5-share", "translation", 8),
        16,
        Target(p99_s=3.0),
    ),
]
THROUGHPUT_KEY = "throughput"


class Bench:
    """The phases, against one server; all clients on this process's event loop."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.client_cpu = 0.0  # this process's CPU seconds while measuring, and the wall seconds
        self.client_wall = 0.0

    def conn(self) -> Conn:
        return Conn(self.host, self.port)

    async def probe_phase(
        self, sc: Scenario, n: int, loaded: bool, seed: int
    ) -> tuple[list[float], float, int]:
        """The probe's latencies, the flood's items/s while probed, and failed requests."""
        stop = asyncio.Event()
        done: list[float] = []
        errors = 0

        async def flood(k: int) -> None:
            nonlocal errors
            conn, i = self.conn(), k
            try:
                while not stop.is_set():
                    status, _ = await conn.post(*sc.flood.http(i))
                    done.append(time.perf_counter())
                    errors += status != 200
                    i += sc.clients
            finally:
                conn.close()

        workers = [asyncio.create_task(flood(k)) for k in range(sc.clients if loaded else 0)]
        try:
            settle = time.perf_counter() + 120
            while len(done) < len(workers):  # every client's first answer: the flood is in its steady state
                if time.perf_counter() > settle or any(w.done() for w in workers):
                    raise RuntimeError(f"{sc.key}: the flood did not get going (errors: {errors})")
                await asyncio.sleep(0.01)
            rng, conn, lat = random.Random(seed), self.conn(), []
            cpu0, t0 = time.process_time(), time.perf_counter()
            try:
                for i in range(n):
                    await asyncio.sleep(rng.uniform(0, 2 * GAP_S))
                    s = time.perf_counter()
                    status, _ = await conn.post(*sc.probe.http(i))
                    lat.append(time.perf_counter() - s)
                    errors += status != 200
            finally:
                conn.close()
            self.client_cpu += time.process_time() - cpu0
            self.client_wall += time.perf_counter() - t0
            # The flood's rate needs a longer window than a fast probe's (MiniLM's 40 probes last about 1 s,
            # while a t5-small flood answers a batch every 1-2 s): the flood goes on, unprobed, until the
            # window holds FLOOD_WINDOW_S and two answers per client.
            cap = time.perf_counter() + 60
            while workers and time.perf_counter() < cap:
                if (
                    time.perf_counter() >= t0 + FLOOD_WINDOW_S
                    and sum(t >= t0 for t in done) >= 2 * sc.clients
                ):
                    break
                await asyncio.sleep(0.01)
            t1 = time.perf_counter()
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
        return lat, sum(t0 <= t <= t1 for t in done) / (t1 - t0), errors

    async def closed_loop(self, reqs: list[Req], n: int, clients: int) -> tuple[float, int]:
        """items/s of n requests (reqs in turn) sent by `clients` connections, one in flight each; failures."""
        queue = [r.http(i) for i, r in zip(range(n), (reqs * n)[:n], strict=True)]
        errors = 0

        async def client() -> None:
            nonlocal errors
            conn = self.conn()
            try:
                while queue:
                    status, _ = await conn.post(*queue.pop())
                    errors += status != 200
            finally:
                conn.close()

        queue.reverse()  # pop() from the end: requests go out in order
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
        self.client_cpu += time.process_time() - cpu0
        self.client_wall += wall
        return n / wall, errors


def throughput_rows() -> tuple[list[ThroughputRow], dict[str, list[float]]]:
    """The two throughput rows, on the items/s lists the rounds fill (50/50 is the numerator of both)."""
    rates: dict[str, list[float]] = {"translation": [], "mixed": [], "mixed_off": []}
    mix = ThroughputRow(
        "mix-vs-one", "16 clients, 50/50 translation + summarization", "t5", "translation only"
    )
    xt = ThroughputRow(
        "cross-task",
        "16 clients, 50/50, cross_task on",
        "t5",
        "the same on t5-xt-off",
        Target(throughput_ratio=1.1),
    )
    mix.rates = xt.rates = rates["mixed"]
    mix.reference_rates, xt.reference_rates = rates["translation"], rates["mixed_off"]
    return [mix, xt], rates


async def run(args: argparse.Namespace, url: str) -> tuple[list[LatencyRow], list[ThroughputRow], Bench]:
    bench = Bench(url)
    keys = set(args.only.split(",")) if args.only else None
    scenarios = [s for s in SCENARIOS if keys is None or s.key in keys]
    rows = [LatencyRow(s.key, s.label, s.probe.model, s.target) for s in scenarios]
    t_rows, rates = throughput_rows()
    do_tp = keys is None or THROUGHPUT_KEY in keys
    mixed = [TR, SU]
    workloads = {
        "translation": ("t5", [TR]),
        "mixed": ("t5", mixed),
        "mixed_off": ("t5-xt-off", [Req("t5-xt-off", r.task, r.new_tokens) for r in mixed]),
    }
    # Warm-up, not recorded: every model, task and batch shape once.
    for sc in scenarios:
        await bench.probe_phase(sc, 3, True, seed=0)
    if do_tp:
        for _, reqs in workloads.values():
            await bench.closed_loop(reqs, 32, 16)
    bench.client_cpu = bench.client_wall = 0.0
    for r in range(args.rounds):
        t_round = time.perf_counter()
        for sc, row in zip(scenarios, rows, strict=True):
            for loaded in (False, True):
                lat, rate, err = await bench.probe_phase(sc, args.probes, loaded, seed=r)
                (row.loaded if loaded else row.alone).append(lat)
                if loaded:
                    row.flood_rate.append(rate)
                row.errors += err
            progress(
                f"round {r + 1} {sc.key}: p50 alone {pct(row.alone[-1], 0.5) * 1000:.0f} ms, "
                f"loaded {pct(row.loaded[-1], 0.5) * 1000:.0f} ms"
            )
        if do_tp:
            # Each workload in two halves, in the order A B C C B A (A rotating across rounds): a drift in the
            # machine's speed within the round then weighs on every workload alike.
            order = list(workloads)[r % 3 :] + list(workloads)[: r % 3]
            spent = dict.fromkeys(order, 0.0)
            for name in order + order[::-1]:
                rate, err = await bench.closed_loop(workloads[name][1], args.requests // 2, 16)
                spent[name] += (args.requests // 2) / rate
                for t in t_rows:
                    t.errors += err
            for name, seconds in spent.items():
                rates[name].append(2 * (args.requests // 2) / seconds)
            progress(
                f"round {r + 1} throughput: " + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in rates.items())
            )
        progress(f"round {r + 1}/{args.rounds}: {time.perf_counter() - t_round:.0f} s")
    return rows, (t_rows if do_tp else []), bench


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def version() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, fewer requests (about 1 min)")
    ap.add_argument("--t5-small", action="store_true", help="a T5 of t5-small's dimensions (~60M parameters)")
    ap.add_argument(
        "--rounds", type=int, help="interleaved rounds; medians are reported (default 5, quick 2)"
    )
    ap.add_argument(
        "--probes", type=int, help="probe requests per phase (default 40, quick 15; --t5-small 10, quick 6)"
    )
    ap.add_argument(
        "--requests",
        type=int,
        help="requests per throughput phase (default 320, quick 96; --t5-small 64, quick 32)",
    )
    ap.add_argument("--generation", choices=["auto", "continuous", "static"], default="auto")
    ap.add_argument("--yield-to-interactive", choices=["auto", "always", "when-full"], default="auto")
    ap.add_argument("--max-batch-size", type=int, help="batching.max_batch_size (default: the spec's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--torch-threads",
        type=int,
        help="the server's OMP_NUM_THREADS for every model (default: torch's, one a core, and each model's "
        "cpu_threads = auto choosing for its decoding steps)",
    )
    ap.add_argument(
        "--only",
        help=f"comma-separated scenario keys: {', '.join(s.key for s in SCENARIOS)}, {THROUGHPUT_KEY}",
    )
    ap.add_argument("--json", type=Path, help="also write every round's figures here")
    args = ap.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    # t5-small decodes about 10x slower than the tiny T5 on 2 cores: fewer requests keep its run near 10 min.
    args.probes = args.probes or {(0, 0): 40, (0, 1): 15, (1, 0): 10, (1, 1): 6}[args.t5_small, args.quick]
    args.requests = (
        args.requests or {(0, 0): 320, (0, 1): 96, (1, 0): 64, (1, 1): 32}[args.t5_small, args.quick]
    )
    known = {s.key for s in SCENARIOS} | {THROUGHPUT_KEY}
    if args.only and not set(args.only.split(",")) <= known:
        ap.error(f"--only: unknown keys {sorted(set(args.only.split(',')) - known)}; known: {sorted(known)}")

    from hf_provider.testing.models import build_t5_small_random, build_tiny_models, minilm_path

    models_dir = Path(os.environ.get("HFP_TEST_MODELS", ROOT / ".hfp" / "tiny-models"))
    t5 = build_t5_small_random(models_dir) if args.t5_small else build_tiny_models(models_dir)["t5"]
    configs = model_configs(args)
    work = Path(tempfile.mkdtemp(prefix="hfp-bench-interference-"))
    config = write_config(work, t5, minilm_path(), configs, args.device)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    t_start, load_before = time.perf_counter(), os.getloadavg()[0]
    env = {"HFP_HOME": str(work / "hfp-home")}
    if args.torch_threads:
        env.update(OMP_NUM_THREADS=str(args.torch_threads), MKL_NUM_THREADS=str(args.torch_threads))
    proc, url = start_server(env=env, config=config)
    try:
        rows, t_rows, bench = asyncio.run(run(args, url))
    finally:
        stop_server(proc)
    took = time.perf_counter() - t_start
    print(
        f"\nbench/interference.py at {version()}: {'t5-small-random (~60M)' if args.t5_small else 'tiny T5'}, "
        f"device {args.device}, torch threads {args.torch_threads or 'default'}, {args.rounds} interleaved rounds, "
        f"{args.probes} probes a phase, "
        f"{args.requests} requests a throughput phase; medians over rounds; {took:.0f} s in all"
    )
    print("models (one T5 weight set under three names, and all-MiniLM-L6-v2 as minilm):")
    print(legend(configs))
    print()
    print(render(rows, t_rows))
    cpu = 100 * bench.client_cpu / bench.client_wall if bench.client_wall else 0.0
    print(f"\nclient CPU: {cpu:.1f}% of one core while measuring (probe and flood clients together)")
    # Other work on a shared machine shows here: far above 2 (this bench's own server and clients) the
    # rounds were slowed by others, which the interleaving spreads over both sides of each ratio but not away.
    print(
        f"machine load average (1 min): {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    if args.json:
        report = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "configs": configs,
            "latency": [{**vars(r), "target": vars(r.target), "summary": r.summary()} for r in rows],
            "throughput": [{**vars(t), "target": vars(t.target), "ratio": t.ratio()} for t in t_rows],
        }
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
