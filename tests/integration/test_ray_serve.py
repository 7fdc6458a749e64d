"""The application on a real local Ray Serve (2 CPUs, no dashboard), started once for this module: the OpenAI
client through Ray's proxy, scaling up under load and down when idle without a failed request, two models
kept on separate replicas by the multiplexed model id under a budget that holds one each, a hot model spreading
to the other replica, and scaling to zero and back for a request.

Slow on a 2-core machine (Ray's start and each replica's start take tens of seconds), so one Ray instance and
two applications serve every test here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ray.serve")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # we set it on purpose: Ray checks look_back_period_s against it (scaling/options.py)
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]

import ray  # noqa: E402
from ray import serve  # noqa: E402

from hf_provider.scaling.config import DEPLOYMENT_NAME  # noqa: E402
from hf_provider.scaling.ray_serve import application, directory_name, shutdown_directory  # noqa: E402
from hf_provider.settings import load_settings  # noqa: E402

APP = "hfp"
AFFINITY_APP = "hfp-affinity"
ZERO_APP = "hfp-zero"


@pytest.fixture(scope="module")
def ray_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray with Serve's proxy on a free loopback port. Env first: Ray's processes inherit it."""
    base = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(base / "hf-home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        # Ray's replicas and proxy report load every 10 s by default: too slow for a test to watch scaling
        mp.setenv("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
        mp.setenv("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
            yield f"http://127.0.0.1:{port}"
        finally:
            try:
                serve.shutdown()
                for app in (APP, AFFINITY_APP, ZERO_APP):
                    shutdown_directory(app)
            finally:
                ray.shutdown()


def _running(app: str) -> int:
    status = serve.status().applications.get(app)
    if status is None:
        return 0
    states = status.deployments[DEPLOYMENT_NAME].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def minilm_app(ray_url: str, minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = load_settings(
        {
            "home": str(tmp_path_factory.mktemp("hfp-ray")),
            "server": {"request_timeout_s": 30},
            "ray": {
                "min_replicas": 1,
                "max_replicas": 2,
                "num_cpus": 0.5,
                "max_ongoing_requests": 8,
                "target_ongoing_requests": 2,
                "upscale_delay_s": 1,
                "downscale_delay_s": 4,
                "look_back_period_s": 2,
                "metrics_interval_s": 0.5,
            },
            "models": [
                {"name": "minilm", "source": str(minilm_path), "tasks": ["embeddings"], "device": "cpu"}
            ],
        }
    )
    serve.run(application(settings), name=APP, route_prefix="/", blocking=False)
    try:
        yield ray_url
    finally:
        serve.delete(APP)


def test_openai_client_through_rays_proxy(minilm_app: str) -> None:
    from openai import NotFoundError, OpenAI

    assert httpx.get(f"{minilm_app}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{minilm_app}/readyz").json() == {"status": "ready", "models": ["minilm"]}
    client = OpenAI(base_url=f"{minilm_app}/v1", api_key="unused", max_retries=0)
    with pytest.raises(NotFoundError) as e:  # our error table, unchanged through Ray's proxy
        client.embeddings.create(model="no-such-model", input=["a"])
    assert e.value.body["code"] == "model_not_found"
    out = client.with_options(default_headers={"serve_multiplexed_model_id": "minilm"}).embeddings.create(
        model="minilm", input=["a cat", "a kitten"]
    )
    assert [len(d.embedding) for d in out.data] == [384, 384] and out.usage.prompt_tokens > 0
    body = httpx.get(f"{minilm_app}/v1/admin/models").json()
    assert body["replica"] in {r["replica"] for r in body["replicas"]}  # names the replica that answered
    assert any(m["name"] == "minilm" and m["state"] == "ready" for r in body["replicas"] for m in r["models"])


def test_scales_up_under_load_and_down_when_idle_without_failures(minilm_app: str) -> None:
    assert _running(APP) == 1
    results: list[int] = []
    replicas: set[str] = set()
    heavy = threading.Event()
    stop = threading.Event()
    batch = {"model": "minilm", "input": [f"sentence number {i} about cats" for i in range(16)]}

    def client(trickle: bool) -> None:
        with httpx.Client(base_url=minilm_app, timeout=60.0) as c:
            while not stop.is_set() and (trickle or heavy.is_set()):
                r = c.post("/v1/embeddings", json=batch, headers={"serve_multiplexed_model_id": "minilm"})
                results.append(r.status_code)
                replicas.add(r.headers.get("x-hfp-replica", "?"))
                if trickle:
                    time.sleep(0.2)

    heavy.set()
    threads = [threading.Thread(target=client, args=(i == 0,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    try:
        up_s = _until(lambda: _running(APP) == 2, 240, "scale up to 2 replicas under load")
        _until(lambda: len(replicas) == 2, 60, "both replicas answering")
        heavy.clear()  # one client goes on, slowly: requests are in flight while a replica drains and goes
        down_s = _until(lambda: _running(APP) == 1, 120, "scale down to 1 replica when idle")
        time.sleep(2)
    finally:
        stop.set()
        heavy.clear()
        for t in threads:
            t.join(60)
    print(f"scale-up {up_s:.1f} s, scale-down {down_s:.1f} s, {len(results)} requests")
    assert results and set(results) == {200}, f"failed requests: {[s for s in results if s != 200]}"


def _one_model_budget(source: str) -> int:
    """1.5x what one tiny classifier is accounted (measured here): a replica's budget holds one, not two."""
    from hf_provider.provider import Provider

    spec = {"source": source, "tasks": ["text-classification"], "device": "cpu"}
    with Provider(
        settings=load_settings({"models": [{"name": "probe", **spec}]}), allow_adhoc=False
    ) as probe:
        probe.load("probe")
        return int(probe.admin.describe()[0]["accounted_bytes"] * 1.5)


@pytest.fixture(scope="module")
def affinity_app(ray_url: str, tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two replicas, two models, a budget that holds one each. Batches of 2 items, so a flood of requests
    queues on the replica (its queue wait is the hot signal), and a low wait target to call it hot."""
    cls = str(tiny_models["bert-cls"])
    spec = {
        "source": cls,
        "tasks": ["text-classification"],
        "device": "cpu",
        "batching": {"max_batch_size": 2},
    }
    settings = load_settings(
        {
            "home": str(tmp_path_factory.mktemp("hfp-affinity")),
            "load_on_start": False,
            "memory": {"host_budget": _one_model_budget(cls), "min_residency_s": 0},
            "ray": {
                "min_replicas": 2,
                "max_replicas": 2,
                "num_cpus": 0.25,
                "target_queue_wait_s": 0.02,
                "routing_stats_period_s": 0.5,
            },
            "models": [{"name": "cls-a", **spec}, {"name": "cls-b", **spec}],
        }
    )
    handle = serve.run(application(settings), name=AFFINITY_APP, route_prefix=None, blocking=False)
    try:
        yield handle
    finally:
        serve.delete(AFFINITY_APP)


def _run(handle: Any, model: str, inputs: Any = "a fine day") -> dict[str, Any]:
    call = handle.options(multiplexed_model_id=model).run
    return call.remote(model, "text-classification", inputs).result(timeout_s=120)


def _views(app: str) -> list[dict[str, Any]]:
    directory = ray.get_actor(directory_name(app), namespace="hfp")
    time.sleep(1.5)  # one refresh of every replica's view
    return ray.get(directory.all.remote())


def test_two_models_stay_on_separate_replicas(affinity_app: Any) -> None:
    """Without affinity alternating requests would evict and reload on every switch."""
    served: dict[str, set[str]] = {"cls-a": set(), "cls-b": set()}
    for model in ("cls-a", "cls-b"):  # the first of each, apart: the router learns where each went
        served[model].add(_run(affinity_app, model)["replica"])
        time.sleep(3)  # the replica's push reaches the router through Ray's controller
    for i in range(24):
        model = ("cls-a", "cls-b")[i % 2]
        out = _run(affinity_app, model)
        assert out["result"], out
        served[model].add(out["replica"])
    assert len(served["cls-a"]) == 1 and len(served["cls-b"]) == 1, served
    assert served["cls-a"] != served["cls-b"]
    views = _views(AFFINITY_APP)
    loads = sum(m["loads"] for v in views for m in v["models"])
    assert loads == 2, views  # each model loaded once, on its own replica


def test_a_hot_model_spreads_to_the_other_replica(affinity_app: Any) -> None:
    """cls-a is flooded, cls-b idle: once cls-a's replica reports it hot (queue wait over the target), its
    requests also go to the other replica, which loads it. Ray's own router would keep them on the first until
    it held max_ongoing_requests (64), far more than the 12 in flight here."""
    home = {
        m: _run(affinity_app, m)["replica"] for m in ("cls-a", "cls-b")
    }  # placed, as the test above left them
    time.sleep(3)
    assert home["cls-a"] != home["cls-b"], home
    results: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                out = _run(affinity_app, "cls-a", [f"text {i} of a long queue" for i in range(8)])
                results.append(out["replica"])
            except BaseException as e:  # counted, not raised in a thread where nobody would see it
                failures.append(e)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    try:
        spread_s = _until(lambda: home["cls-b"] in results, 60, "cls-a served by the second replica")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    print(f"cls-a spread to a second replica after {spread_s:.1f} s, {len(results)} requests")
    assert not failures, failures[:3]
    on_b = next(v for v in _views(AFFINITY_APP) if v["replica"] == home["cls-b"])
    assert any(m["name"] == "cls-a" and m["loads"] >= 1 for m in on_b["models"]), on_b


def test_idle_deployment_scales_to_zero_and_a_request_then_is_served(
    ray_url: str, tiny_models: dict, tmp_path: Path
) -> None:
    spec = {"source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"], "device": "cpu"}
    settings = load_settings(
        {
            "home": str(tmp_path / "hfp"),
            "ray": {
                "min_replicas": 0,
                "max_replicas": 1,
                "initial_replicas": 0,
                "num_cpus": 0.25,
                "upscale_delay_s": 0,
                "downscale_delay_s": 1,
                "look_back_period_s": 1,
                "metrics_interval_s": 0.5,
            },
            "models": [{"name": "cls", **spec}],
        }
    )
    handle = serve.run(application(settings), name=ZERO_APP, route_prefix=None, blocking=False)
    try:
        assert _running(ZERO_APP) == 0
        cold_s = []
        for round_ in range(2):  # deployed at zero, then back at zero after being idle
            t0 = time.monotonic()
            out = _run(handle, "cls")  # waits in the handle's router while Ray starts a replica (cold start)
            cold_s.append(time.monotonic() - t0)
            assert out["result"], out
            assert _running(ZERO_APP) == 1
            if round_ == 0:
                to_zero_s = _until(lambda: _running(ZERO_APP) == 0, 60, "scale to zero when idle")
        print(
            f"cold starts served in {cold_s[0]:.1f} s and {cold_s[1]:.1f} s, idle to zero in {to_zero_s:.1f} s"
        )
    finally:
        serve.delete(ZERO_APP)
