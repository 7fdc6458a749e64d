"""The Provider's admin collaborator over a real ModelManager whose models cannot load: views, readiness,
operations and the generation walk of a completion, with no weights in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hf_provider import errors as E
from hf_provider.models.manager import ModelManager
from hf_provider.provider.admin import Admin
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.spec import ModelSpec


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    return folder


@pytest.fixture
def supervisor() -> Supervisor:
    return Supervisor()


@pytest.fixture
def admin(broken: Path, supervisor: Supervisor) -> Iterator[Admin]:
    specs = [
        ModelSpec(name="a", source=str(broken), tasks=["text-generation"], fallbacks=["cls", "b"]),
        ModelSpec(name="b", source=str(broken), tasks=["text-generation"]),
        ModelSpec(name="cls", source=str(broken), tasks=["text-classification"], keep_alive=0),
    ]
    manager = ModelManager(specs, allow_adhoc=False, supervisor=supervisor)
    try:
        yield Admin(manager, {"a": ["cls", "b"]}, supervisor)
    finally:
        manager.close()


def test_views_of_models_that_were_never_loaded(admin: Admin) -> None:
    assert admin.names() == ["a", "b", "cls"]
    assert [d["state"] for d in admin.describe()] == ["unloaded"] * 3
    assert admin.model("b")["name"] == "b" and admin.specs()["cls"].keep_alive == 0
    assert admin.models()["memory"]["host_used_bytes"] == 0
    assert not admin.is_ready("a")
    assert (admin.queued_items(), admin.in_flight_by_model(), admin.model_bytes(), admin.queue_loads()) == (
        0,
        {},
        {},
        {},
    )


def test_unknown_names_are_model_not_found_for_every_operation(admin: Admin) -> None:
    for op in (admin.model, admin.unload, admin.load, lambda n: admin.pin(n, True), admin.generation):
        with pytest.raises(E.ModelNotFound):
            op("nope")


def test_pin_and_unpin_show_in_the_view(admin: Admin) -> None:
    assert admin.pin("a", True)["pinned"] is True
    assert admin.pin("a", False)["pinned"] is False
    assert admin.unload("a")["state"] == "unloaded"  # not loaded: nothing to do, still its view


def test_readiness_waits_for_start_up_loads_then_names_what_is_down(
    admin: Admin, supervisor: Supervisor
) -> None:
    assert admin.readiness(started=False, load_on_start=False) == {"status": "loading", "waiting_for": []}
    # keep_alive 0 loads on demand: never waited for
    assert admin.readiness(started=True, load_on_start=True) == {
        "status": "loading",
        "waiting_for": ["a", "b"],
    }
    with pytest.raises(E.ModelLoadError):
        admin.load("a", force=False)
    with pytest.raises(E.ModelLoadError):
        admin.load("b", force=False)
    # a failed start-up load is not waited for; the server marks it down, and readiness says so
    supervisor.mark_down("model-loading/a", "it broke")
    assert admin.readiness(started=True, load_on_start=True) == {
        "status": "degraded",
        "down": {"model-loading/a": "it broke"},
    }
    supervisor.ok("model-loading/a")
    assert admin.readiness(started=True, load_on_start=True) == {
        "status": "ready",
        "models": ["a", "b", "cls"],
    }


def test_an_operators_load_does_not_wait_out_the_pause_after_a_failed_load(admin: Admin) -> None:
    with pytest.raises(E.ModelLoadError) as first:
        admin.load("b")
    assert not isinstance(first.value, E.LoadBackoff) and "cannot load" in admin.model("b")["error"]
    with pytest.raises(E.LoadBackoff):  # a start-up (or request) load within the pause fails at once
        admin.load("b", force=False)
    with pytest.raises(E.ModelLoadError) as again:
        admin.load("b")
    assert not isinstance(again.value, E.LoadBackoff)  # it tried again


def test_the_generation_walk_skips_fallbacks_that_do_not_generate_and_raises_the_last_refusal(
    admin: Admin,
) -> None:
    with pytest.raises(E.ModelLoadError) as exc:
        admin.generation("a", [{"role": "user", "content": "hi"}])
    assert exc.value.model == "b"  # `cls` does not generate: never loaded
    assert admin.model("cls")["loads"] == 0 and admin.model("cls")["error"] is None
    with pytest.raises(E.ModelLoadError) as alone:
        admin.generation("b")
    assert alone.value.model == "b"
