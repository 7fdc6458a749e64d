"""Ray Serve scaling: the same embeddings load against 1 replica and against 2 (each one CPU and one torch
thread), in one run on one local Ray, measured once every replica serves the model (the hot model spreads to
the other replica, which loads it; the time that takes is printed); then an autoscaled deployment (min 1, max 2)
under that load and idle after it, timing the scale-up and the scale-down. Prints the 2-vs-1 throughput ratio
and every failed request.

    .venv/bin/python bench/ray_scale.py [--seconds 20] [--clients 4] [--batch 32] [--encoding base64|float]
                                        [--throughput-only]
    .venv/bin/python bench/ray_scale.py --device-bound [--seconds 10] [--clients 16] [--rows 8]
                                        [--no-node-loss] [--loss-clients 8] [--loss-seconds 35]

--device-bound (bench/_ray_device.py): 1, 2 and 4 replicas of the device-bound test model (20 ms per batch of
8, no CPU) on a two-node Ray cluster on this machine, the replicas' placement per node, and the worker node lost
under load.

Each phase also prints the requests each replica served and the CPU each process used (% of one core: the
replicas, Ray's proxy, controller and core processes, this client), which shows where a ratio below 2 goes.

Requests carry many sentences each so that the client and Ray's proxy (which share the machine) cost little
beside the replicas' forward passes; on a 2-core machine the two replicas take both cores, so the ratio shows
how close to linear the replicas scale when nothing else runs. A machine shared with other work reads lower.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

APP = "hfp-bench"


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _settings(home: str, minilm: str, **ray: Any) -> Any:
    from hf_provider.settings import load_settings

    return load_settings(
        {
            "home": home,
            "history_enabled": False,
            "ray": {"num_cpus": 1, "torch_threads": 1, "max_ongoing_requests": 16, **ray},
            "models": [{"name": "minilm", "source": minilm, "tasks": ["embeddings"], "device": "cpu"}],
        }
    )


def _replicas(app: str) -> dict[str, int]:
    """Replica count per state (STARTING, RUNNING, STOPPING, ...) of the application's deployment."""
    from ray import serve

    from hf_provider.scaling.config import DEPLOYMENT_NAME

    status = serve.status().applications.get(app)
    if status is None:
        return {}
    states = status.deployments[DEPLOYMENT_NAME].replica_states
    return {str(getattr(s, "value", s)): n for s, n in states.items() if n}


def _running(app: str) -> int:
    return _replicas(app).get("RUNNING", 0)


def _wait(check: Callable[[], bool], timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            return None
        time.sleep(0.25)
    return time.monotonic() - t0


class Load:
    """`clients` threads posting one batch each, back to back, while `on` is set; statuses are kept."""

    def __init__(self, url: str, clients: int, batch: int, encoding: str = "base64") -> None:
        self.url, self.clients = url, clients
        self.body = {
            "model": "minilm",
            "input": [f"sentence {i} about a cat on a mat" for i in range(batch)],
            "encoding_format": encoding,
        }
        self.ok_items = 0
        self.per_replica: dict[str, int] = {}
        self.failed: list[str] = []
        self.on = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, trickle: bool = True) -> None:
        self.on.set()
        self._threads = [
            threading.Thread(target=self._client, args=(trickle and i == 0,), daemon=True)
            for i in range(self.clients)
        ]
        for t in self._threads:
            t.start()

    def _client(self, trickle: bool) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=120.0) as c:
            while not self.stop.is_set() and (trickle or self.on.is_set()):
                try:
                    r = c.post(
                        "/v1/embeddings", json=self.body, headers={"serve_multiplexed_model_id": "minilm"}
                    )
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:120]}"
                    replica = r.headers.get("x-hfp-replica", "?").rsplit("#", 1)[-1]
                except Exception as e:  # a dropped connection is a failed request too
                    ok, why = False, repr(e)
                with self._lock:
                    if ok:
                        self.ok_items += len(self.body["input"])
                        self.per_replica[replica] = self.per_replica.get(replica, 0) + 1
                    else:
                        self.failed.append(why)
                if trickle and not self.on.is_set():
                    time.sleep(0.3)

    def counts(self) -> tuple[int, dict[str, int]]:
        """Sentences answered so far, and requests answered per replica."""
        with self._lock:
            return self.ok_items, dict(self.per_replica)

    def finish(self) -> None:
        self.stop.set()
        self.on.clear()
        for t in self._threads:
            t.join(120)


def _holding(url: str, model: str) -> tuple[int, int]:
    """(replicas that have `model` ready, replicas) from GET /v1/admin/replicas."""
    import httpx

    try:
        reps = httpx.get(f"{url}/v1/admin/replicas", timeout=10).json()["replicas"]
    except Exception:
        return 0, 0
    ready = sum(any(m["name"] == model and m["state"] == "ready" for m in r["models"]) for r in reps)
    return ready, len(reps)


def _role(proc: Any) -> str:
    title = " ".join(proc.info.get("cmdline") or [proc.info.get("name") or ""])
    if proc.pid == os.getpid():
        return "client"
    for key, role in (
        ("ServeReplica", f"replica {proc.pid}"),
        ("ProxyActor", "proxy"),
        ("ServeController", "controller"),
        ("raylet", "raylet"),
        ("gcs_server", "gcs"),
    ):
        if key in title:
            return role
    return "other"


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) each role has used so far: the replicas, Ray's proxy, controller and core
    processes, this client, everything else."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        t = proc.info.get("cpu_times")
        if t is None:
            continue
        role = _role(proc)
        out[role] = out.get(role, 0.0) + t.user + t.system
    return out


def _cpu_share(before: dict[str, float], after: dict[str, float], elapsed: float) -> str:
    used = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / elapsed for k in after}
    return ", ".join(
        f"{k} {100 * v:.0f}%" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.01
    )


def _throughput(
    url: str, seconds: float, clients: int, batch: int, encoding: str, replicas: int
) -> tuple[float, list[str], float | None]:
    """Steady-state throughput: the load runs until every replica serves the model (the hot model spreads,
    scaling/spread.py, and the other replica loads it; at most 120 s), then `seconds` are measured. Also
    returns how long the spreading took."""
    warm = Load(url, clients, batch, encoding)
    warm.start(trickle=False)
    time.sleep(3)  # first batches: allocator and thread start-up
    spread_s = _wait(lambda: _holding(url, "minilm") == (replicas, replicas), 120)
    warm.finish()
    load = Load(url, clients, batch, encoding)
    load.start(trickle=False)
    time.sleep(1)  # the clients' connections are open
    items0, split0 = load.counts()
    cpu0, t0 = _cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    items, split = load.counts()
    items -= items0
    split = {k: v - split0.get(k, 0) for k, v in split.items()}
    elapsed = time.monotonic() - t0
    cpu = _cpu_share(cpu0, _cpu_seconds(), elapsed)
    load.finish()
    print(
        f"  requests per replica: {sorted(split.values(), reverse=True)}; CPU (% of one core): {cpu}",
        flush=True,
    )
    return items / elapsed, load.failed + warm.failed, spread_s


def _autoscale(
    url: str, home: str, minilm: str, args: argparse.Namespace, failed: list[str]
) -> list[float | None]:
    """An autoscaled deployment (min 1, max 2) under the load, then idle but for one slow client: the seconds
    until the second replica starts, serves, drains and is gone."""
    from ray import serve

    from hf_provider.scaling.ray_serve import application

    auto = _settings(
        home,
        minilm,
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=1,
        upscale_delay_s=1,
        downscale_delay_s=5,
        look_back_period_s=2,
        metrics_interval_s=0.5,
    )
    serve.run(application(auto), name=APP, blocking=False)
    load = Load(url, args.clients, args.batch, args.encoding)
    load.start(trickle=True)
    t0 = time.monotonic()
    up_decided = _wait(lambda: sum(_replicas(APP).values()) >= 2, 300)  # a second replica is starting
    up = _wait(lambda: _running(APP) == 2, 300)
    up = None if up is None else time.monotonic() - t0
    time.sleep(3)
    load.on.clear()  # one client goes on slowly: requests are in flight while a replica drains
    t0 = time.monotonic()
    down_decided = _wait(lambda: _running(APP) < 2, 300)  # one is stopping (draining)
    down = _wait(lambda: sum(_replicas(APP).values()) == 1, 300)
    down = None if down is None else time.monotonic() - t0
    time.sleep(2)
    load.finish()
    failed += load.failed
    serve.delete(APP)
    return [up_decided, up, down_decided, down]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured load per phase")
    ap.add_argument("--clients", type=int, default=None, help="concurrent clients (4; --device-bound: 16)")
    ap.add_argument("--batch", type=int, default=32, help="sentences per request")
    ap.add_argument(
        "--encoding",
        choices=("base64", "float"),
        default="base64",
        help="encoding_format of the embeddings (base64 is what the OpenAI Python client asks for by default)",
    )
    ap.add_argument(
        "--throughput-only", action="store_true", help="skip the autoscaling phase (scale-up and scale-down)"
    )
    dev = ap.add_argument_group(
        "--device-bound: the device-bound model on a two-node cluster (bench/_ray_device.py)"
    )
    dev.add_argument("--device-bound", action="store_true", help="1, 2, 4 replicas of the device-bound model")
    dev.add_argument("--rows", type=int, default=32, help="inputs per request (4 batches of the model's 8)")
    dev.add_argument("--no-node-loss", action="store_true", help="skip losing the worker node under load")
    dev.add_argument("--loss-clients", type=int, default=8, help="clients while the worker node is lost")
    dev.add_argument("--loss-seconds", type=float, default=35.0, help="how long to watch after the loss")
    args = ap.parse_args()
    if args.clients is None:
        args.clients = 16 if args.device_bound else 4
    if args.device_bound:
        import _ray_device

        args.port = _port()
        _ray_device.run(args, _role)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for var in (
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
    ):
        os.environ.setdefault(var, "0.5")
    import tempfile

    import ray
    from ray import serve

    from hf_provider.scaling.ray_serve import application, shutdown_directory
    from hf_provider.testing.models import minilm_path

    home = tempfile.mkdtemp(prefix="hfp-ray-bench-")
    minilm = str(minilm_path())
    port = _port()
    url = f"http://127.0.0.1:{port}"
    print(
        f"load: {args.clients} clients, {args.batch} sentences a request ({args.encoding}), "
        f"{args.seconds:.0f} s per phase",
        flush=True,
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    failed: list[str] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        rates = {}
        for n in (1, 2):
            serve.run(
                application(_settings(home, minilm, min_replicas=n, max_replicas=n)), name=APP, blocking=False
            )
            rates[n], f, spread_s = _throughput(url, args.seconds, args.clients, args.batch, args.encoding, n)
            failed += f
            held = "never" if spread_s is None else f"{spread_s + 3:.1f} s into the load"
            print(
                f"{n} replica(s): {rates[n]:.1f} sentences/s (every replica held the model: {held})",
                flush=True,
            )
            serve.delete(APP)

        timings = None if args.throughput_only else _autoscale(url, home, minilm, args, failed)
    finally:
        serve.shutdown()
        shutdown_directory(APP)
        ray.shutdown()

    print()
    print(
        f"throughput 2 replicas / 1 replica: {rates[2] / rates[1]:.2f}x  ({rates[2]:.1f} vs {rates[1]:.1f} sentences/s)"
    )

    def secs(v: float | None) -> str:
        return "not seen" if v is None else f"{v:.1f} s"

    if timings is not None:
        up_decided, up, down_decided, down = timings
        print(f"scale-up 1->2 under load: started after {secs(up_decided)}, serving after {secs(up)}")
        print(f"scale-down 2->1 when idle: draining after {secs(down_decided)}, gone after {secs(down)}")
    print(f"failed requests: {len(failed)}")
    for f in failed[:10]:
        print("  ", f)


if __name__ == "__main__":
    main()
