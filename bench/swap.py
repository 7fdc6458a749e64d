"""Zero-downtime swaps under load, and rollback to the warm previous version.

    python bench/swap.py [--seconds 30] [--clients 8] [--swaps 5] [--history-out FILE]

A LocalHub in this process serves MiniLM under three revisions (same weights, different commits); `hfp serve`
runs in a subprocess with its Hub client pointed at it. 8 clients send one-sentence /v1/embeddings requests over
keep-alive connections for --seconds without any swap (the baseline, measured in this run) and --seconds while
the model is swapped --swaps times (each a full load of another commit beside the serving one, its warm-up, the
switch, the drain). The two phases are interleaved in --swaps rounds (a baseline stretch, then a stretch with one
swap), so both see the same background load on a shared machine. Printed: failed requests, p50/p99 of both
phases, p99 of the requests that overlapped a swap and its ratio to the baseline p99 (the target is at most 2x),
and the server's event-loop lag: how late a 5 ms timer on its loop fired (`[server] lag_probe_ms`, read from
GET /v1/admin/loop-lag), max and p99 during the swaps next to the baseline stretches (target: a swap adds no
lag over 10 ms). Then a rollback to the warm previous version: the time from the rollback call to the first
answer carrying the previous commit (target 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _http import Conn, start_server, stop_server
from hf_provider.testing.hub_server import LocalHub
from hf_provider.testing.models import minilm_path

MODEL = "minilm"
REVISIONS = ("v1", "v2", "v3")
SENTENCE = "The harbour was rebuilt after the storm."


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def load(url: str, clients: int, seconds: float) -> list[tuple[float, float, int]]:
    """(start, latency, status) of every request sent by `clients` connections for `seconds`."""
    host, port = url.removeprefix("http://").split(":")
    out: list[tuple[float, float, int]] = []
    stop_at = time.perf_counter() + seconds
    payload = {"model": MODEL, "input": SENTENCE}

    async def client() -> None:
        conn = Conn(host, int(port))
        try:
            while (t0 := time.perf_counter()) < stop_at:
                try:
                    status, _ = await conn.post("/v1/embeddings", payload)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status = 0  # a dropped connection is a failed request too
                    conn.close()
                    conn = Conn(host, int(port))
                out.append((t0, time.perf_counter() - t0, status))
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


def swap_once(url: str, rev: str, delay: float, windows: list[tuple[float, float, int, str]]) -> None:
    """After `delay` seconds, swap to `rev`; records (start, end, status, revision)."""
    time.sleep(delay)
    with httpx.Client(base_url=url, timeout=300) as c:
        t0 = time.perf_counter()
        r = c.post(f"/v1/admin/models/{MODEL}/swap", json={"revision": rev})
        windows.append((t0, time.perf_counter(), r.status_code, rev))


def rollback_first_answer(url: str) -> tuple[float, str, str]:
    """Seconds from the rollback call to the first answer served by the previous commit."""
    with httpx.Client(base_url=url, timeout=60) as c:
        before = c.get(f"/v1/admin/models/{MODEL}/versions").json()
        want = before["previous"]["commit"]
        t0 = time.perf_counter()
        r = c.post(f"/v1/admin/models/{MODEL}/rollback")
        r.raise_for_status()
        while True:
            a = c.post("/v1/embeddings", json={"model": MODEL, "input": SENTENCE})
            if a.status_code == 200 and a.headers.get("x-hfp-revision") == want:
                return time.perf_counter() - t0, before["commit"], want


def loop_lag(url: str, since: float) -> tuple[float, list[tuple[float, float]]]:
    """(the server's loop clock minus this process's perf_counter, the probe's [when, ms late] since `since`)."""
    with httpx.Client(base_url=url, timeout=60) as c:
        t0 = time.perf_counter()
        body = c.get("/v1/admin/loop-lag", params={"since": since}).json()
        mid = (t0 + time.perf_counter()) / 2
    return body["now"] - mid, [(t, ms) for t, ms in body["samples"]]


def lag_in(samples: list[tuple[float, float]], spans: list[tuple[float, float]]) -> list[float]:
    return [ms for t, ms in samples if any(a <= t <= b for a, b in spans)]


def serve_hub(conn: Any) -> None:
    """The LocalHub with MiniLM under REVISIONS, until the parent says stop; sends its URL first."""
    with LocalHub() as hub:
        hub.add_commit("org/minilm", minilm_path(), tag=REVISIONS[0])
        for rev in REVISIONS[1:]:
            hub.add_commit("org/minilm", {"README.md": f"revision {rev}"}, tag=rev)
        conn.send(hub.url)
        conn.recv()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--swaps", type=int, default=5)
    ap.add_argument(
        "--slowest",
        type=int,
        default=0,
        help="also print the N slowest requests overlapping a swap and the N largest loop lags during one",
    )
    ap.add_argument("--history-out", type=Path, help="also write `hfp models history` of the run here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hfp-bench-swap-"))
    # The Hub in a process of its own: its request threads in this one would take the GIL from the load clients
    # while the server downloads a revision, and the clients would measure that as swap latency.
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    hub = ctx.Process(target=serve_hub, args=(there,), daemon=True)
    hub.start()
    endpoint = here.recv()
    try:
        config = work / "hfp.toml"
        config.write_text(
            f'home = "{work / "hfp-home"}"\n\n[server]\nlag_probe_ms = 5\n\n'
            f'[[models]]\nname = "{MODEL}"\nsource = "org/minilm"\n'
            'revision = "v1"\ntasks = ["embeddings"]\ndevice = "cpu"\n'
        )
        env = {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(work / "hf-home"),
            "HF_HUB_CACHE": str(work / "hf-home/hub"),
        }
        env.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1", HFP_HOME=str(work / "hfp-home"))
        proc, url = start_server(env=env, config=config)
        try:
            asyncio.run(load(url, args.clients, 3.0))  # warm the connections and the model, not measured
            base: list[tuple[float, float, int]] = []
            during: list[tuple[float, float, int]] = []
            windows: list[tuple[float, float, int, str]] = []
            base_spans: list[tuple[float, float]] = []
            lag_samples: list[tuple[float, float]] = []
            offset, _ = loop_lag(url, float("inf"))
            stretch = args.seconds / args.swaps
            for i in range(args.swaps):
                t0 = time.perf_counter()
                base += asyncio.run(load(url, args.clients, stretch))
                base_spans.append((t0 + offset, time.perf_counter() + offset))
                rev = REVISIONS[(i + 1) % len(REVISIONS)]
                t = threading.Thread(target=swap_once, args=(url, rev, 0.2 * stretch, windows))
                t.start()
                during += asyncio.run(load(url, args.clients, stretch))
                t.join()  # a swap that outlasts its stretch delays the next round: measured, not overlapped
                # read between rounds, while no client sends: the read is not measured as lag
                lag_samples += loop_lag(url, lag_samples[-1][0] + 1e-9 if lag_samples else t0 + offset)[1]
            rollback_s, was, back_to = rollback_first_answer(url)
            history = subprocess.run(
                [sys.executable, "-m", "hf_provider.cli.main", "models", "history", MODEL, "--url", url],
                capture_output=True,
                text=True,
                env={**os.environ, "COLUMNS": "140"},
            ).stdout
        finally:
            stop_server(proc)
    finally:
        here.send("stop")
        hub.join(10)

    base_lat = [lat for _, lat, _ in base]
    all_lat = [lat for _, lat, _ in during]
    in_swap = [
        lat for t0, lat, _ in during if any(t0 < end and t0 + lat > start for start, end, _, _ in windows)
    ]
    failed = sum(s != 200 for *_, s in base + during)
    p99_base, p99_swap = pct(base_lat, 0.99), pct(in_swap, 0.99)
    swap_s = [f"{rev} {end - start:.2f}s ({status})" for start, end, status, rev in windows]
    lag_base = lag_in(lag_samples, base_spans)
    lag_swap = lag_in(lag_samples, [(a + offset, b + offset) for a, b, _, _ in windows])
    lines = [
        f"swap bench: {args.clients} clients, {args.seconds:.0f}s without swaps, then {args.seconds:.0f}s with "
        f"{len(windows)} swaps (MiniLM embeddings, one sentence per request, CPU)",
        f"requests: baseline {len(base)}, with swaps {len(during)}; failed: {failed}",
        f"swaps: {', '.join(swap_s)}",
        f"baseline      p50 {pct(base_lat, 0.5) * 1000:7.1f} ms  p99 {p99_base * 1000:7.1f} ms",
        f"with swaps    p50 {pct(all_lat, 0.5) * 1000:7.1f} ms  p99 {pct(all_lat, 0.99) * 1000:7.1f} ms (whole phase)",
        f"during swaps  p99 {p99_swap * 1000:7.1f} ms over {len(in_swap)} requests overlapping a swap",
        f"p99 during swaps / p99 without swaps: {p99_swap / p99_base:.2f}x (target <= 2x)",
        f"event-loop lag (5 ms timer in the server): baseline max {max(lag_base, default=0):5.1f} ms "
        f"p99 {pct(lag_base, 0.99):5.1f} ms over {len(lag_base)} samples; during swaps max "
        f"{max(lag_swap, default=0):5.1f} ms p99 {pct(lag_swap, 0.99):5.1f} ms over {len(lag_swap)} samples "
        "(target: the swap adds no lag over 10 ms)",
        f"rollback {was[:12]} -> {back_to[:12]} (warm previous): first answer {rollback_s * 1000:.0f} ms after "
        "the call (target <= 1000 ms)",
    ]
    print("\n".join(lines))
    if args.slowest:
        print(
            "slowest requests overlapping a swap (start and end, in seconds from the swap call; swap length):"
        )
        slow = sorted(
            ((lat, t0, w) for t0, lat, _ in during for w in windows if t0 < w[1] and t0 + lat > w[0]),
            key=lambda x: -x[0],
        )
        for lat, t0, (start, end, _, rev) in slow[: args.slowest]:
            print(
                f"  {lat * 1000:6.1f} ms: {t0 - start:+6.2f} .. {t0 + lat - start:+6.2f}"
                f"  (swap to {rev}: {end - start:.2f} s)"
            )
        print(
            "largest event-loop lags during a swap (ms late; when, in seconds from the swap call; swap length):"
        )
        late = sorted(
            (
                (ms, t - offset - w[0], w)
                for t, ms in lag_samples
                for w in windows
                if w[0] <= t - offset <= w[1]
            ),
            key=lambda x: -x[0],
        )
        for ms, at, (start, end, _, rev) in late[: args.slowest]:
            print(f"  {ms:5.1f} ms at {at:+5.2f} s  (swap to {rev}: {end - start:.2f} s)")
    print(history)
    if args.history_out is not None:
        args.history_out.write_text(f"$ hfp models history {MODEL} --url <the bench's server>\n{history}")
    statuses = {status for _, _, status, _ in windows}
    return 0 if failed == 0 and statuses == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
