"""Swaps on a `--locked` server rewrite the model's lock entry, so a restart serves what was last swapped in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hf_provider.hub.lockfile import entry_from_snapshot, read_lock, write_lock
from hf_provider.hub.resolve import resolve
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.hub_server import LocalHub, use_local_hub

TASK = "text-classification"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> Iterator[Any]:
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        h.v1 = h.add_commit("org/cls", tiny_models["bert-cls"], tag="v1")
        yield h


def locked(lock: Path, **spec_fields: Any) -> Provider:
    spec = ModelSpec(name="cls", source="org/cls", revision="main", tasks=[TASK], device="cpu", **spec_fields)
    return Provider([spec], settings=load_settings({"metrics_enabled": False}), locked=True, lock_file=lock)


def test_swap_and_rollback_rewrite_the_lock_entry(hub: Any, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    snap = resolve("org/cls", hub.v1)
    write_lock(lock, [entry_from_snapshot("cls", "org/cls", "main", hub.v1, snap.path)])
    v2 = hub.add_commit("org/cls", {"README.md": b"moved on"}, tag="v2")  # main moves after the lock
    with locked(lock) as p:
        assert p.load("cls")["commit"] == hub.v1  # the lock, not the branch
        p.lifecycle.swap("cls", "v2")
        entry = read_lock(lock)["cls"]
        # the configured revision stays in the entry: a restart passes the config/lock check
        assert (entry.commit, entry.revision) == (v2, "main")
        assert entry.file("config.json") is not None and entry.file("model.safetensors") is not None
        assert p.lifecycle.status("cls")["revision"] == "main"  # a reload goes through the lock too
    with locked(lock) as p:  # a restart serves what was swapped in
        assert p.load("cls")["commit"] == v2
        p.lifecycle.swap("cls", "v1")
        p.lifecycle.rollback("cls")
        assert read_lock(lock)["cls"].commit == v2
        p.lifecycle.rollback("cls")
        assert read_lock(lock)["cls"].commit == hub.v1


def test_a_swap_of_a_remote_code_model_pins_its_code_to_the_commit_swapped_in(
    hub: Any, tmp_path: Path
) -> None:
    # `hfp lock` records code_revision for trust_remote_code models; a rewrite after a swap must not drop it, or a
    # locked restart would run whatever code the repo's default branch holds then.
    lock = tmp_path / "hfp.lock"
    snap = resolve("org/cls", hub.v1)
    write_lock(lock, [entry_from_snapshot("cls", "org/cls", "main", hub.v1, snap.path, code_revision=hub.v1)])
    v2 = hub.add_commit("org/cls", {"README.md": b"moved on"}, tag="v2")
    with locked(lock, trust_remote_code=True) as p:
        p.load("cls")
        p.lifecycle.swap("cls", "v2")
        assert read_lock(lock)["cls"].code_revision == v2
        p.lifecycle.rollback("cls")
        assert (read_lock(lock)["cls"].commit, read_lock(lock)["cls"].code_revision) == (hub.v1, hub.v1)
