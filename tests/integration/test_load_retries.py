"""A model whose Hub keeps failing: its loads retry within a budget, and after a failed load the next requests get
the failure at once (503 + Retry-After) instead of each starting the same load; an operator's load goes at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider import errors as E
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.hub_server import LocalHub, use_local_hub


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        yield h


def _revision_hits(hub: LocalHub) -> int:
    return sum("/revision/" in r.path for r in hub.requests)


def test_failed_load_backs_off_and_an_admin_load_retries_at_once(hub: LocalHub, tiny_models) -> None:
    hub.add_commit("org/cls", tiny_models["bert-cls"])
    hub.fail_next(2, status=502, path_contains="/revision/")
    spec = ModelSpec(name="cls", source="org/cls", tasks=["text-classification"])
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        with pytest.raises(E.Unavailable) as first:
            p.run("cls", "text-classification", "fine")
        assert "HTTP 502" in first.value.message
        assert _revision_hits(hub) == 2  # one retry: the budget's minimum for a lone caller, no more
        for _ in range(20):
            with pytest.raises(E.LoadBackoff) as later:
                p.run("cls", "text-classification", "fine")
            assert later.value.retry_after is not None and 0 < later.value.retry_after <= 1.0
            assert "HTTP 502" in later.value.message and later.value.code == "model_load_failed"
        assert _revision_hits(hub) == 2  # none of the 20 touched the Hub
        info = p.load("cls")  # the operator's load ignores the pause; the Hub answers again
        assert info["commit"] == hub.head("org/cls")
        assert p.run("cls", "text-classification", "fine")[0]["label"] in {"NEGATIVE", "POSITIVE"}
        assert p.manager.entry("cls").failures == 0


def test_backoff_doubles_with_each_failure_and_ends(hub: LocalHub, tiny_models) -> None:
    hub.add_commit("org/cls", tiny_models["bert-cls"])
    hub.fail_next(1000, status=404, path_contains="/revision/")  # permanent: never retried
    now = [100.0]
    spec = ModelSpec(name="cls", source="org/cls", tasks=["text-classification"])
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.manager.clock = lambda: now[0]
        pauses = []
        for _ in range(7):
            with pytest.raises(E.ModelLoadError):
                p.run("cls", "text-classification", "fine")
            with pytest.raises(E.LoadBackoff) as b:
                p.run("cls", "text-classification", "fine")
            pauses.append(round(b.value.retry_after, 3))
            now[0] += b.value.retry_after + 0.001
        assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
        assert _revision_hits(hub) == 7  # one per load: a 404 is not transient
