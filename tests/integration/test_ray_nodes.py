"""Two Ray nodes on this machine (ray.cluster_utils.Cluster: a head and a worker, each with `memory` for one
replica): the deployment's two replicas land one on each node by that reservation, two device-bound models
(hf_provider.testing.device_model) whose bytes fit one per replica's budget stay each on its own node,
GET /v1/admin/replicas names every replica's node, and `hfp ray status` prints the replicas and models per
node. Scaling 1 -> 4 under load and a node lost under load are measured by bench/ray_scale.py --device-bound.

One cluster for the module, always shut down; about 40 s on a 2-core machine.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
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
    pytest.mark.timeout(300),
    # we set it on purpose: Ray checks look_back_period_s against it (scaling/options.py)
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]

import ray  # noqa: E402
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from hf_provider.scaling.ray_serve import application, shutdown_directory  # noqa: E402
from hf_provider.settings import load_settings  # noqa: E402
from hf_provider.testing.device_model import build_device_bound  # noqa: E402

APP = "hfp-nodes"
REPLICA_MEMORY = 96 << 20  # Ray's reservation per replica; each node has room for one


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Head and worker, each with memory for one replica; yields node id -> 'head' | 'worker'. Env first:
    Ray's processes inherit it (HF_HOME: the model's remote code goes to its modules cache)."""
    base = tmp_path_factory.mktemp("ray-nodes")
    ray_tmp = tempfile.mkdtemp(prefix="hfp-rn-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(base / "hf-home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        node = {"num_cpus": 2, "memory": REPLICA_MEMORY + (16 << 20), "object_store_memory": 80 << 20}
        c = Cluster(
            initialize_head=True,
            connect=True,
            head_node_args={**node, "temp_dir": ray_tmp, "include_dashboard": False},
        )
        try:
            c.add_node(**node)
            c.wait_for_nodes()
            yield {
                n["NodeID"]: "head" if "node:__internal_head__" in n["Resources"] else "worker"
                for n in ray.nodes()
                if n["Alive"]
            }
        finally:
            try:
                serve.shutdown()
                shutdown_directory(APP)
            finally:
                ray.shutdown()
                c.shutdown()
                shutil.rmtree(ray_tmp, ignore_errors=True)


def _accounted(source: Path, home: Path) -> int:
    from hf_provider.provider import Provider

    spec = {"source": str(source), "tasks": ["embeddings"], "device": "cpu", "trust_remote_code": True}
    settings = load_settings({"home": str(home), "models": [{"name": "probe", **spec}]})
    with Provider(settings=settings, allow_adhoc=False) as probe:
        probe.load("probe")
        return int(probe.admin.describe()[0]["accounted_bytes"])


@pytest.fixture(scope="module")
def url(cluster: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("hfp-nodes")
    source = build_device_bound(base / "models", batch_seconds=0.005, ballast_bytes=8 << 20)
    spec = {
        "source": str(source),
        "tasks": ["embeddings"],
        "device": "cpu",
        "trust_remote_code": True,
        "batching": {"max_batch_size": 8},
    }
    settings = load_settings(
        {
            "home": str(base / "home"),
            "load_on_start": False,
            # a replica's byte budget holds one of the two models, not both
            "memory": {"host_budget": int(_accounted(source, base / "probe") * 1.5), "min_residency_s": 0},
            "ray": {"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5, "memory": REPLICA_MEMORY},
            "models": [{"name": "dev-a", **spec}, {"name": "dev-b", **spec}],
        }
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(application(settings), name=APP, route_prefix="/", blocking=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.delete(APP)


def _views(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/v1/admin/replicas", timeout=30).json()["replicas"]


def _embed(url: str, model: str) -> str:
    r = httpx.post(
        f"{url}/v1/embeddings",
        json={"model": model, "input": ["a cat on a mat", "a dog"]},
        headers={"serve_multiplexed_model_id": model},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert [len(d["embedding"]) for d in r.json()["data"]] == [32, 32]
    return r.headers["x-hfp-replica"]


def test_replicas_on_both_nodes_models_stay_on_theirs_and_status_names_them(
    cluster: dict[str, str], url: str
) -> None:
    _until(lambda: len(_views(url)) == 2, 60, "both replicas in the directory")
    node_of = {v["replica"]: v["node_id"] for v in _views(url)}
    assert set(node_of.values()) == set(cluster), node_of  # one replica per node: each has memory for one

    served: dict[str, set[str]] = {"dev-a": set(), "dev-b": set()}
    for model in served:  # the first of each, apart: the router learns where each went
        served[model].add(_embed(url, model))
        time.sleep(3)  # the replica's advertisement reaches the proxy's router through Ray's controller
    for i in range(12):
        model = ("dev-a", "dev-b")[i % 2]
        served[model].add(_embed(url, model))
    assert len(served["dev-a"]) == 1 and len(served["dev-b"]) == 1, served
    (a,), (b,) = served["dev-a"], served["dev-b"]
    assert node_of[a] != node_of[b]  # each model on its own node, not reloaded across them
    views = _views(url)
    assert sum(m["loads"] for v in views for m in v["models"]) == 2, views

    from typer.testing import CliRunner

    from hf_provider.cli.main import app

    out = CliRunner().invoke(app, ["ray", "status", "--app", APP])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == f"application '{APP}': RUNNING"
    assert "replicas: 2 running" in lines[1]
    for replica, model in ((a, "dev-a"), (b, "dev-b")):
        node = node_of[replica]
        header = next(i for i, line in enumerate(lines) if line.startswith(f"node {node[:12]} "))
        assert f"({cluster[node]}, alive" in lines[header] and lines[header].endswith("1 replica(s)")
        assert lines[header + 1] == f"  replica {replica.rsplit('#', 1)[-1]}"
        assert lines[header + 2].startswith(f"    {model}: ready, ")
