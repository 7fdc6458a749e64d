"""`[cache] disk_budget` (issue 11 part 6) against LocalHub: least recently used revisions go first, judged by the
provider's access records; loaded, locked and swapping revisions are never removed; the cache stays valid for
huggingface_hub (`scan_cache_dir` without warnings)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hf_provider import ModelSpec, Provider
from hf_provider.cache import pins
from hf_provider.cache.budget import budget_bytes, enforce
from hf_provider.cache.state import state_for
from hf_provider.cli.main import app
from hf_provider.hub.lock import lock_models
from hf_provider.hub.lockfile import write_lock
from hf_provider.hub.resolve import HubEnv, resolve
from hf_provider.settings import load_settings
from hf_provider.testing.hub_server import LocalHub, use_local_hub

TASKS = ["text-classification"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        for name in ("a", "b", "c"):
            h.add_commit(f"org/{name}", tiny_models["bert-cls"])
            h.add_commit(f"org/{name}", {"README.md": f"model {name}"})  # distinct commits and trees
        yield h


def _scan():
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(HubEnv.current().cache_dir)
    assert info.warnings == []  # still a cache `hf cache ls` reads without complaint
    return info


def _cached(info) -> set[str]:
    return {repo.repo_id for repo in info.repos for _ in repo.revisions}


def test_least_recently_used_by_the_providers_records_goes_first_not_by_atime(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    revs = {n: resolve(f"org/{n}") for n in "abc"}
    state = state_for(cache)
    # recorded use: b oldest, then c, then a; atimes say the opposite (a file read counts as use for atime)
    for n, t in (("b", 100.0), ("c", 200.0), ("a", 300.0)):
        state.touch(f"org/{n}", revs[n].commit, t)
    now = time.time()
    for n, t in (("b", now), ("c", now - 50), ("a", now - 100)):
        for f in (revs[n].path).iterdir():
            os.utime(os.path.realpath(f), (t, os.stat(os.path.realpath(f)).st_mtime))
    size = _scan().size_on_disk
    plan = enforce(cache, size - 1, dry_run=True)
    assert [r.repo_id for r in plan.remove] == ["org/b"]
    plan = enforce(cache, int(size * 0.4))
    assert [r.repo_id for r in plan.remove] == ["org/b", "org/c"] and plan.within
    assert _cached(_scan()) == {"org/a"}


def test_loaded_locked_and_swapping_revisions_are_never_removed(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    revs = {n: resolve(f"org/{n}") for n in "abc"}
    state = state_for(cache)
    for i, n in enumerate("abc"):
        state.touch(f"org/{n}", revs[n].commit, float(i))
    with pins.pinned("org/a", revs["a"].commit, "swapping"):
        plan = enforce(cache, 1, protect={("org/b", revs["b"].commit): {"locked"}})
    assert [r.repo_id for r in plan.remove] == ["org/c"] and not plan.within
    assert _cached(_scan()) == {"org/a", "org/b"}


def test_a_budget_that_fits_two_of_three_models_keeps_the_loaded_and_locked_ones(
    hub: LocalHub, tmp_path: Path
) -> None:
    """Done-means: load three models in turn under a budget that fits two; the cache ends within budget, the
    loaded and the locked revisions intact."""
    lock = tmp_path / "hfp.lock"
    write_lock(lock, lock_models([ModelSpec(name="a", source="org/a")]).entries)
    one = _scan().size_on_disk
    budget = int(one * 2.5)
    settings = load_settings(
        {"cache": {"disk_budget": budget}, "memory": {"freeze_heap": False}}, lock_file=str(lock)
    )
    specs = [ModelSpec(name=n, source=f"org/{n}", tasks=TASKS) for n in "abc"]
    t = [1000.0]
    p = Provider(specs, settings=settings)
    p.manager.fetcher.clock = lambda: t[0]
    try:
        for n in "abc":
            t[0] += 10
            p.load(n)
            if n != "c":
                p.unload(n)
            info = _scan()
            assert info.size_on_disk <= budget
        assert _cached(info) == {"org/a", "org/c"}  # a locked, c loaded; b was least recently used
        commits = {(repo.repo_id, rev.commit_hash) for repo in info.repos for rev in repo.revisions}
        assert ("org/c", p.manager.get("c").model.commit) in commits
        assert p.run("c", "text-classification", ["still loads"])  # the loaded model's files are intact
    finally:
        p.close()


def test_a_loaded_model_is_protected_without_any_explicit_pin(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    p = Provider([ModelSpec(name="a", source="org/a", tasks=TASKS)])
    try:
        p.load("a")
        resolve("org/b")
        state_for(cache).touch("org/b", resolve("org/b").commit, time.time() + 100)  # b is the newer use
        plan = enforce(cache, 1)
        assert {r.repo_id for r in plan.remove} == {"org/b"}
        assert _cached(_scan()) == {"org/a"}
    finally:
        p.close()


def test_budget_forms_and_errors(tmp_path: Path) -> None:
    import shutil

    assert budget_bytes("1GiB", tmp_path) == 1024**3
    assert budget_bytes(0.5, tmp_path) == shutil.disk_usage(tmp_path).total // 2
    with pytest.raises(ValueError, match="fraction"):
        budget_bytes(2.5, tmp_path)
    from hf_provider.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cache\.disk_budget"):
        load_settings({"cache": {"disk_budget": "lots"}})


def test_cli_cache_ls_verify_prune(hub: LocalHub, tmp_path: Path) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text('[cache]\ndisk_budget = "250KB"\n[[models]]\nname = "a"\nsource = "org/a"\n')
    runner = CliRunner()
    assert runner.invoke(app, ["lock", "--config", str(cfg)]).exit_code == 0
    resolve("org/b")
    r = runner.invoke(app, ["cache", "ls", "--config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    by_repo = {x["repo_id"]: x for x in data["revisions"]}
    assert by_repo["org/a"]["protected"] == ["locked"] and by_repo["org/b"]["protected"] == []
    assert data["budget"] == 250_000
    r = runner.invoke(app, ["cache", "ls", "--config", str(cfg)])
    assert "org/a" in r.stdout and "locked" in r.stdout
    r = runner.invoke(app, ["cache", "verify", "--config", str(cfg), "--json"])
    assert r.exit_code == 0 and {x["status"] for x in json.loads(r.stdout)} == {"ok"}
    blob = os.path.realpath(resolve("org/b").path / "model.safetensors")
    raw = bytearray(Path(blob).read_bytes())
    raw[-1] ^= 1
    Path(blob).write_bytes(bytes(raw))
    r = runner.invoke(app, ["cache", "verify", "--config", str(cfg), "--json"])
    bad = [x for x in json.loads(r.stdout) if x["status"] != "ok"]
    assert (
        r.exit_code == 1
        and [x["repo_id"] for x in bad] == ["org/b"]
        and "model.safetensors" in bad[0]["problems"]
    )
    r = runner.invoke(app, ["cache", "prune", "--config", str(cfg), "--dry-run", "--json"])
    assert [x["repo_id"] for x in json.loads(r.stdout)["removed"]] == ["org/b"]
    assert "org/b" in _cached(_scan())
    r = runner.invoke(app, ["cache", "prune", "--config", str(cfg)])
    assert r.exit_code == 0 and "removed org/b" in r.stdout
    assert _cached(_scan()) == {"org/a"}


def test_a_prune_between_the_fetch_and_the_weights_loading_spares_that_revision(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hf_provider.models.manager as manager_mod

    cache = HubEnv.current().cache_dir
    resolve("org/b")
    real = manager_mod.load_model
    pruned = []

    def prune_then_load(spec, **kw):  # another thread's download pruning the cache at the worst moment
        pruned.append(enforce(cache, 1))
        return real(spec, **kw)

    monkeypatch.setattr(manager_mod, "load_model", prune_then_load)
    p = Provider([ModelSpec(name="a", source="org/a", tasks=TASKS)])
    try:
        p.load("a")
        assert p.run("a", "text-classification", ["loaded from files nobody removed"])
    finally:
        p.close()
    assert [r.repo_id for r in pruned[0].remove] == ["org/b"]
    assert _cached(_scan()) == {"org/a"}


_HOLDER = """
import sys
from hf_provider import ModelSpec, Provider
p = Provider([ModelSpec(name="b", source="org/b", tasks=["text-classification"])])
p.load("b")
print("loaded", flush=True)
sys.stdin.read()
"""


def test_a_prune_in_another_process_keeps_what_a_running_server_has_loaded(
    hub: LocalHub, tmp_path: Path
) -> None:
    # `hfp cache prune` runs in a process of its own: the revisions a server holds reach it through the cache's
    # shared state, and stop counting when that server dies (killed: no chance to clean up after itself).
    import subprocess
    import sys

    for n in "bc":
        resolve(f"org/{n}")
    server = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "loaded"
        cfg = tmp_path / "hfp.toml"
        cfg.write_text("[cache]\ndisk_budget = 1\n")
        runner = CliRunner()
        r = runner.invoke(app, ["cache", "ls", "--config", str(cfg), "--json"])
        by_repo = {x["repo_id"]: x["protected"] for x in json.loads(r.stdout)["revisions"]}
        assert by_repo["org/b"] == ["loaded"] and by_repo["org/c"] == []
        r = runner.invoke(app, ["cache", "prune", "--config", str(cfg), "--json"])
        assert r.exit_code == 0 and [x["repo_id"] for x in json.loads(r.stdout)["removed"]] == ["org/c"]
        assert _cached(_scan()) == {"org/b"}
    finally:
        server.kill()
        server.wait(30)
    r = CliRunner().invoke(app, ["cache", "prune", "--config", str(cfg), "--json"])
    assert [x["repo_id"] for x in json.loads(r.stdout)["removed"]] == ["org/b"]


def test_a_server_of_local_folders_only_writes_no_cache_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]
) -> None:
    # Publishing pins (for prunes in other processes) is about Hub revisions: a local folder has none, so loading
    # one must not create a database in the user's Hugging Face folder.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.delenv("HF_ASSETS_CACHE", raising=False)
    spec = ModelSpec(name="local", source=str(tiny_models["bert-cls"]), tasks=TASKS)
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("local")
        p.unload("local")
    assert not list((tmp_path / "hf-home").rglob("*.sqlite"))
