"""Overload: `hfp serve` (default MiniLM) under 1000 connections, against its own peak, in one run.

    .venv/bin/python bench/overload.py [--clients 1000] [--duration 20] [--deadline 1.0] [--json PATH]

The load comes from `bench/loadgen.c`, a single-threaded epoll HTTP/1.1 client that the bench compiles with
`cc -O2` into `.hfp/bin/loadgen` (again whenever the source is newer). Why a custom C client rather than h2load
or wrk: it logs every request (start, HTTP status, latency, whether a Retry-After header came with it), so the
latency of accepted (200) requests is told apart from fast 429 refusals and every 429 is checked for
Retry-After; it can honour Retry-After as real clients do (OpenAI SDK, most retry libraries) or ignore it
(h2load re-sends at once after a 429, so on 2 cores the server spends its CPU refusing); and it costs almost
no CPU on the 2 cores it shares with the server.

Phases, one server process: warm-up; unloaded latency (sequential requests); peak throughput (--peak-clients
connections, all should be 200); overload (--clients connections for --duration s, every request carries
`X-Request-Timeout: <deadline>`) with a side probe that checks 429s for Retry-After and times /healthz; recovery
(one fresh request exactly 1 s after the load stops). The overload runs twice: (a) clients that honour
Retry-After, the figures the acceptance lines are judged on; then, after --calm s, (b) clients that ignore it,
adversarial, the same figures reported for information. Prints each figure, then PASS/FAIL per acceptance line.
Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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


LOADGEN_SRC = ROOT / "bench" / "loadgen.c"
LOADGEN_BIN = ROOT / ".hfp" / "bin" / "loadgen"


def build_loadgen() -> Path:
    """Compile bench/loadgen.c once into the git-ignored .hfp/bin, and again whenever the source is newer."""
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return LOADGEN_BIN
    if not shutil.which("cc"):
        raise SystemExit("a C compiler (cc) is needed to build bench/loadgen.c")
    LOADGEN_BIN.parent.mkdir(parents=True, exist_ok=True)
    tmp = LOADGEN_BIN.with_name(f"loadgen.{os.getpid()}")  # renamed into place: no half-written binary
    subprocess.run(["cc", "-O2", "-o", str(tmp), str(LOADGEN_SRC)], check=True)
    tmp.replace(LOADGEN_BIN)
    return LOADGEN_BIN


def raise_fd_limit(need: int) -> None:
    """Each connection is one fd in the server, which inherits this process's limit (loadgen raises its own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        print(f"warning: open-file limit {want} < {need}; the server may fail to accept every connection")


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
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # loadgen, once it has been waited for
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
    statuses: Counter[int]  # from loadgen's log; connection errors (logged as status 0) are in conn_errors
    accepted_ms: list[float]
    goodput_rps: float  # 200s answered inside the load window (not during the drain) per second
    seconds: float
    loadgen_cpu_s: float
    unfinished: int  # still unanswered when loadgen's drain ended: not in its log
    conn_errors: int  # refused, reset, EOF mid-response
    no_retry_after: int  # 429s that came without a Retry-After header
    ended: float  # perf_counter() when loadgen exited


def run_loadgen(
    loadgen: Path,
    url: str,
    body: Path,
    log: Path,
    deadline: float,
    clients: int,
    duration: float,
    honor: bool,
) -> Load:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    cmd = [str(loadgen), "--host", host, "--port", port, "--path", ROUTE, "--body", str(body),
           "-c", str(clients), "-d", f"{duration:g}", "-H", f"x-request-timeout: {deadline:g}",
           "--log", str(log)] + (["--honor-retry-after"] * honor)  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    window_end_us = out["start_us"] + out["duration_s"] * 1e6
    statuses: Counter[int] = Counter()
    accepted: list[float] = []
    in_window = no_retry_after = 0
    for line in log.read_text().splitlines():
        start_us, status, latency_us, retry_after = (int(x) for x in line.split())
        if status == 0:
            continue  # a connection error: counted by loadgen
        statuses[status] += 1
        no_retry_after += status == 429 and not retry_after
        if status == 200:
            accepted.append(latency_us / 1000)
            in_window += start_us + latency_us <= window_end_us
    seconds = out["duration_s"]
    return Load(statuses, accepted, in_window / seconds, seconds, out["cpu_s"], out["unfinished"],
                out["conn_errors"], no_retry_after, ended)  # fmt: skip


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


def checks(fig: dict, r: dict) -> dict[str, bool]:
    """The acceptance lines for one overload round `r`."""
    o, p = r["load"], r["probe"]
    others = sum(n for s, n in o["statuses"].items() if s not in (200, 429)) + o["conn_errors"]
    # The drain gives every request deadline + 5 s: one still unanswered then got neither 200 nor 429.
    others += o["unfinished_at_stop"]
    others += sum(n for s, n in p["statuses"].items() if s not in (200, 429))
    # /healthz answers are reported, not judged: the acceptance line is about the API's answers.
    others += sum(n for k, n in p["errors"].items() if k.startswith("post"))
    return {
        "only_200_or_429_with_retry_after": others == 0 and o["no_retry_after"] + p["no_retry_after"] == 0,
        "p99_accepted_ms <= deadline_ms": o["accepted_p99_ms"] <= fig["deadline_ms"],
        "goodput/peak >= 0.90": r["goodput_over_peak"] >= 0.90,
        "recovery_ms <= 2 x unloaded_ms": r["recovery_over_unloaded"] <= 2.0,
    }


def overload(
    args: argparse.Namespace, loadgen: Path, url: str, body: Path, log: Path, honor: bool
) -> tuple[Load, Probe]:
    """The overload with the side probe running; returns when loadgen has exited."""
    probe = Probe(url, {"x-request-timeout": f"{args.deadline:g}"})
    probe.start()
    try:
        load = run_loadgen(loadgen, url, body, log, args.deadline, args.clients, args.duration, honor)
        return load, probe
    finally:
        probe.stop.set()  # a last probe request may still be in flight during the recovery request


def load_figures(load: Load) -> dict:
    return {
        "seconds": load.seconds,
        "statuses": dict(load.statuses),
        "goodput_rps": load.goodput_rps,
        "accepted_p50_ms": pct(load.accepted_ms, 50),
        "accepted_p99_ms": pct(load.accepted_ms, 99),
        "unfinished_at_stop": load.unfinished,
        "conn_errors": load.conn_errors,
        "no_retry_after": load.no_retry_after,
        "loadgen_cpu_pct": 100 * load.loadgen_cpu_s / load.seconds,
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


# (a) is what the acceptance lines judge; (b), adversarial clients, is reported for information.
ROUNDS = {
    "honor_retry_after": (True, "3a. overload, clients honour Retry-After"),
    "ignore_retry_after": (False, "3b. overload, clients ignore Retry-After"),
}


def overload_round(
    args: argparse.Namespace, loadgen: Path, url: str, body: Path, log: Path, honor: bool, meter: CpuMeter
) -> dict:
    """One overload with its probe, then the recovery request 1 s after the load stops."""
    headers = {"x-request-timeout": f"{args.deadline:g}"}
    # The recovery client is made before the load so its set-up is not timed; it connects afresh later.
    with httpx.Client(base_url=url, timeout=60) as fresh:
        meter.start()
        load, probe = overload(args, loadgen, url, body, log, honor)
        cpu = meter.stop()
        time.sleep(max(0.0, load.ended + 1.0 - time.perf_counter()))
        recovery = timed_posts(fresh, 5, headers)
    return {
        "clients": args.clients,
        "honor_retry_after": honor,
        "load": {**load_figures(load), **cpu},
        "probe": probe_figures(probe),
        "recovery_ms": recovery,
        "recovery_first_ms": recovery[0] if recovery else math.nan,
    }


def print_round(label: str, r: dict) -> None:
    o, p, rec = r["load"], r["probe"], r["recovery_ms"]
    print(f"{label}: {r['clients']} connections x {o['seconds']:g} s: {o['statuses']}, goodput "
          f"{o['goodput_rps']:.0f} req/s, accepted p50 {o['accepted_p50_ms']:.0f} ms p99 "
          f"{o['accepted_p99_ms']:.0f} ms; unanswered after the drain {o['unfinished_at_stop']}, connection "
          f"errors {o['conn_errors']}, 429 without Retry-After {o['no_retry_after']}; CPU loadgen "
          f"{o['loadgen_cpu_pct']:.0f}%, server {o['server_cpu_pct']:.0f}%, other processes "
          f"{o['other_cpu_pct']:.0f}%")  # fmt: skip
    print(f"   probe: {p['requests']} requests {p['statuses']}, 429 without Retry-After "
          f"{p['no_retry_after']}, errors {p['errors']}; /healthz p50 {p['healthz_p50_ms']:.1f} ms, "
          f"max {p['healthz_max_ms']:.1f} ms")  # fmt: skip
    med = statistics.median(rec or [math.nan])
    print(f"   recovery 1 s after the load: first {r['recovery_first_ms']:.1f} ms, median {med:.1f} ms "
          f"of {len(rec)}", flush=True)  # fmt: skip


def run(args: argparse.Namespace, loadgen: Path, tmp: Path) -> dict:
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    headers = {"x-request-timeout": f"{args.deadline:g}"}
    proc, url = start_server({"HFP_HOME": str(tmp / "home")})
    tail: deque[str] = deque(maxlen=50)
    threading.Thread(target=drain, args=(proc.stderr, tail), daemon=True).start()

    def load(log: str, clients: int, seconds: float) -> Load:
        return run_loadgen(loadgen, url, body, tmp / log, args.deadline, clients, seconds, honor=True)

    try:
        print(f"server {url} (pid {proc.pid}); deadline {args.deadline:g} s", flush=True)
        load("warm.log", 8, args.warmup)
        with httpx.Client(base_url=url, timeout=30) as c:
            unloaded_ms = statistics.median(timed_posts(c, 50, headers) or [math.nan])
        print(f"1. unloaded latency: median {unloaded_ms:.1f} ms over 50 sequential requests", flush=True)

        meter = CpuMeter(proc.pid)
        peak = load("peak.log", args.peak_clients, args.peak_s)
        peak_rps = peak.goodput_rps
        peak_cpu = meter.stop()
        print(
            f"2. peak: {peak_rps:.0f} req/s at {args.peak_clients} connections, {dict(peak.statuses)}; "
            f"CPU server {peak_cpu['server_cpu_pct']:.0f}%, other processes {peak_cpu['other_cpu_pct']:.0f}%",
            flush=True,
        )
        if set(peak.statuses) != {200} or peak.conn_errors:  # peak counts 200s only: refusals understate it
            print("   warning: the peak phase was not all 200")

        rounds = {}
        for name, (honor, label) in ROUNDS.items():
            if rounds:
                time.sleep(args.calm)  # let the server settle after the first round's recovery
            r = overload_round(args, loadgen, url, body, tmp / f"{name}.log", honor, meter)
            r["goodput_over_peak"] = r["load"]["goodput_rps"] / peak_rps if peak_rps else math.nan
            r["recovery_over_unloaded"] = r["recovery_first_ms"] / unloaded_ms
            print_round(label, r)
            rounds[name] = r
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
            "overload": rounds,
        }
    finally:
        stop_server(proc)


def summary(fig: dict) -> None:
    def lines(r: dict, word: Callable[[bool], str]) -> None:
        o = r["load"]
        values = [
            f"{o['statuses']}; probe {r['probe']['statuses']}; 429 without Retry-After "
            f"{o['no_retry_after'] + r['probe']['no_retry_after']}",
            f"{o['accepted_p99_ms']:.0f} ms (deadline {fig['deadline_ms']:.0f} ms)",
            f"{o['goodput_rps']:.0f} / {fig['peak']['rps']:.0f} req/s = {r['goodput_over_peak']:.2f}",
            f"{r['recovery_first_ms']:.1f} / {fig['unloaded_ms']:.1f} ms = {r['recovery_over_unloaded']:.2f}",
        ]
        for (name, ok), value in zip(r["checks"].items(), values, strict=True):
            print(f"{word(ok)}  {name:34s} {value}")
        print(f"      /healthz max under load {r['probe']['healthz_max_ms']:.1f} ms")

    a, b = fig["overload"]["honor_retry_after"], fig["overload"]["ignore_retry_after"]
    print("\n== overload summary: clients honour Retry-After ==")
    lines(a, lambda ok: "PASS" if ok else "FAIL")
    print("-- for information: adversarial clients that ignore Retry-After --")
    lines(b, lambda ok: "pass" if ok else "fail")
    other = max(fig["peak"]["other_cpu_pct"], a["load"]["other_cpu_pct"], b["load"]["other_cpu_pct"])
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
    ap.add_argument("--duration", type=float, default=20, help="seconds of each overload round")
    ap.add_argument("--deadline", type=float, default=1.0, help="X-Request-Timeout on every request (s)")
    ap.add_argument("--peak-clients", type=int, default=32, help="connections for the peak throughput")
    ap.add_argument("--peak-s", type=float, default=10, help="seconds for the peak throughput")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up seconds at 8 connections")
    ap.add_argument("--calm", type=float, default=5, help="seconds between the two overload rounds")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    # SIGTERM ends the run through the same finally blocks as Ctrl-C: no orphaned server or loadgen.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    loadgen = build_loadgen()
    raise_fd_limit(args.clients + 1024)
    with tempfile.TemporaryDirectory(prefix="hfp-overload-") as tmp:
        fig = run(args, loadgen, Path(tmp))
    for r in fig["overload"].values():
        r["checks"] = checks(fig, r)
    fig["checks"] = fig["overload"]["honor_retry_after"]["checks"]  # the acceptance lines: round (a)
    summary(fig)
    if args.json:
        args.json.write_text(json.dumps(no_nan(fig), indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
