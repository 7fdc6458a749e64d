"""`hfp ray status`'s layout (scaling/ray_status.py `render`, pure): the application, its deployment, then per
node its replicas and their models; a node that died is named dead, a replica on a node Ray no longer lists
still shows."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.serve")

from hf_provider.scaling.ray_status import render

HEAD, WORKER = "a" * 56, "b" * 56


def _model(name: str, state: str = "ready", **kw: object) -> dict:
    return {"name": name, "state": state, "weight_bytes": 16 << 20, "queued": 0, "in_flight": 1, **kw}


def _data(**over: object) -> dict:
    data = {
        "app": "hfp",
        "application": {
            "status": "RUNNING",
            "message": "",
            "deployment": {
                "name": "hf-provider",
                "status": "HEALTHY",
                "replicas": {"RUNNING": 3, "STARTING": 1},
                "message": "",
            },
        },
        "nodes": [
            {
                "node_id": WORKER,
                "address": "10.0.0.2",
                "alive": True,
                "head": False,
                "resources": {"CPU": 2.0},
            },
            {
                "node_id": HEAD,
                "address": "10.0.0.1",
                "alive": True,
                "head": True,
                "resources": {"CPU": 2.0, "memory": float(1 << 30)},
            },
        ],
        "replicas": [
            {"replica": "hfp#hf-provider#r1", "node_id": WORKER, "models": [_model("device")]},
            {
                "replica": "hfp#hf-provider#r2",
                "node_id": HEAD,
                "models": [_model("a"), _model("b", "loading")],
            },
            {"replica": "hfp#hf-provider#r3", "node_id": HEAD, "models": []},
        ],
    }
    data.update(over)
    return data


def test_replicas_and_their_models_per_node_head_first() -> None:
    lines = render(_data())
    assert lines[0] == "application 'hfp': RUNNING"
    assert lines[1] == "deployment 'hf-provider': HEALTHY, replicas: 3 running, 1 starting"
    nodes = [line for line in lines if line.startswith("node ")]
    assert nodes[0].startswith(
        f"node {HEAD[:12]} 10.0.0.1 (head, alive, 2 CPU, memory 1.0 GiB): 2 replica(s)"
    )
    assert nodes[1].startswith(f"node {WORKER[:12]} 10.0.0.2 (worker, alive, 2 CPU): 1 replica(s)")
    head = lines[lines.index(nodes[0]) + 1 : lines.index(nodes[1])]
    assert head == [
        "  replica r2",
        "    a: ready, 16.0 MiB, queued 0, in flight 1",
        "    b: loading, 16.0 MiB, queued 0, in flight 1",
        "  replica r3",
        "    no models",
    ]
    assert lines[-1] == "    device: ready, 16.0 MiB, queued 0, in flight 1"


def test_a_dead_node_and_an_unknown_one_are_shown_as_such() -> None:
    data = _data()
    data["nodes"][0]["alive"] = False
    data["replicas"].append({"replica": "x#y#r9", "node_id": "c" * 56, "models": [_model("m", error="boom")]})
    lines = render(data)
    nodes = [line for line in lines if line.startswith("node ")]
    assert "(worker, dead, 2 CPU)" in nodes[1]  # alive nodes first, then the dead one
    assert nodes[-1].startswith(f"node {'c' * 12} ? (worker, not listed by Ray): 1 replica(s)")
    assert lines[-1].endswith("error: boom")


def test_an_application_not_deployed_is_said_so() -> None:
    lines = render(_data(application=None, replicas=[]))
    assert lines[0] == "application 'hfp': not deployed on this cluster"
    assert all("replica r" not in line for line in lines)


def test_status_at_an_address_nothing_listens_on_fails_at_once_and_says_where() -> None:
    import socket

    from typer.testing import CliRunner

    from hf_provider.cli.main import app

    with socket.socket() as s:  # bound, not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        out = CliRunner().invoke(app, ["ray", "status", "--address", address])
    assert out.exit_code == 1
    assert f"no Ray cluster reached at {address}" in out.output and "--address" in out.output
