"""`hfp ray config`: the file it writes is accepted by Ray's own Serve config schema (what `serve deploy` checks),
carries hfp.toml to the replicas without its secrets, and a bad [ray] table fails before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("ray.serve.schema")
pytestmark = [
    pytest.mark.ray,
    # set on purpose: Ray checks look_back_period_s against it (scaling/options.py)
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]

from hf_provider.cli.main import app  # noqa: E402

TOML = """
[server]
port = 9000
api_key = "sk-do-not-leak"
request_timeout_s = 60

[ray]
min_replicas = 1
max_replicas = 4
num_cpus = 2
memory = "3GiB"
target_queue_wait_s = 0.5

[[models]]
name = "minilm"
source = "sentence-transformers/all-MiniLM-L6-v2"
tasks = ["embeddings"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hfp.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_bad_ray_table_fails_before_writing(tmp_path: Path) -> None:
    bad = _write(tmp_path, "[ray]\nmin_replicas = 3\nmax_replicas = 1\n")
    r = CliRunner().invoke(app, ["ray", "config", "--config", str(bad)])
    assert r.exit_code == 2
    assert "min_replicas (3) exceeds max_replicas (1)" in r.output
    assert "applications" not in r.output


def test_written_config_is_accepted_by_rays_schema(tmp_path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    r = CliRunner().invoke(
        app, ["ray", "config", "--config", str(_write(tmp_path, TOML)), "--host", "0.0.0.0"]
    )
    assert r.exit_code == 0, r.output
    assert "sk-do-not-leak" not in r.stdout
    assert "server.api_key left out" in r.stderr
    schema = ServeDeploySchema.model_validate(yaml.safe_load(r.stdout))
    assert (schema.http_options.host, schema.http_options.port) == ("0.0.0.0", 9000)
    (application,) = schema.applications
    assert application.import_path == "hf_provider.ray:build_app"
    assert application.args["config"]["models"][0]["name"] == "minilm"
    assert "api_key" not in application.args["config"]["server"]
    (dep,) = application.deployments
    assert dep.name == "hf-provider"
    assert dep.ray_actor_options.num_cpus == 2 and dep.ray_actor_options.memory == 3 * 1024**3
    assert dep.graceful_shutdown_timeout_s >= 60  # drains longer than any request may run
    auto = dep.autoscaling_config
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 4)
    assert auto["policy"]["policy_function"] == "hf_provider.scaling.policy:QueuedWorkPolicy"
    assert auto["policy"]["policy_kwargs"] == {"target_queue_wait_s": 0.5, "target_queued_tokens": 4096}
    from ray.serve.config import RequestRouterConfig

    router = RequestRouterConfig.model_validate(dep.request_router_config)
    router._serialize_request_router_cls()  # what Ray does at deploy: imports the class by its path
    assert router.get_request_router_class().__name__ == "HotModelRouter"
    assert router.request_router_class == "hf_provider.scaling.router:HotModelRouter"
    assert router.request_routing_stats_period_s == 1.0


def test_builder_refuses_args_that_are_not_a_config() -> None:
    from hf_provider.ray import build_app

    with pytest.raises(ValueError, match=r"args\.config must be a mapping"):
        build_app({"config": "hfp.toml"})


def test_serve_on_ray_refuses_bad_config_and_taken_port_before_starting_ray(tmp_path: Path) -> None:
    import socket

    import ray

    bad = _write(tmp_path, "[ray]\nmin_replicas = 2\nmax_replicas = 1\n")
    r = CliRunner().invoke(app, ["serve", "--ray", "--config", str(bad)])
    assert r.exit_code == 2 and "min_replicas (2) exceeds max_replicas (1)" in r.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--ray", "--port", str(port)])
    assert r.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in r.output
    assert not ray.is_initialized()  # both refused before any Ray process started
