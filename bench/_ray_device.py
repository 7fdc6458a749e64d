"""bench/ray_scale.py --device-bound: Ray Serve replicas of the device-bound test model
(hf_provider.testing.device_model: 20 ms per batch of up to 8 rows, no CPU, no GIL) on a two-node Ray cluster
on this machine (ray.cluster_utils.Cluster: a head and a worker with their own `memory`), under one client:

1. 1, 2 and 4 replicas at the same offered load (the same closed-loop clients throughout; the deployment is
   scaled in place, 1 -> 2 -> 4, while they run): throughput, p50 / p99, CPU microseconds per request of
   Ray's proxy, the replicas, Ray's controller and core processes and this client, and of our routing rule
   (the part of scaling/router.py that runs per request in the proxy); every failed request while scaling up.
2. Where the replicas went: per node, from GET /v1/admin/replicas (each replica names its node).
3. The worker node lost under load: its processes killed while clients run; what each failed request got
   (status, Retry-After), the throughput per second, and how long until it is back to the surviving
   replicas' capacity and to the whole deployment's (Ray restarts the lost replicas on the head).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

APP = "hfp-bench-dev"
MODEL = "device"
REPLICA_MEMORY = 256 << 20  # each replica reserves this (Ray's `memory`); it is its byte budget too


class Load:
    """`clients` threads posting one request of `rows` inputs each, back to back; every request is kept:
    (start, end, status, retry-after header, replica, error)."""

    def __init__(self, url: str, clients: int, rows: int) -> None:
        self.url, self.clients = url, clients
        self.body = {"model": MODEL, "input": [f"sentence {i} about a cat" for i in range(rows)]}
        self.log: list[tuple[float, float, int, str | None, str, str]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def _client(self) -> None:
        import httpx

        headers = {"serve_multiplexed_model_id": MODEL}
        with httpx.Client(base_url=self.url, timeout=60.0) as c:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.post("/v1/embeddings", json=self.body, headers=headers)
                    row = (
                        t0,
                        time.monotonic(),
                        r.status_code,
                        r.headers.get("retry-after"),
                        r.headers.get("x-hfp-replica", "?"),
                        "" if r.status_code == 200 else r.text[:160],
                    )
                except Exception as e:  # a dropped connection is a failed request too
                    row = (t0, time.monotonic(), 0, None, "?", repr(e)[:160])
                with self._lock:
                    self.log.append(row)

    def since(
        self, t0: float, t1: float | None = None
    ) -> list[tuple[float, float, int, str | None, str, str]]:
        with self._lock:
            return [r for r in self.log if r[1] >= t0 and (t1 is None or r[1] < t1)]

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(90)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))] if values else float("nan")


def _settings(home: str, source: str, replicas: int) -> Any:
    from hf_provider.settings import load_settings

    return load_settings(
        {
            "home": home,
            "history_enabled": False,
            "server": {"request_timeout_s": 30},
            "ray": {
                "min_replicas": replicas,
                "max_replicas": replicas,
                "num_cpus": 0.25,
                "torch_threads": 1,
                "memory": REPLICA_MEMORY,
                "max_ongoing_requests": 32,
            },
            "models": [
                {
                    "name": MODEL,
                    "source": source,
                    "tasks": ["embeddings"],
                    "device": "cpu",
                    "dtype": "float32",
                    "trust_remote_code": True,
                    "batching": {"max_batch_size": 8},
                }
            ],
        }
    )


def _views(url: str) -> list[dict[str, Any]]:
    import httpx

    try:
        return httpx.get(f"{url}/v1/admin/replicas", timeout=10).json()["replicas"]
    except Exception:
        return []


def _holding(url: str) -> int:
    return sum(any(m["name"] == MODEL and m["state"] == "ready" for m in v["models"]) for v in _views(url))


def _wait(check: Callable[[], bool], timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            return None
        time.sleep(0.25)
    return time.monotonic() - t0


def _routing_us() -> float:
    """CPU microseconds of our routing rule per request: what HotModelRouter.choose_replicas adds to Ray's
    (ReplicaLoad of each of 4 replicas from its routing stats, then spread), timed here in a loop."""
    from hf_provider.scaling.spread import HOT, ReplicaLoad, spread

    stats = {f"r{i}": ({MODEL}, {HOT: [MODEL] if i % 2 else []}) for i in range(4)}
    n = 20000
    t0 = time.thread_time()
    for _ in range(n):
        loads = {k: ReplicaLoad.of(m, s) for k, (m, s) in stats.items()}
        spread(MODEL, {"r0", "r1"}, loads)
    return (time.thread_time() - t0) / n * 1e6


def _measure(load: Load, seconds: float, cpu: Callable[[], dict[str, float]]) -> dict[str, Any]:
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    rows = load.since(t0, t1)
    ok = [r for r in rows if r[2] == 200]
    lat = [r[1] - r[0] for r in ok]
    per_req = {k: (c1.get(k, 0.0) - c0.get(k, 0.0)) / max(1, len(ok)) * 1e6 for k in c1}
    return {
        "rps": len(ok) / (t1 - t0),
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
        "failed": len(rows) - len(ok),
        "cpu_us": per_req,
        "replicas": len({r[4] for r in ok}),
    }


def _cpu_by_role(role_of: Callable[[Any], str]) -> Callable[[], dict[str, float]]:
    """CPU seconds (user + system) so far of this process and its descendants (the cluster's processes, all
    started from here) by role (ray_scale.py `_role`), the replicas summed into one; the machine's other
    work is left out."""
    import psutil

    def read() -> dict[str, float]:
        me = psutil.Process()
        out: dict[str, float] = {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    proc.info = {"cmdline": proc.cmdline(), "name": proc.name()}
                    t = proc.cpu_times()
            except psutil.Error:  # gone meanwhile
                continue
            role = role_of(proc)
            key = "replicas" if role.startswith("replica") else role
            out[key] = out.get(key, 0.0) + t.user + t.system
        return out

    return read


def _placement(url: str, nodes: dict[str, str]) -> list[str]:
    lines = []
    by_node: dict[str, list[dict[str, Any]]] = {}
    for v in _views(url):
        by_node.setdefault(v.get("node_id") or "?", []).append(v)
    for node_id, views in sorted(by_node.items(), key=lambda kv: nodes.get(kv[0], "?")):
        models = [
            f"{m['name']} {m['state']} {m['weight_bytes'] / 2**20:.1f} MiB"
            for v in views
            for m in v["models"]
        ]
        lines.append(
            f"  {nodes.get(node_id, 'unknown')} node {node_id[:12]}: {len(views)} replica(s); models: "
            + ", ".join(models)
        )
    return lines


def run(args: Any, role_of: Callable[[Any], str]) -> None:
    for var in (
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
    ):
        os.environ.setdefault(var, "0.5")
    base = Path(tempfile.mkdtemp(prefix="hfp-rdev-", dir="/tmp"))
    os.environ["HF_HOME"] = str(base / "hf")  # the replicas inherit it: remote code goes to its modules cache
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from transformers import AutoConfig

    from hf_provider.scaling.ray_serve import application, shutdown_directory
    from hf_provider.testing.device_model import build_device_bound

    source = build_device_bound(base / "models", batch_seconds=0.02, batch_rows=8, ballast_bytes=16 << 20)
    AutoConfig.from_pretrained(source, trust_remote_code=True)  # the modules cache, once, before the replicas
    home = str(base / "home")
    routing_us = _routing_us()
    cpu = _cpu_by_role(role_of)
    fast_failure = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={
            "num_cpus": 2,
            "memory": 4 * REPLICA_MEMORY + (64 << 20),
            "object_store_memory": 96 << 20,
            "temp_dir": str(base / "ray"),
            "include_dashboard": False,
            "_system_config": fast_failure,
        },
    )
    results: dict[int, dict[str, Any]] = {}
    scale_failures: list[tuple] = []
    loss: dict[str, Any] = {}
    try:
        worker = cluster.add_node(
            num_cpus=2, memory=2 * REPLICA_MEMORY + (64 << 20), object_store_memory=96 << 20
        )
        cluster.wait_for_nodes()
        nodes = {
            n["NodeID"]: ("head" if "node:__internal_head__" in n["Resources"] else "worker")
            for n in ray.nodes()
        }
        port = args.port
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        print(
            f"two-node cluster: head (2 CPU, memory for 4 replicas), worker (2 CPU, memory for 2); "
            f"{args.clients} clients, {args.rows} inputs a request",
            flush=True,
        )
        load: Load | None = None
        for n in (1, 2, 4):
            t_run = time.monotonic()
            serve.run(application(_settings(home, str(source), n)), name=APP, blocking=False)
            ready = _wait(lambda n=n: _holding(url) == n and len(_views(url)) == n, 240)
            ready = None if ready is None else time.monotonic() - t_run
            if load is None:
                load = Load(url, args.clients, args.rows).start()
                t_load = time.monotonic()
            time.sleep(3)  # the new replicas' first batches
            results[n] = r = _measure(load, args.seconds, cpu)
            cpu_us = ", ".join(
                f"{k} {v:.0f}" for k, v in sorted(r["cpu_us"].items(), key=lambda kv: -kv[1]) if v >= 1
            )
            print(
                f"{n} replica(s) (ready after {'never' if ready is None else f'{ready:.1f} s'}): "
                f"{r['rps']:.1f} requests/s ({r['rps'] * args.rows:.0f} inputs/s), p50 {1000 * r['p50']:.0f} ms, "
                f"p99 {1000 * r['p99']:.0f} ms, {r['replicas']} replicas answered; CPU us/request: {cpu_us}",
                flush=True,
            )
        assert load is not None
        scale_failures = [row for row in load.since(t_load) if row[2] != 200]
        load.finish()
        print("placement (GET /v1/admin/replicas):")
        for line in _placement(url, nodes):
            print(line)
        print(f"hfp ray status --address {cluster.address} --app {APP} (another process):", flush=True)
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "hf_provider.cli.main", "ray", "status", "--address", cluster.address]
        status = subprocess.run([*cmd, "--app", APP], capture_output=True, text=True, timeout=120)
        print("\n".join("  " + line for line in (status.stdout or status.stderr).splitlines()), flush=True)
        if not args.no_node_loss:
            loss = _node_loss(cluster, worker, url, nodes, args)
    finally:
        try:
            serve.shutdown()
            shutdown_directory(APP)
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(base, ignore_errors=True)

    r1 = results[1]["rps"]
    print()
    for n in (2, 4):
        print(f"throughput {n} replicas / 1 replica: {results[n]['rps'] / r1:.2f}x")
    proxy = statistics.mean(results[n]["cpu_us"].get("proxy", 0.0) for n in results)
    print(
        f"Ray proxy CPU per request: {proxy:.0f} us (mean of the 3 phases); our routing rule: {routing_us:.1f} us"
    )
    print(f"failed requests while scaling 1 -> 2 -> 4 on two nodes: {len(scale_failures)}")
    for f in scale_failures[:5]:
        print("  ", f[2], f[5])
    for line in loss.get("lines", []):
        print(line)


def _kill_node(cluster: Any, node: Any) -> None:
    """A node going down at once: SIGKILL to every process its raylet started (the replicas among them) and
    to the raylet, then Ray's own removal of what is left of it. (The raylet alone, as Cluster.remove_node
    kills it, leaves its workers a moment to finish what they hold; a lost machine does not.)"""
    import psutil

    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    for proc in [*raylet.children(recursive=True), raylet]:
        with contextlib.suppress(psutil.Error):  # gone already
            proc.kill()
    cluster.remove_node(node, allow_graceful=False)


def _node_loss(cluster: Any, worker: Any, url: str, nodes: dict[str, str], args: Any) -> dict[str, Any]:
    """Kill the worker node's processes under `args.loss_clients` clients; report what failed and the
    throughput per second until it is back."""
    views = _views(url)
    total = len(views)
    lost = {v["replica"] for v in views if nodes.get(v.get("node_id") or "") == "worker"}
    load = Load(url, args.loss_clients, args.rows).start()
    time.sleep(3)
    t_base = time.monotonic()
    time.sleep(5)
    before = len([r for r in load.since(t_base) if r[2] == 200]) / (time.monotonic() - t_base)
    t_kill = time.monotonic()
    _kill_node(cluster, worker)
    time.sleep(args.loss_seconds)
    load.finish()
    after = load.since(t_kill)
    failed = [r for r in after if r[2] != 200]
    in_flight_at_kill = [r for r in after if r[0] < t_kill]
    per_s = [0] * (int(args.loss_seconds) + 1)
    for r in after:
        if r[2] == 200:
            per_s[min(len(per_s) - 1, int(r[1] - t_kill))] += 1
    survivors = len(_views(url))
    old = {r[4] for r in load.since(t_base, t_kill) if r[2] == 200}
    new_ends = [r[1] - t_kill for r in after if r[2] == 200 and r[4] not in old]
    replaced = f"{min(new_ends):.1f} s" if new_ends else "not within the run"
    share = before * (total - len(lost)) / max(1, total)

    def back(level: float) -> str:
        for i in range(len(per_s) - 1):
            if all(v >= level for v in per_s[i : i + 3]):
                return f"{i} s"
        return "not within the run"

    statuses: dict[str, int] = {}
    for r in failed:
        key = f"{r[2] or 'no response'}" + (f" Retry-After {r[3]}" if r[3] else " no Retry-After")
        statuses[key] = statuses.get(key, 0) + 1
    lines = [
        "",
        f"node loss under {args.loss_clients} clients: worker killed (held {len(lost)} replica(s)); "
        f"{before:.1f} requests/s before",
        f"  requests in flight at the kill: {len(in_flight_at_kill)}; failed afterwards: {len(failed)} "
        f"({', '.join(f'{n} x {k}' for k, n in sorted(statuses.items())) or 'none'})",
        f"  failed requests that started after the kill: {len([r for r in failed if r[0] >= t_kill])}",
        f"  requests/s per second after the kill: {per_s[:-1]}",
        f"  back to the surviving replicas' share ({share:.0f}/s x 0.9): {back(0.9 * share)}; "
        f"to the whole deployment's rate (x 0.9): {back(0.9 * before)}",
        f"  Ray's replacement replica served its first request {replaced} after the kill; replicas in the "
        f"directory now: {survivors}",
    ]
    for r in failed[:5]:
        lines.append(f"    {r[2]} retry-after={r[3]} {r[5]}")
    return {"lines": lines}
