"""Every Ray Serve call of the application: the replica deployment, its application builder, the directory
the admin routes read across replicas. `hf_provider.ray` re-exports the public part.

One replica = one Provider with its own byte budget, serving the same FastAPI app as `hfp serve` (through
`serve.ingress`, built at replica start by `__serve_build_asgi_app__`), so batching, admission, eviction,
monitoring and the error table work unchanged inside it. Ray adds replicas, its HTTP proxy, autoscaling, and
routing by the multiplexed model id (the `serve_multiplexed_model_id` header or handle option), through our
request router (scaling/router.py: a hot model spreads) and our autoscaling policy (scaling/policy.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from hf_provider.scaling.config import APP_NAME
from hf_provider.scaling.options import deployment_options
from hf_provider.settings import Settings

log = logging.getLogger(__name__)

try:
    import ray
    from ray import serve
except ImportError as e:  # the optional extra
    raise ImportError(
        'Ray Serve is not installed: pip install "hf-provider[ray]" (it brings ray[serve])'
    ) from e

_DIRECTORY_TTL_S = 5.0  # a replica's entry outlives two missed refreshes, then a gone replica drops out
_REFRESH_S = 1.0


# Restarted wherever a node is left when its node is lost (its state is rebuilt by the replicas' next refresh,
# within a second), and calls made meanwhile are retried: a lost node costs the admin view nothing.
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ReplicaDirectory:
    """Each replica's model view, refreshed every second, so any replica can answer for all of them
    (GET /v1/admin/replicas, `hfp ray status`). A named actor: replicas find it by name; entries of replicas
    that stopped refreshing expire."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[float, dict[str, Any]]] = {}

    def put(self, replica: str, view: dict[str, Any]) -> None:
        self._views[replica] = (time.time() + _DIRECTORY_TTL_S, view)

    def drop(self, replica: str) -> None:
        self._views.pop(replica, None)

    def all(self) -> list[dict[str, Any]]:
        now = time.time()
        self._views = {k: v for k, v in self._views.items() if v[0] > now}
        return [view for _, (_, view) in sorted(self._views.items())]


def directory_name(app_name: str) -> str:
    return f"hfp-replicas-{app_name}"


def replica_views(app_name: str = APP_NAME) -> list[dict[str, Any]]:
    """Every replica's view (scaling/replica.py `replica_view`) from a driver connected to the cluster; empty
    when the application has no directory (not deployed, or no replica started yet)."""
    try:
        directory = ray.get_actor(directory_name(app_name), namespace="hfp")
    except ValueError:
        return []
    return list(ray.get(directory.all.remote(), timeout=30))


def _directory(app_name: str) -> Any:
    return ReplicaDirectory.options(
        name=directory_name(app_name), namespace="hfp", get_if_exists=True, lifetime="detached"
    ).remote()


def _settings_from(config: Settings | dict[str, Any]) -> Settings:
    """The replica's Settings: given whole (a local `hfp serve --ray`), or as hfp.toml's contents (a Serve
    config file from `hfp ray config`), where HFP_ variables of the replica's environment apply too."""
    if isinstance(config, Settings):
        return config
    from hf_provider.defaults import default_specs
    from hf_provider.settings import load_settings

    settings = load_settings(dict(config))
    if not settings.models:
        settings.models = default_specs()
    return settings


@serve.ingress()
class HFProviderReplica:
    def __init__(self, config: Settings | dict[str, Any]) -> None:
        import torch

        from hf_provider.scaling.budget import torch_threads
        from hf_provider.scaling.ray_compat import model_ids_pusher
        from hf_provider.scaling.replica import Advertiser, preload, replica_settings
        from hf_provider.server.factory import build

        push_models = model_ids_pusher()  # first: a Ray without the API fails here, before any model loads
        ctx = serve.get_replica_context()
        self.replica_id = ctx.replica_id.to_full_id_str()
        self.app_name = ctx.app_name
        settings = _settings_from(config)
        torch.set_num_threads(torch_threads(settings.ray))
        load_now = settings.load_on_start
        settings = replica_settings(settings, self.replica_id).model_copy(update={"load_on_start": False})
        self.hfp_app = build(settings)
        self.provider = self.hfp_app.state.provider
        self.node = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        if load_now:  # before Ray routes here: a replica added under load serves at once
            preload(self.provider)
        self.advertiser = Advertiser(self.provider, push_models)
        self._directory = _directory(self.app_name)
        self._stopping = False
        self.provider.supervisor.spawn("ray-replica", self._refresh_once, name="hfp-ray-replica")

    # Ray hooks ------------------------------------------------------------------------------------------------
    def __serve_build_asgi_app__(self) -> Any:
        from hf_provider.scaling.routes import ReplicaHeader, install

        install(self.hfp_app, self.all_replicas, self.replica_id)
        self.hfp_app.add_middleware(ReplicaHeader, replica_id=self.replica_id, on_request=self._on_request)
        return self.hfp_app

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Our queued-work signal for the autoscaling policy (scaling/policy.py)."""
        from hf_provider.scaling.replica import autoscaling_stats

        return autoscaling_stats(self.provider)

    def record_routing_stats(self) -> dict[str, list[str]]:
        """Pulled by Ray's controller every `routing_stats_period_s` for the request router: our hot models
        (scaling/router.py spreads their requests to more replicas)."""
        from hf_provider.scaling.replica import routing_stats

        return routing_stats(self.provider)

    def check_health(self) -> None:
        """A dead stage or background thread makes Ray replace this replica; a failing model load does not
        (it is reported, and the model's requests get its error)."""
        dead = {k: v for k, v in self.provider.supervisor.down().items() if v == "thread ended unexpectedly"}
        if dead:
            raise RuntimeError(f"background threads died: {', '.join(sorted(dead))}")

    def __del__(self) -> None:
        # The app's lifespan shutdown (run by Ray after this) closes the Provider.
        self._stopping = True
        with contextlib.suppress(Exception):  # Ray may be going down too; the entry then expires
            self._directory.drop.remote(self.replica_id)

    # for DeploymentHandle callers -------------------------------------------------------------------------------
    async def run(
        self, model: str, task: str, inputs: Any, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`handle.options(multiplexed_model_id=model).run.remote(model, task, inputs)`: the Provider's run,
        with the replica that served it."""
        self._on_model(serve.get_multiplexed_model_id())
        result = await self.provider.arun(model, task, inputs, params)
        return {"result": result, "replica": self.replica_id}

    # internals --------------------------------------------------------------------------------------------------
    async def all_replicas(self) -> list[dict[str, Any]]:
        return await self._directory.all.remote()

    def _on_request(self) -> None:
        """Before a request runs: the model it was routed for, advertised at once if not held yet."""
        self._on_model(serve.get_multiplexed_model_id())

    def _on_model(self, model_id: str | None) -> None:
        if model_id:
            self.advertiser.note_request(model_id)

    def _refresh_once(self) -> bool:
        if self._stopping:
            return False
        from hf_provider.scaling.replica import replica_view

        self.advertiser.sync()
        view = replica_view(self.provider, self.replica_id, self.node, self.node_id)
        self._directory.put.remote(self.replica_id, view)
        time.sleep(_REFRESH_S)
        return True


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for Serve config files (`import_path: hf_provider.ray:build_app`): `args.config`
    holds hfp.toml's contents."""
    config = args.get("config", {})
    if not isinstance(config, dict):
        raise ValueError("args.config must be a mapping: the contents of hfp.toml")
    return application(_settings_from(config), config)


def application(settings: Settings, config: Settings | dict[str, Any] | None = None) -> Any:
    """The bound Serve application for `settings` (replicas receive `config`, default the settings)."""
    opts = deployment_options(settings)
    return serve.deployment(HFProviderReplica).options(**opts).bind(settings if config is None else config)


def shutdown_directory(app_name: str = APP_NAME) -> None:
    """Remove the directory actor (detached, so it would outlive the application)."""
    with contextlib.suppress(ValueError):  # ValueError: never created
        ray.kill(ray.get_actor(directory_name(app_name), namespace="hfp"))
