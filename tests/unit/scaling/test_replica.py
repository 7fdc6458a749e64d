"""What runs in a Ray replica apart from Ray's calls (scaling/replica.py), on a real Provider with tiny models:
the advertised model set follows the byte budget, the load signal, the per-replica settings and the preload."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider.provider import Provider
from hf_provider.scaling.policy import IN_FLIGHT, QUEUE_WAIT, QUEUED_ITEMS, QUEUED_TOKENS
from hf_provider.scaling.replica import (
    Advertiser,
    autoscaling_stats,
    preload,
    replica_settings,
    routing_stats,
)
from hf_provider.scaling.spread import HOT
from hf_provider.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def one_model_budget(source: str) -> int:
    """A host budget that holds one tiny classifier and not two: 1.5x what the budget accounts for one (measured,
    so the test follows changes in how working memory is accounted)."""
    spec = {"source": source, "tasks": ["text-classification"], "device": "cpu"}
    with Provider(settings=load_settings({"models": [{"name": "probe", **spec}]}), allow_adhoc=False) as p:
        p.load("probe")
        accounted = p.admin.describe()[0]["accounted_bytes"]
    return int(accounted * 1.5)


@pytest.fixture(scope="module")
def budget(tiny_models: dict[str, Path]) -> int:
    return one_model_budget(str(tiny_models["bert-cls"]))


def _settings(tiny_models: dict[str, Path], tmp_path: Path, budget: int | None, **extra):
    spec = {"source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"], "device": "cpu"}
    return load_settings(
        {
            "home": str(tmp_path),
            "memory": {"host_budget": budget, "min_residency_s": 0},
            "models": [{"name": "cls-a", **spec}, {"name": "cls-b", **spec}],
            **extra,
        }
    )


@pytest.fixture
def provider(tiny_models: dict[str, Path], tmp_path: Path, budget: int):
    p = Provider(settings=_settings(tiny_models, tmp_path, budget), allow_adhoc=False)
    yield p
    p.close()


def test_unknown_model_ids_are_never_advertised(provider: Provider) -> None:
    pushed: list[list[str]] = []
    adv = Advertiser(provider, pushed.append, clock=Clock())
    adv.note_request("")
    adv.note_request("no-such-model")  # a header is the client's word: only configured names count
    assert pushed == []
    assert adv.sync() is True and pushed == [[]]


def test_advertised_set_follows_the_byte_budget(provider: Provider) -> None:
    clock = Clock()
    pushed: list[list[str]] = []
    adv = Advertiser(provider, pushed.append, clock=clock, refresh_s=10.0)
    adv.note_request("cls-a")  # routed here, not loaded yet: advertised before the load starts
    assert pushed == [["cls-a"]]
    adv.note_request("cls-a")  # already advertised: no second push
    assert len(pushed) == 1
    provider.run("cls-a", "text-classification", "a fine day")
    assert adv.sync() is False  # unchanged: nothing to tell Ray
    provider.run("cls-b", "text-classification", "a fine day")  # the budget holds one: cls-a is evicted
    assert adv.sync() is True and pushed[-1] == ["cls-b"]
    clock.t = 11.0  # a refresh is due even without a change, in case an update was lost
    assert adv.sync() is True and pushed[-1] == ["cls-b"]


def test_a_noted_model_that_never_loads_is_forgotten(provider: Provider) -> None:
    clock = Clock()
    pushed: list[list[str]] = []
    adv = Advertiser(provider, pushed.append, clock=clock)
    adv.note_request("cls-b")
    assert pushed[-1] == ["cls-b"]
    clock.t = provider.settings.memory.load_wait_s + 1
    assert adv.sync() is True and pushed[-1] == []


def test_load_signal_of_an_idle_replica(provider: Provider) -> None:
    provider.run("cls-a", "text-classification", "a fine day")
    stats = autoscaling_stats(provider)
    assert stats == {QUEUE_WAIT: 0.0, QUEUED_TOKENS: 0.0, QUEUED_ITEMS: 0.0, IN_FLIGHT: 0.0}
    assert all(isinstance(v, float) for v in stats.values())  # Ray refuses anything but numbers
    assert routing_stats(provider) == {HOT: []}  # nothing queued: no model is hot


def test_replica_settings_and_preload_stop_at_the_budget(
    tiny_models: dict[str, Path], tmp_path: Path, budget: int
) -> None:
    base = _settings(tiny_models, tmp_path, budget=None, ray={"memory": budget})
    s = replica_settings(base, "SERVE_REPLICA::hfp#hf-provider#abc")
    assert s.home == base.home / "ray" / "SERVE_REPLICA_hfp_hf-provider_abc"  # own history and error reports
    assert s.memory.host_budget == budget  # what Ray reserves is the budget
    assert base.memory.host_budget is None  # the shared settings are not changed
    with Provider(settings=s, allow_adhoc=False) as p:
        assert preload(p) == ["cls-a"]  # cls-b does not fit beside it: it loads where it is routed
        assert [d["name"] for d in p.admin.describe() if d["state"] == "ready"] == ["cls-a"]
