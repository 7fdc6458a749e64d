"""Overload: `hfp serve` (default MiniLM) under 1000 connections, against its own peak, in one run.

    .venv/bin/python bench/overload.py [--clients 1000] [--duration 20] [--deadline 1.0] [--json PATH]

Needs `h2load` (Debian package nghttp2-client); when it is not on PATH the bench runs
`scripts/install-loadgen.sh` (root or sudo). h2load rather than wrk because its `--log-file` writes one line per
request (start µs, HTTP status, µs to end of response): the latency of accepted (200) requests can be told apart
from fast 429 refusals, which wrk's single histogram cannot do. It runs as one thread (`-t1`, HTTP/1.1), so the
client takes little of the 2 cores it shares with the server.

Phases, one server process: warm-up; unloaded latency (sequential requests); peak throughput (--peak-clients
connections, all should be 200); overload (--clients connections for --duration s, every request carries
`X-Request-Timeout: <deadline>`) with a side probe that checks 429s for Retry-After and times /healthz; recovery
(one fresh request exactly 1 s after the load stops). Prints each figure, then PASS/FAIL per acceptance line.
Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import ROOT, start_server, stop_server

MODEL = "all-MiniLM-L6-v2"
BODY = {"model": MODEL, "input": "a sentence"}
ROUTE = "/v1/embeddings"


def ensure_h2load() -> str:
    if found := shutil.which("h2load"):
        return found
    cmd = ["bash", str(ROOT / "scripts" / "install-loadgen.sh")]
    print("h2load not on PATH; running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    if found := shutil.which("h2load"):
        return found
    raise SystemExit("h2load is still missing after install-loadgen.sh")


def raise_fd_limit(need: int) -> None:
    """Each connection is one fd in h2load and one in the server; both inherit this process's limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        print(f"warning: open-file limit {want} < {need}; h2load may fail to open every connection")


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile; nan when there is nothing to rank."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_busy_s() -> float:
    """CPU seconds spent by the whole machine (all but idle and iowait), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU of the server, and of processes outside this bench, over a phase: other work skews the ratios."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.start()

    def _now(self) -> tuple[float, ...]:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # h2load, once it has been waited for
        ours = proc_cpu_s(self.pid) + time.process_time() + kids.ru_utime + kids.ru_stime
        return time.perf_counter(), machine_busy_s(), proc_cpu_s(self.pid), ours

    def start(self) -> None:
        self.t0 = self._now()

    def stop(self) -> dict[str, float]:
        wall, busy, server, ours = (b - a for a, b in zip(self.t0, self._now(), strict=True))
        return {"server_cpu_pct": 100 * server / wall, "other_cpu_pct": 100 * (busy - ours) / wall}


def drain(stream: IO[bytes], tail: deque[str]) -> None:
    """Keep reading the server's stderr: a full pipe would block a server that logs under load."""
    for line in iter(stream.readline, b""):
        tail.append(line.decode(errors="replace").rstrip())


@dataclass
class Load:
    statuses: Counter[int]
    accepted_ms: list[float]
    seconds: int
    h2load_cpu_s: float
    unfinished: int  # in flight when h2load stopped: not in its log
    errored: int  # h2load's connection-level errors
    ended: float  # perf_counter() when h2load exited


def run_h2load(
    h2load: str, url: str, body: Path, log: Path, deadline: float, clients: int, duration: int
) -> Load:
    cmd = [h2load, "--h1", "-t1", f"-c{clients}", "-D", str(duration), "-d", str(body),
           "-H", "content-type: application/json", "-H", f"x-request-timeout: {deadline:g}",
           "--log-file", str(log), url + ROUTE]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ended = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited {proc.returncode}:\n{out[-2000:]}")
    m = re.search(r"(\d+) started, (\d+) done, \d+ succeeded, \d+ failed, (\d+) errored", out)
    started, done, errored = (int(g) for g in m.groups()) if m else (0, 0, 0)
    statuses: Counter[int] = Counter()
    accepted: list[float] = []
    for line in log.read_text().splitlines():
        _, status, us = line.split("\t")[:3]
        statuses[int(status)] += 1
        if status == "200":
            accepted.append(int(us) / 1000)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Load(statuses, accepted, duration, cpu, started - done, errored, ended)


@dataclass
class Probe:
    """During the overload: requests in a loop (Retry-After on 429s?) and /healthz every `interval` s.

    Two threads, because under load a POST can take seconds and would thin out the /healthz samples."""

    url: str
    headers: dict[str, str]
    interval: float = 0.5
    statuses: Counter[int] = field(default_factory=Counter)
    no_retry_after: int = 0
    healthz_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for step in (self._post, self._healthz):
            threading.Thread(target=self._every, args=(step,), daemon=True).start()

    def _every(self, step: Callable[[httpx.Client], None]) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    step(c)
                except httpx.HTTPError as e:
                    self.errors[f"{step.__name__.strip('_')} {type(e).__name__}"] += 1
                self.stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))

    def _post(self, c: httpx.Client) -> None:
        r = c.post(ROUTE, json=BODY, headers=self.headers)
        self.statuses[r.status_code] += 1
        self.no_retry_after += r.status_code == 429 and "retry-after" not in r.headers

    def _healthz(self, c: httpx.Client) -> None:
        t0 = time.perf_counter()
        try:
            c.get("/healthz").raise_for_status()
        finally:  # a failed or timed-out /healthz still counts with the time it took
            self.healthz_ms.append((time.perf_counter() - t0) * 1000)


def timed_posts(client: httpx.Client, n: int, headers: dict[str, str]) -> list[float]:
    """Latencies (ms) of n sequential requests; a non-200 answer is reported, not timed."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(ROUTE, json=BODY, headers=headers)
        if r.status_code != 200:
            print(f"  warning: single request answered {r.status_code}: {r.text[:200]}")
            continue
        out.append((time.perf_counter() - t0) * 1000)
    return out


def checks(fig: dict) -> dict[str, bool]:
    o, p = fig["overload"], fig["probe"]
    others = sum(n for s, n in o["statuses"].items() if s not in (200, 429)) + o["h2load_errored"]
    others += sum(n for s, n in p["statuses"].items() if s not in (200, 429))
    # /healthz answers are reported, not judged: the acceptance line is about the API's answers.
    others += sum(n for k, n in p["errors"].items() if k.startswith("post"))
    # Retry-After is only seen by the probe (h2load logs no headers): refusals it never saw count as unverified.
    retry_ok = p["no_retry_after"] == 0 and (o["statuses"].get(429, 0) == 0 or p["statuses"].get(429, 0) > 0)
    return {
        "only_200_or_429_with_retry_after": others == 0 and retry_ok,
        "p99_accepted_ms <= deadline_ms": o["accepted_p99_ms"] <= fig["deadline_ms"],
        "goodput/peak >= 0.90": fig["goodput_over_peak"] >= 0.90,
        "recovery_ms <= 2 x unloaded_ms": fig["recovery_over_unloaded"] <= 2.0,
    }


def overload(args: argparse.Namespace, h2load: str, url: str, body: Path, log: Path) -> tuple[Load, Probe]:
    """The overload with the side probe running; returns when h2load has exited."""
    probe = Probe(url, {"x-request-timeout": f"{args.deadline:g}"})
    probe.start()
    try:
        return run_h2load(h2load, url, body, log, args.deadline, args.clients, args.duration), probe
    finally:
        probe.stop.set()  # a last probe request may still be in flight during the recovery request


def load_figures(load: Load) -> dict:
    return {
        "seconds": load.seconds,
        "statuses": dict(load.statuses),
        "goodput_rps": load.statuses[200] / load.seconds,
        "accepted_p50_ms": pct(load.accepted_ms, 50),
        "accepted_p99_ms": pct(load.accepted_ms, 99),
        "unfinished_at_stop": load.unfinished,
        "h2load_errored": load.errored,
        "h2load_cpu_pct": 100 * load.h2load_cpu_s / load.seconds,
    }


def probe_figures(probe: Probe) -> dict:
    return {
        "requests": sum(probe.statuses.values()),
        "statuses": dict(probe.statuses),
        "no_retry_after": probe.no_retry_after,
        "errors": dict(probe.errors),
        "healthz_p50_ms": pct(probe.healthz_ms, 50),
        "healthz_max_ms": max(probe.healthz_ms, default=math.nan),
    }


def run(args: argparse.Namespace, h2load: str, tmp: Path) -> dict:
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    headers = {"x-request-timeout": f"{args.deadline:g}"}
    proc, url = start_server({"HFP_HOME": str(tmp / "home")})
    tail: deque[str] = deque(maxlen=50)
    threading.Thread(target=drain, args=(proc.stderr, tail), daemon=True).start()
    try:
        print(f"server {url} (pid {proc.pid}); deadline {args.deadline:g} s", flush=True)
        run_h2load(h2load, url, body, tmp / "warm.log", args.deadline, 8, args.warmup)
        with httpx.Client(base_url=url, timeout=30) as c:
            unloaded_ms = statistics.median(timed_posts(c, 50, headers) or [math.nan])
        print(f"1. unloaded latency: median {unloaded_ms:.1f} ms over 50 sequential requests", flush=True)

        meter = CpuMeter(proc.pid)
        peak = run_h2load(h2load, url, body, tmp / "peak.log", args.deadline, args.peak_clients, args.peak_s)
        peak_rps = peak.statuses[200] / peak.seconds
        peak_cpu = meter.stop()
        print(
            f"2. peak: {peak_rps:.0f} req/s at {args.peak_clients} connections, {dict(peak.statuses)}; "
            f"CPU server {peak_cpu['server_cpu_pct']:.0f}%, other processes {peak_cpu['other_cpu_pct']:.0f}%",
            flush=True,
        )
        if set(peak.statuses) != {200}:  # peak counts 200s only: refusals here understate it
            print("   warning: the peak phase was not all 200")

        # The recovery client is made before the load so its set-up is not timed; it connects afresh later.
        with httpx.Client(base_url=url, timeout=60) as fresh:
            meter.start()
            load, probe = overload(args, h2load, url, body, tmp / "over.log")
            cpu = meter.stop()
            time.sleep(max(0.0, load.ended + 1.0 - time.perf_counter()))
            recovery = timed_posts(fresh, 5, headers)
        o, p = {**load_figures(load), **cpu}, probe_figures(probe)
        print(f"3. overload: {args.clients} connections x {load.seconds} s: {o['statuses']}, goodput "
              f"{o['goodput_rps']:.0f} req/s, accepted p50 {o['accepted_p50_ms']:.0f} ms p99 "
              f"{o['accepted_p99_ms']:.0f} ms; {load.unfinished} in flight at stop (not logged); "
              f"CPU h2load {o['h2load_cpu_pct']:.0f}%, server {o['server_cpu_pct']:.0f}%, "
              f"other processes {o['other_cpu_pct']:.0f}%")  # fmt: skip
        print(f"   probe: {p['requests']} requests {p['statuses']}, 429 without Retry-After "
              f"{p['no_retry_after']}, errors {p['errors']}; /healthz p50 {p['healthz_p50_ms']:.1f} ms, "
              f"max {p['healthz_max_ms']:.1f} ms")  # fmt: skip
        first = recovery[0] if recovery else math.nan
        med = statistics.median(recovery or [math.nan])
        print(f"4. recovery 1 s after the load: first {first:.1f} ms, median {med:.1f} ms of {len(recovery)}")
        if proc.poll() is not None:
            print("server exited during the run:\n" + "\n".join(tail))
        return {
            "deadline_ms": args.deadline * 1000,
            "unloaded_ms": unloaded_ms,
            "peak": {
                "clients": args.peak_clients,
                "rps": peak_rps,
                "statuses": dict(peak.statuses),
                **peak_cpu,
            },
            "overload": {"clients": args.clients, **o},
            "probe": p,
            "recovery_ms": recovery,
            "recovery_first_ms": first,
            "goodput_over_peak": o["goodput_rps"] / peak_rps if peak_rps else math.nan,
            "recovery_over_unloaded": first / unloaded_ms,
        }
    finally:
        stop_server(proc)


def summary(fig: dict) -> None:
    o = fig["overload"]
    values = [
        f"{o['statuses']}; probe {fig['probe']['statuses']}",
        f"{o['accepted_p99_ms']:.0f} ms (deadline {fig['deadline_ms']:.0f} ms)",
        f"{o['goodput_rps']:.0f} / {fig['peak']['rps']:.0f} req/s = {fig['goodput_over_peak']:.2f}",
        f"{fig['recovery_first_ms']:.1f} / {fig['unloaded_ms']:.1f} ms = {fig['recovery_over_unloaded']:.2f}",
    ]
    print("\n== overload summary ==")
    for (name, ok), value in zip(fig["checks"].items(), values, strict=True):
        print(f"{'PASS' if ok else 'FAIL'}  {name:34s} {value}")
    print(f"      /healthz max under load {fig['probe']['healthz_max_ms']:.1f} ms")
    other = max(fig["peak"]["other_cpu_pct"], o["other_cpu_pct"])
    if other > 25:
        print(
            f"      warning: other processes used up to {other:.0f}% CPU during the load; figures are skewed"
        )


def no_nan(x: object) -> object:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: no_nan(v) for k, v in x.items()}
    return [no_nan(v) for v in x] if isinstance(x, list) else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000, help="connections in the overload phase")
    ap.add_argument("--duration", type=int, default=20, help="overload seconds (whole: h2load -D)")
    ap.add_argument("--deadline", type=float, default=1.0, help="X-Request-Timeout on every request (s)")
    ap.add_argument("--peak-clients", type=int, default=32, help="connections for the peak throughput")
    ap.add_argument("--peak-s", type=int, default=10, help="seconds for the peak throughput")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds at 8 connections")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    # SIGTERM ends the run through the same finally blocks as Ctrl-C: no orphaned server or h2load.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    h2load = ensure_h2load()
    raise_fd_limit(args.clients + 1024)
    with tempfile.TemporaryDirectory(prefix="hfp-overload-") as tmp:
        fig = run(args, h2load, Path(tmp))
    fig["checks"] = checks(fig)
    summary(fig)
    if args.json:
        args.json.write_text(json.dumps(no_nan(fig), indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
