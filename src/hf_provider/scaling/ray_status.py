"""`hfp ray status`: the application on a running Ray cluster, its deployment, and per node the replicas and
their models. Read as a Ray driver (the cluster's address, or the local one Ray finds itself), through Serve's
controller and our replica directory, so it needs neither Ray's dashboard nor its address or token.

`collect` makes the Ray calls; `render` is pure, so the layout is tested without a cluster.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray import serve

from hf_provider.scaling.config import DEPLOYMENT_NAME
from hf_provider.scaling.ray_serve import replica_views
from hf_provider.units import format_size


@contextmanager
def connected(address: str | None) -> Iterator[None]:
    """A driver on the cluster at `address` (None: the one running on this machine, or RAY_ADDRESS). A driver
    already connected in this process is used as it is and left connected."""
    if ray.is_initialized():
        yield
        return
    _check_reachable(address)
    ray.init(address=address or "auto", log_to_driver=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """ConnectionError at once when a host:port address does not accept connections (ray.init would retry
    it for minutes); other forms (auto, ray://...) are left to Ray."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
    except OSError as e:
        raise ConnectionError(f"nothing accepts connections at {address} ({e.strerror or e})") from e


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def collect(app_name: str) -> dict[str, Any]:
    """The application's status, its deployment's replica counts by state, the nodes, and every replica's
    view (node and models) from the directory the replicas refresh each second."""
    status = serve.status().applications.get(app_name)
    app: dict[str, Any] | None = None
    if status is not None:
        dep = status.deployments.get(DEPLOYMENT_NAME)
        app = {
            "status": _state(status.status),
            "message": status.message or "",
            "deployment": None
            if dep is None
            else {
                "name": DEPLOYMENT_NAME,
                "status": _state(dep.status),
                "replicas": {_state(k): n for k, n in dep.replica_states.items() if n},
                "message": dep.message or "",
            },
        }
    nodes = [
        {
            "node_id": n["NodeID"],
            "address": n.get("NodeManagerAddress", ""),
            "alive": bool(n.get("Alive")),
            "head": "node:__internal_head__" in (n.get("Resources") or {}),
            "resources": n.get("Resources") or {},
        }
        for n in ray.nodes()
    ]
    return {"app": app_name, "application": app, "nodes": nodes, "replicas": replica_views(app_name)}


def _size(n: float) -> str:
    return format_size(int(n))


def render(data: dict[str, Any]) -> list[str]:
    """Lines for the terminal: the application and deployment, then each node (alive ones first) with its
    replicas and each replica's models (state, weights, queued and in flight)."""
    app = data.get("application")
    lines: list[str] = []
    if app is None:
        lines.append(f"application {data['app']!r}: not deployed on this cluster")
    else:
        lines.append(f"application {data['app']!r}: {app['status']}" + _note(app["message"]))
        dep = app.get("deployment")
        if dep is not None:
            counts = (
                ", ".join(f"{n} {s.lower()}" for s, n in sorted(dep["replicas"].items())) or "no replicas"
            )
            lines.append(
                f"deployment {dep['name']!r}: {dep['status']}, replicas: {counts}" + _note(dep["message"])
            )
    by_node: dict[str | None, list[dict[str, Any]]] = {}
    for r in data.get("replicas", []):
        by_node.setdefault(r.get("node_id"), []).append(r)
    known = {n["node_id"] for n in data.get("nodes", [])}
    nodes = sorted(data.get("nodes", []), key=lambda n: (not n["alive"], not n["head"], n["node_id"]))
    nodes += [  # a replica's node Ray no longer lists (its entry expires within seconds)
        {"node_id": k, "address": "?", "alive": None, "head": False, "resources": {}}
        for k in by_node
        if k not in known
    ]
    for n in nodes:
        res = n["resources"]
        what = ", ".join(
            part
            for part in (
                "head" if n["head"] else "worker",
                {True: "alive", False: "dead", None: "not listed by Ray"}[n["alive"]],
                f"{res['CPU']:g} CPU" if "CPU" in res else "",
                f"{res['GPU']:g} GPU" if res.get("GPU") else "",
                f"memory {_size(res['memory'])}" if "memory" in res else "",
            )
            if part
        )
        replicas = by_node.get(n["node_id"], [])
        lines.append(f"node {str(n['node_id'])[:12]} {n['address']} ({what}): {len(replicas)} replica(s)")
        for r in replicas:
            lines.append(f"  replica {str(r['replica']).rsplit('#', 1)[-1]}")
            models = r.get("models") or []
            if not models:
                lines.append("    no models")
            for m in models:
                lines.append(
                    f"    {m['name']}: {m['state']}, {_size(m.get('weight_bytes') or 0)}, "
                    f"queued {m.get('queued') or 0}, in flight {m.get('in_flight') or 0}"
                    + (f", error: {m['error']}" if m.get("error") else "")
                )
    return lines


def _note(message: str) -> str:
    return f" ({message})" if message else ""
