"""The pure parts of the Ray Serve adapter: [ray] settings, the replica count policy, per-replica budgets and the
deployment options. No Ray cluster is started here."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from hf_provider.errors import ConfigError
from hf_provider.scaling.budget import replica_gpu_budget, replica_host_budget, torch_threads
from hf_provider.scaling.config import RaySettings
from hf_provider.scaling.options import POLICY_PATH, deployment_options
from hf_provider.scaling.policy import QUEUE_WAIT, QueuedWorkPolicy, desired_replicas
from hf_provider.settings import load_settings

GiB = 1024**3


# settings: failure paths first --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ray", "expect"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas (3) exceeds max_replicas (2)"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"initial_replicas": 5, "max_replicas": 2}, "initial_replicas must lie between"),
        ({"memory": 0.5}, "is a fraction"),
        ({"memory": "lots"}, "unknown form"),
        ({"policy": "cpu"}, "queued_work"),
        ({"replicas": 2}, "Extra inputs are not permitted"),
    ],
)
def test_bad_ray_settings_name_the_field(ray: dict, expect: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"ray": ray})
    assert "ray" in e.value.message and expect in e.value.message


def test_ray_settings_parse_memory_to_bytes() -> None:
    assert load_settings({"ray": {"memory": "2GiB"}}).ray.memory == 2 * GiB


# policy -------------------------------------------------------------------------------------------------------------
def test_policy_refuses_non_positive_targets() -> None:
    with pytest.raises(ValueError):
        desired_replicas(1, 1, 0, [], 0.25)
    with pytest.raises(ValueError):
        QueuedWorkPolicy(target_queue_wait_s=0)


def test_policy_scales_from_zero_only_when_work_waits() -> None:
    assert desired_replicas(0, 0, 2, [], 0.25) == 0
    assert desired_replicas(0, 3, 2, [], 0.25) == 1


def test_policy_follows_the_larger_of_queue_wait_and_ongoing_requests() -> None:
    # few requests, but each replica's queue would make a new one wait 1 s against a 0.25 s target: 4x
    assert desired_replicas(1, 2, 16, [1.0], 0.25) == pytest.approx(4.0)
    # many requests with empty queues: Ray's own rule (ongoing over target)
    assert desired_replicas(2, 64, 16, [0.0, 0.0], 0.25) == pytest.approx(4.0)
    # idle: both low, so it shrinks (Ray bounds it by min_replicas)
    assert desired_replicas(2, 0, 16, [0.0, 0.0], 0.25) == 0
    # unusable samples are ignored, not propagated
    assert desired_replicas(2, 0, 16, [math.nan, -1.0, math.inf], 0.25) == 0


def test_policy_class_reads_ray_context() -> None:
    ctx = SimpleNamespace(
        current_num_replicas=2,
        total_num_requests=4.0,
        aggregated_metrics={QUEUE_WAIT: {"r1": 0.5, "r2": 0.3}},
        config=SimpleNamespace(get_target_ongoing_requests=lambda: 16.0),
        policy_state={},
    )
    want, state = QueuedWorkPolicy(target_queue_wait_s=0.2)(ctx)
    assert want == pytest.approx(2 * 0.4 / 0.2)
    assert state == {"hfp_desired": round(want, 3)}
    ctx.aggregated_metrics = None  # no replica reported yet: ongoing requests alone
    assert QueuedWorkPolicy()(ctx)[0] == pytest.approx(4.0 / 16.0)


# budgets ------------------------------------------------------------------------------------------------------------
def test_host_budget_is_the_memory_ray_reserves() -> None:
    ray = RaySettings(memory=4 * GiB)
    assert replica_host_budget(None, ray) == 4 * GiB
    assert replica_host_budget(0.5, ray) == 2 * GiB  # a fraction of the replica's share, not of the node
    assert replica_host_budget("1GiB", ray) == GiB
    assert replica_host_budget("8GiB", ray) == 4 * GiB  # never more than Ray reserved
    assert replica_host_budget("3GiB", RaySettings()) == "3GiB"  # no reservation: as written


def test_gpu_budget_is_the_share_of_a_shared_gpu() -> None:
    totals = {0: 80 * GiB}
    assert replica_gpu_budget(None, RaySettings(num_gpus=0.25), totals) == {0: 20 * GiB}
    assert replica_gpu_budget(0.5, RaySettings(num_gpus=0.5), totals) == {0: 20 * GiB}
    assert replica_gpu_budget("10GiB", RaySettings(num_gpus=0.5), totals) == {0: 10 * GiB}
    assert replica_gpu_budget(0.8, RaySettings(num_gpus=1), totals) == 0.8  # a whole GPU: as written
    assert replica_gpu_budget(0.8, RaySettings(num_gpus=0.5), {}) == 0.8  # no GPU visible


def test_torch_threads_follow_the_replicas_cpus() -> None:
    assert torch_threads(RaySettings(num_cpus=1)) == 1
    assert torch_threads(RaySettings(num_cpus=2.5)) == 3
    assert torch_threads(RaySettings(num_cpus=0.5)) == 1
    assert torch_threads(RaySettings(num_cpus=4, torch_threads=2)) == 2


# deployment options -------------------------------------------------------------------------------------------------
def test_deployment_options_carry_bounds_resources_and_draining() -> None:
    s = load_settings(
        {
            "server": {"request_timeout_s": 30},
            "ray": {"min_replicas": 0, "max_replicas": 3, "num_cpus": 2, "memory": "1GiB"},
        }
    )
    opts = deployment_options(s)
    auto = opts["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (0, 3)
    assert auto["policy"] == {"policy_function": POLICY_PATH, "policy_kwargs": {"target_queue_wait_s": 0.25}}
    assert opts["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.0, "memory": GiB}
    # a replica that goes waits for its requests at least as long as any request may run
    assert opts["graceful_shutdown_timeout_s"] >= 30
    ongoing = deployment_options(load_settings({"ray": {"policy": "ongoing_requests"}}))
    assert "policy" not in ongoing["autoscaling_config"]  # Ray's default policy
