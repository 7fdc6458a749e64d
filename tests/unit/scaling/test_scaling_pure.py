"""The pure parts of the Ray Serve adapter: [ray] settings, the replica count policy, per-replica budgets and the
deployment options. No Ray cluster is started here."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from hf_provider.errors import ConfigError
from hf_provider.scaling.budget import replica_gpu_budget, replica_host_budget, torch_threads
from hf_provider.scaling.config import RaySettings
from hf_provider.scaling.options import POLICY_PATH, ROUTER_PATH, deployment_options
from hf_provider.scaling.policy import QUEUE_WAIT, QUEUED_TOKENS, QueuedWorkPolicy, desired_replicas
from hf_provider.scaling.spread import HOT, ReplicaLoad, spread
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


def test_policy_refuses_a_non_positive_token_target() -> None:
    with pytest.raises(ValueError, match="target_queued_tokens"):
        desired_replicas(1, 1, 16, [], 0.25, [100.0], 0)
    with pytest.raises(ValueError, match="target_queued_tokens"):
        QueuedWorkPolicy(target_queued_tokens=-1)


def test_generation_with_few_requests_but_many_tokens_scales_up() -> None:
    # 2 requests in flight on 1 replica: Ray's rule (2 / 16) and the wait estimate (an item rate averaged over
    # short generations: 0.1 s) both say one replica is plenty; the queues hold 3 x (100 + 2000) tokens
    tokens = [6300.0]
    assert desired_replicas(1, 2, 16, [0.1], 0.25) == pytest.approx(0.4)  # without the token signal
    assert desired_replicas(1, 2, 16, [0.1], 0.25, tokens, 2048) == pytest.approx(6300 / 2048)
    # the tokens of all replicas count: 2 replicas holding 3000 each against 2048 per replica want 3
    assert desired_replicas(2, 2, 16, [0.1, 0.1], 0.25, [3000.0, 3000.0], 2048) == pytest.approx(6000 / 2048)
    # scaled to zero, queued tokens alone bring one replica back
    assert desired_replicas(0, 0, 16, [], 0.25, [500.0], 2048) == 1
    # drained: the token signal no longer holds replicas up
    assert desired_replicas(3, 0, 16, [0.0] * 3, 0.25, [0.0] * 3, 2048) == 0


def test_encoder_path_is_unchanged_by_the_token_signal() -> None:
    # encoder models queue no generation tokens: every answer is what it was without the signal
    for current, ongoing, waits in [(1, 2, [1.0]), (2, 64, [0.0, 0.0]), (2, 0, [0.0, 0.0]), (0, 3, [])]:
        before = desired_replicas(current, ongoing, 16, waits, 0.25)
        assert desired_replicas(current, ongoing, 16, waits, 0.25, [0.0] * len(waits), 2048) == before


def test_policy_class_scales_on_reported_queued_tokens() -> None:
    ctx = SimpleNamespace(
        current_num_replicas=1,
        total_num_requests=3.0,
        aggregated_metrics={QUEUE_WAIT: {"r1": 0.05}, QUEUED_TOKENS: {"r1": 8192.0}},
        config=SimpleNamespace(get_target_ongoing_requests=lambda: 16.0),
        policy_state={},
    )
    assert QueuedWorkPolicy(target_queued_tokens=4096)(ctx)[0] == pytest.approx(2.0)
    # without a token target (the policy as configured before the signal existed) it follows the wait
    assert QueuedWorkPolicy()(ctx)[0] == pytest.approx(0.2)


# hot models spread (scaling/spread.py) ------------------------------------------------------------------------
def _loads(**replicas: tuple[set[str], set[str]]) -> dict[str, ReplicaLoad]:
    return {k: ReplicaLoad(frozenset(m), frozenset(h)) for k, (m, h) in replicas.items()}


def test_a_model_that_is_not_hot_everywhere_stays_on_its_replicas() -> None:
    assert spread("a", set(), _loads(r1=({"a"}, {"a"}))) == set()  # nothing to choose from: Ray waits
    loads = _loads(r1=({"a"}, set()), r2=({"b"}, set()))
    assert spread("a", {"r1"}, loads) == {"r1"}  # holder not hot: affinity as before
    loads = _loads(r1=({"a"}, {"a"}), r2=({"a"}, set()), r3=({"b"}, set()))
    assert spread("a", {"r1", "r2"}, loads) == {"r1", "r2"}  # one holder still has room
    # Ray's own fallback already chose replicas without the model: left to it
    assert spread("a", {"r3"}, loads) == {"r3"}
    # a candidate Ray knows that has not reported yet counts as not hot
    assert spread("a", {"r1", "r9"}, loads) == {"r1", "r9"}


def test_a_hot_model_spreads_to_the_least_loaded_other_replicas() -> None:
    loads = _loads(r1=({"a", "b"}, {"a"}), r2=({"c"}, set()), r3=({"c", "d"}, set()), r4=({"e"}, {"e"}))
    # r2 holds fewest models; r4 is hot with its own model and is left alone
    assert spread("a", {"r1"}, loads) == {"r1", "r2"}
    # everyone is hot: more replicas are the autoscaler's job, the router keeps the affinity
    busy = _loads(r1=({"a"}, {"a"}), r2=({"b"}, {"b"}))
    assert spread("a", {"r1"}, busy) == {"r1"}


def test_replica_load_reads_routing_stats_defensively() -> None:
    assert ReplicaLoad.of({"a"}, None) == ReplicaLoad(frozenset({"a"}), frozenset())
    assert ReplicaLoad.of({"a"}, {HOT: ["a", 3, None]}).hot == frozenset({"a"})  # garbage is ignored
    assert ReplicaLoad.of(set(), {"other": 1}).hot == frozenset()


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
    assert auto["policy"] == {
        "policy_function": POLICY_PATH,
        "policy_kwargs": {"target_queue_wait_s": 0.25, "target_queued_tokens": 4096},
    }
    assert opts["request_router_config"]["request_router_class"] == ROUTER_PATH
    assert opts["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.0, "memory": GiB}
    # a replica that goes waits for its requests at least as long as any request may run
    assert opts["graceful_shutdown_timeout_s"] >= 30
    ongoing = deployment_options(load_settings({"ray": {"policy": "ongoing_requests"}}))
    assert "policy" not in ongoing["autoscaling_config"]  # Ray's default policy
    plain = deployment_options(load_settings({"ray": {"spread_hot_models": False}}))
    assert "request_router_config" not in plain  # Ray's default router
