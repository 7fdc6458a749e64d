"""Crash isolation, measured: `python bench/faults.py [--quick] [--rounds N]`.

1. Cost: 8 clients x 32 sentences (MiniLM embeddings) against a server whose model runs with isolation = "thread"
   and one with isolation = "process", in interleaved rounds; prints process/thread throughput (target >= 0.85).
2. Crash: one server with model A (isolation = "process") and model B (in-process), both under load; A's worker
   is SIGKILLed. Prints B's failed requests (target 0), what happened to A's requests in flight at the kill (503
   worker_crashed within 1 s, or served through the retry), A's refusals while it restarted, and when A served
   again.
3. Transport: one [n, 384] float32 result sent to a spawned process and back, as a pickled tensor (bytes), through
   torch.multiprocessing shared memory, and as a pickled list of floats (what a result is after postprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import Conn, run_client, start_server, stop_server
from hf_provider.testing.models import minilm_path
from sentences import sentences

MODEL = "all-MiniLM-L6-v2"


def _config(models: list[tuple[str, str]]) -> Path:
    lines = ["history_enabled = false", ""]
    for name, isolation in models:
        lines += [
            "[[models]]",
            f'name = "{name}"',
            f'source = "{minilm_path()}"',
            'tasks = ["embeddings"]',
            'device = "cpu"',
            f'isolation = "{isolation}"',
            "",
        ]
    fd, path = tempfile.mkstemp(suffix=".toml", prefix="hfp-faults-")
    os.write(fd, "\n".join(lines).encode())
    os.close(fd)
    return Path(path)


def _admin(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(url + "/v1/admin/models", timeout=10) as r:
        return {m["name"]: m for m in json.loads(r.read())["models"]}


# 1. cost of isolation ------------------------------------------------------------------------------------------
def cost(texts: list[str], rounds: int) -> dict:
    servers = {iso: start_server(config=_config([(MODEL, iso)])) for iso in ("thread", "process")}
    rates: dict[str, list[float]] = {"thread": [], "process": []}
    errors = 0
    try:
        payloads = [{"model": MODEL, "input": texts[i : i + 32]} for i in range(0, len(texts), 32)]
        for _, url in servers.values():
            run_client(url, "/v1/embeddings", payloads[:8], 8)  # warm-up
        for _ in range(rounds):
            for iso, (_, url) in servers.items():
                r = run_client(url, "/v1/embeddings", payloads, 8)
                rates[iso].append(len(texts) / r["seconds"])
                errors += r["errors"]
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    med = {k: statistics.median(v) for k, v in rates.items()}
    # Each round's pair ran back to back: the median of the pairs' ratios follows a drifting machine better.
    pairs = [p / t for p, t in zip(rates["process"], rates["thread"], strict=True)]
    return {
        "rates": rates,
        "median": med,
        "ratio": med["process"] / med["thread"],
        "pair_ratios": pairs,
        "median_pair_ratio": statistics.median(pairs),
        "errors": errors,
    }


# 2. a crash under load -----------------------------------------------------------------------------------------
async def _clients(url: str, texts: list[str], stop: threading.Event, log: list, per_model: int) -> None:
    host, port = url.removeprefix("http://").split(":")

    async def client(model: str, k: int) -> None:
        conn = Conn(host, int(port))
        i = k
        while not stop.is_set():
            body = {"model": model, "input": texts[(i * 8) % 1024 : (i * 8) % 1024 + 8]}
            i += per_model
            t0 = time.monotonic()
            try:
                status, data = await conn.post("/v1/embeddings", body)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, data = 0, b"{}"
                conn.close()
                conn = Conn(host, int(port))
            code = None if status == 200 else (json.loads(data or b"{}").get("error") or {}).get("code")
            log.append((model, t0, time.monotonic(), status, code))
            if status != 200:
                conn.close()  # the server closes the connection after an error answer
                conn = Conn(host, int(port))
                await asyncio.sleep(
                    0.05
                )  # a refused client waits a little, as one honouring Retry-After does
        conn.close()

    await asyncio.gather(*(client(m, k) for m in ("a", "b") for k in range(per_model)))


def crash(texts: list[str], settle_s: float) -> dict:
    proc, url = start_server(config=_config([("a", "process"), ("b", "thread")]))
    log: list[tuple[str, float, float, int, str | None]] = []
    stop = threading.Event()
    loader = threading.Thread(target=lambda: asyncio.run(_clients(url, texts, stop, log, 4)), daemon=True)
    try:
        loader.start()
        time.sleep(settle_s)
        before = _admin(url)["a"]
        t_kill = time.monotonic()
        os.kill(before["pid"], signal.SIGKILL)
        back = None
        end = t_kill + 180
        while time.monotonic() < end:
            time.sleep(0.1)
            ok_after = [r for r in list(log) if r[0] == "a" and r[1] > t_kill and r[3] == 200]
            if ok_after:
                back = min(r[2] for r in ok_after) - t_kill
                break
        time.sleep(settle_s)  # A serving again, under load, for a while
        after = _admin(url)["a"]
    finally:
        stop.set()
        loader.join(30)
        stop_server(proc)
    a = [r for r in log if r[0] == "a"]
    b = [r for r in log if r[0] == "b"]
    in_flight = [r for r in a if r[1] <= t_kill < r[2]]
    crashed_503 = [r for r in in_flight if r[3] == 503 and r[4] == "worker_crashed"]
    later = [r for r in a if r[1] > t_kill]
    return {
        "b_requests": len(b),
        "b_failed": sum(r[3] != 200 for r in b),
        "a_in_flight_at_kill": len(in_flight),
        "a_in_flight_served_by_retry": sum(r[3] == 200 for r in in_flight),
        "a_in_flight_503_worker_crashed": len(crashed_503),
        "a_in_flight_503_latest_s": max((r[2] - t_kill for r in crashed_503), default=None),
        "a_in_flight_other_failures": sum(r[3] != 200 for r in in_flight) - len(crashed_503),
        "a_refused_worker_crashed_while_down": sum(r[3] == 503 and r[4] == "worker_crashed" for r in later),
        "a_other_failures_after_kill": sum(r[3] not in (200, 503) for r in later),
        "a_answers_after_kill": dict(Counter(f"{r[3]} {r[4] or ''}".strip() for r in later)),
        "a_served_again_after_s": back,
        "a_pid": [before["pid"], after["pid"]],
        "a_restarts": after["restarts"],
    }


# 3. transport of a result ----------------------------------------------------------------------------------------
def _echo(conn) -> None:  # the spawned side: receive, touch, answer with a tiny ack
    import torch  # noqa: F401  (registers the shared-memory reductions on this side too)

    while (msg := conn.recv()) is not None:
        kind, payload = msg
        if kind == "bytes":
            import numpy as np

            np.frombuffer(payload, dtype=np.float32).sum()
        elif kind == "tensor":
            payload.sum()
        else:
            sum(map(sum, payload))
        conn.send(1)


def transport(rows: tuple[int, ...] = (32, 256), n: int = 50) -> dict:
    import torch
    import torch.multiprocessing as tmp

    ctx = tmp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(child,), daemon=True)
    p.start()
    out: dict[str, dict[str, float]] = {}
    try:
        for r in rows:
            t = torch.randn(r, 384)
            variants = {
                "pickled_bytes": lambda t=t: ("bytes", t.numpy().tobytes()),
                "shared_memory": lambda t=t: (
                    "tensor",
                    t.clone(),
                ),  # a fresh tensor per result, as a batch makes
                "pickled_list": lambda t=t: ("list", t.tolist()),
            }
            res = {}
            for name, make in variants.items():
                for _ in range(3):
                    parent.send(make())
                    parent.recv()
                took = []
                for _ in range(n):
                    msg = make()
                    t0 = time.perf_counter()
                    parent.send(msg)
                    parent.recv()
                    took.append(time.perf_counter() - t0)
                res[name] = statistics.median(took) * 1000
            out[f"{r}x384"] = res
    finally:
        parent.send(None)
        p.join(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer sentences and rounds (smoke run)")
    ap.add_argument(
        "--rounds", type=int, default=7, help="interleaved thread/process rounds of the cost part"
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["cost", "crash", "transport"])
    args = ap.parse_args()
    texts = sentences(2048)
    report: dict = {}
    if "transport" not in args.skip:
        report["transport_ms"] = tr = transport(n=20 if args.quick else 50)
        for shape, res in tr.items():
            print(
                f"result {shape} to a spawned process and back (median ms): "
                + ", ".join(f"{k} {v:.3f}" for k, v in res.items())
            )
    if "crash" not in args.skip:
        report["crash"] = c = crash(texts, 3.0 if args.quick else 5.0)
        print(
            f"SIGKILL of A's worker under load: B {c['b_failed']} failed of {c['b_requests']} (target 0); "
            f"A in flight {c['a_in_flight_at_kill']}: {c['a_in_flight_served_by_retry']} served by the retry, "
            f"{c['a_in_flight_503_worker_crashed']} got 503 worker_crashed (latest "
            f"{c['a_in_flight_503_latest_s']} s after the kill, target <= 1 s), "
            f"{c['a_in_flight_other_failures']} other failures (target 0)"
        )
        print(
            f"A while down: {c['a_refused_worker_crashed_while_down']} refused with 503 worker_crashed, "
            f"{c['a_other_failures_after_kill']} other failures; served again {c['a_served_again_after_s']:.2f} s "
            f"after the kill (pid {c['a_pid'][0]} -> {c['a_pid'][1]}, restarts {c['a_restarts']})"
            if c["a_served_again_after_s"] is not None
            else "A did not serve again within 180 s"
        )
    if "cost" not in args.skip:
        n = 256 if args.quick else 512
        rounds = 1 if args.quick else args.rounds
        report["cost"] = k = cost(texts[:n], rounds)
        print(
            f"8 clients x 32 sentences: thread {k['median']['thread']:.1f}/s, process "
            f"{k['median']['process']:.1f}/s -> process/thread {k['ratio']:.3f}, median of the rounds' ratios "
            f"{k['median_pair_ratio']:.3f} (target >= 0.85; {rounds} interleaved rounds; failed requests "
            f"{k['errors']})"
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
