"""hfp.lock (issue 11 part 1) against LocalHub: lock, then serve exactly the locked commits and files after the
branch moves; refuse what the lock lacks; report drift and `outdated`; two machines load identical bytes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hf_provider import ModelSpec, Provider
from hf_provider.cli.main import app
from hf_provider.errors import ConfigError, LockDrift
from hf_provider.hub.lock import lock_models, outdated
from hf_provider.hub.lockfile import LockEntry, dumps, read_lock, update_entry, write_lock
from hf_provider.hub.resolve import resolve
from hf_provider.settings import load_settings
from hf_provider.testing.hub_server import LocalHub, use_local_hub

REPO = "org/cls"
TASKS = ["text-classification"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "machine-a")
        h.add_commit(REPO, tiny_models["bert-cls"], tag="v1")
        yield h


def _spec(revision: str | None = None) -> ModelSpec:
    return ModelSpec(name="cls", source=REPO, revision=revision, tasks=TASKS)


def _move_main(hub: LocalHub) -> str:
    """A new commit on main with changed weights and config."""
    cfg = json.loads(hub._repos[REPO].commits[hub.head(REPO)].files["config.json"].data)
    cfg["hfp_test_version"] = 2
    st = hub._repos[REPO].commits[hub.head(REPO)].files["model.safetensors"].data
    return hub.add_commit(REPO, {"config.json": json.dumps(cfg), "model.safetensors": st[:-4] + b"\0\0\0\1"})


def _machine(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))


def _lock(path: Path, *specs: ModelSpec) -> dict[str, LockEntry]:
    entries = lock_models(specs).entries
    write_lock(path, entries)
    return entries


def test_lock_records_commit_and_every_file_with_size_and_sha256(hub: LocalHub, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    _lock(lock, _spec())
    (entry,) = read_lock(lock).values()
    assert entry.name == "cls" and entry.source == REPO and entry.revision == "main"
    assert entry.commit == hub.head(REPO) and entry.code_revision is None
    served = hub._repos[REPO].commits[entry.commit].files
    assert {f.path for f in entry.files} == set(served)
    for f in entry.files:
        assert f.size == len(served[f.path].data)
        assert f.sha256 == hashlib.sha256(served[f.path].data).hexdigest()


def test_locked_serves_the_locked_commit_after_the_branch_moves(hub: LocalHub, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    locked = _lock(lock, _spec())["cls"]
    moved = _move_main(hub)
    p = Provider([_spec()], locked=True, lock_file=lock)
    try:
        assert p.load("cls")["commit"] == locked.commit != moved
    finally:
        p.close()
    unlocked = Provider([_spec()])
    try:
        assert unlocked.load("cls")["commit"] == moved
    finally:
        unlocked.close()


def test_locked_refuses_a_branch_without_a_lock_entry_but_takes_a_full_commit(
    hub: LocalHub, tmp_path: Path
) -> None:
    lock = tmp_path / "hfp.lock"
    with pytest.raises(ConfigError, match=r"'cls' asks revision 'main'.*no entry.*hfp lock"):
        Provider([_spec()], locked=True, lock_file=lock)
    with pytest.raises(ConfigError, match="'cls' asks revision 'v1'"):
        Provider([_spec("v1")], locked=True, lock_file=lock)
    p = Provider([_spec(hub.head(REPO))], locked=True, lock_file=lock)  # a commit pins itself
    try:
        assert p.load("cls")["commit"] == hub.head(REPO)
    finally:
        p.close()


def test_config_changed_since_the_lock_is_refused_naming_both_sides(hub: LocalHub, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    _lock(lock, _spec())
    with pytest.raises(ConfigError, match=r"config asks revision 'v1', the lock was made for 'main'"):
        Provider([_spec("v1")], locked=True, lock_file=lock)
    other = ModelSpec(name="cls", source="org/other", tasks=TASKS)
    with pytest.raises(ConfigError, match="source 'org/other', the lock 'org/cls'"):
        Provider([other], locked=True, lock_file=lock)


def test_a_lock_that_disagrees_with_the_hub_is_drift_not_corruption(hub: LocalHub, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    entry = _lock(lock, _spec())["cls"]
    bad = tuple(f if f.path != "config.json" else type(f)(f.path, f.size, "0" * 64) for f in entry.files)
    update_entry(lock, LockEntry(entry.name, entry.source, entry.revision, entry.commit, None, bad))
    p = Provider([_spec()], locked=True, lock_file=lock)
    try:
        with pytest.raises(LockDrift, match=r"config\.json"):
            p.load("cls")
    finally:
        p.close()
    missing = (*entry.files, type(entry.files[0])("extra.bin", 3, "1" * 64))
    update_entry(lock, LockEntry(entry.name, entry.source, entry.revision, entry.commit, None, missing))
    p = Provider([_spec()], locked=True, lock_file=lock)
    try:
        with pytest.raises(LockDrift, match=r"extra.bin is not in commit"):
            p.load("cls")
    finally:
        p.close()


def test_same_lock_on_two_machines_gives_byte_identical_files(
    hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "hfp.lock"
    _lock(lock, _spec())
    a = resolve(REPO, read_lock(lock)["cls"].commit).path
    _move_main(hub)  # the branch moves between the two machines' installs
    _machine(monkeypatch, tmp_path / "machine-b")
    p = Provider([_spec()], locked=True, lock_file=lock)
    try:
        p.load("cls")
        b = Path(p.manager.get("cls").model.path)
    finally:
        p.close()
    assert b != a and str(tmp_path / "machine-b") in str(b)

    def digests(root: Path) -> dict[str, str]:
        return {
            q.relative_to(root).as_posix(): hashlib.sha256(q.read_bytes()).hexdigest()
            for q in root.rglob("*")
            if q.is_file()
        }

    assert digests(a) == digests(b) and digests(a)
    # and locking the same commit on machine B writes the same bytes
    again = tmp_path / "again.lock"
    write_lock(again, lock_models([_spec(read_lock(lock)["cls"].commit)]).entries)
    entry_b = read_lock(again)["cls"]
    assert entry_b.files == read_lock(lock)["cls"].files


def test_outdated_lists_models_whose_revision_moved(hub: LocalHub, tmp_path: Path) -> None:
    lock = tmp_path / "hfp.lock"
    specs = [_spec(), ModelSpec(name="tagged", source=REPO, revision="v1", tasks=TASKS)]
    entries = _lock(lock, *specs)
    rows = {r.name: r for r in outdated(specs, entries)}
    assert rows["cls"].status == rows["tagged"].status == "up to date"
    moved = _move_main(hub)
    rows = {r.name: r for r in outdated(specs, read_lock(lock))}
    assert rows["cls"].status == "outdated" and rows["cls"].upstream == moved
    assert rows["cls"].locked == entries["cls"].commit
    assert rows["tagged"].status == "up to date"
    new = ModelSpec(name="new", source=REPO, tasks=TASKS)
    assert {r.name: r.status for r in outdated([new], {})} == {"new": "not locked"}


def test_cli_lock_outdated_and_serve_settings(hub: LocalHub, tmp_path: Path) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f'[[models]]\nname = "cls"\nsource = "{REPO}"\ntasks = ["text-classification"]\n')
    runner = CliRunner()
    r = runner.invoke(app, ["lock", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    first = (tmp_path / "hfp.lock").read_bytes()
    assert read_lock(tmp_path / "hfp.lock")["cls"].commit == hub.head(REPO)
    r = runner.invoke(app, ["lock", "--config", str(cfg)])
    assert (tmp_path / "hfp.lock").read_bytes() == first  # deterministic
    r = runner.invoke(app, ["outdated", "--config", str(cfg), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["status"] == "up to date"
    _move_main(hub)
    r = runner.invoke(app, ["outdated", "--config", str(cfg), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)[0]["status"] == "outdated"
    r = runner.invoke(app, ["outdated", "--config", str(cfg)])
    assert "outdated" in r.stdout and "cls" in r.stdout
    assert load_settings(cfg).lock_file == tmp_path / "hfp.lock"


def test_lock_file_format_is_deterministic_and_validated(tmp_path: Path) -> None:
    e1 = LockEntry(
        "b",
        REPO,
        "main",
        "a" * 40,
        None,
        (
            {"path": "z.json", "size": 1, "sha256": "c" * 64},
            {"path": "a.json", "size": 2, "sha256": "d" * 64},
        ),
    )
    e2 = LockEntry("a", REPO, "v1", "b" * 40, "b" * 40, ())
    assert dumps([e1, e2]) == dumps({"b": e1, "a": e2})
    path = tmp_path / "hfp.lock"
    write_lock(path, [e1, e2])
    assert read_lock(path) == {"a": e2, "b": e1}
    assert [f.path for f in read_lock(path)["b"].files] == ["a.json", "z.json"]
    assert read_lock(tmp_path / "missing.lock") == {}
    (tmp_path / "bad.lock").write_text("version = 1\n[[model]]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"not a valid hfp lock.*hfp lock"):
        read_lock(tmp_path / "bad.lock")
    with pytest.raises(ValueError, match="40-hex"):
        LockEntry("x", REPO, "main", "main")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp file left behind


def test_concurrent_update_entry_loses_no_entry(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "hfp.lock"

    def add(i: int) -> None:
        update_entry(path, LockEntry(f"m{i:02d}", REPO, "main", f"{i:040x}"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(read_lock(path)) == [f"m{i:02d}" for i in range(16)]


def test_locked_loads_offline_from_the_cache_with_no_request(
    hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    lock = tmp_path / "hfp.lock"
    locked = _lock(lock, _spec())["cls"]
    _move_main(hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.clear_requests()
    p = Provider([_spec()], locked=True, lock_file=lock)
    try:
        assert p.load("cls")["commit"] == locked.commit
    finally:
        p.close()
    assert hub.requests == []


def test_trust_remote_code_models_record_the_code_revision(hub: LocalHub) -> None:
    trusted = ModelSpec(name="custom", source=REPO, revision="v1", trust_remote_code=True)
    plain = ModelSpec(name="plain", source=REPO, revision="v1")
    entries = lock_models([trusted, plain]).entries
    assert entries["custom"].code_revision == entries["custom"].commit == hub._repos[REPO].tags["v1"]
    assert entries["plain"].code_revision is None
