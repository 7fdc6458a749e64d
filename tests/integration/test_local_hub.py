"""resolve() and the real huggingface_hub client against LocalHub, a Hub-protocol server on loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hf_provider.errors import ModelNotFound, Unavailable
from hf_provider.hub.resolve import HubRetry, resolve
from hf_provider.testing.hub_server import LocalHub, use_local_hub

NO_SLEEP = HubRetry(sleep=lambda _s: None)


def _cfg(**kw: object) -> bytes:
    return json.dumps({"model_type": "bert", **kw}).encode()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        yield h


def _go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_main_tag_and_older_commit_resolve_to_their_own_commits(hub: LocalHub) -> None:
    c1 = hub.add_commit("org/model", {"config.json": _cfg(v=1), "model.safetensors": b"w1" * 50}, tag="v1")
    c2 = hub.add_commit("org/model", {"config.json": _cfg(v=2), "model.safetensors": b"w2" * 50})

    main = resolve("org/model", "main")
    assert main.kind == "hub" and main.commit == c2 == hub.head("org/model")
    assert main.path.name == c2 and main.path.parent.name == "snapshots"
    tagged = resolve("org/model", "v1")
    older = resolve("org/model", c1)
    assert tagged.commit == older.commit == c1
    assert json.loads((tagged.path / "config.json").read_bytes())["v"] == 1
    assert json.loads((main.path / "config.json").read_bytes())["v"] == 2
    assert (main.path / "model.safetensors").read_bytes() != (older.path / "model.safetensors").read_bytes()
    assert resolve("org/model", None).commit == c2  # None means main


def test_new_commit_on_main_is_picked_up(hub: LocalHub) -> None:
    first = hub.add_commit("org/model", {"config.json": _cfg(v=1)})
    assert resolve("org/model", "main").commit == first
    second = hub.add_commit("org/model", {"config.json": _cfg(v=2)})
    r = resolve("org/model", "main")
    assert r.commit == second != first
    assert json.loads((r.path / "config.json").read_bytes())["v"] == 2
    hub.clear_requests()
    assert resolve("org/model", "main").commit == second  # up to date: one metadata call, no download
    assert [(x.method, x.path) for x in hub.requests] == [("GET", "/api/models/org/model/revision/main")]


def test_offline_after_download_makes_no_request(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = hub.add_commit("org/model", {"config.json": _cfg(), "model.safetensors": b"w" * 10}, tag="v1")
    online = resolve("org/model", "main")
    resolve("org/model", "v1")
    _go_offline(monkeypatch)
    hub.clear_requests()
    for rev in ("main", "v1", c1, None):
        r = resolve("org/model", rev)
        assert (r.commit, r.path) == (c1, online.path)
    assert hub.requests == []


def test_offline_follows_env_even_if_client_was_imported_online(hub: LocalHub, monkeypatch) -> None:
    hub.add_commit("org/model", {"config.json": _cfg()})
    resolve("org/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub.constants still says online
    hub.clear_requests()
    assert resolve("org/model").commit == hub.head("org/model")
    assert hub.requests == []


def test_online_follows_env_even_if_client_was_imported_offline(hub: LocalHub, monkeypatch) -> None:
    from huggingface_hub import constants

    hub.add_commit("org/model", {"config.json": _cfg()})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as when imported under HF_HUB_OFFLINE=1
    assert resolve("org/model").commit == hub.head("org/model")
    assert constants.HF_HUB_OFFLINE is True  # put back afterwards


def test_commit_already_cached_needs_no_request(hub: LocalHub) -> None:
    c1 = hub.add_commit("org/model", {"config.json": _cfg()})
    resolve("org/model", c1)
    hub.clear_requests()
    assert resolve("org/model", c1).commit == c1
    assert hub.requests == []


def test_offline_with_nothing_cached_says_what_to_do(hub: LocalHub, monkeypatch) -> None:
    hub.add_commit("org/model", {"config.json": _cfg()})
    _go_offline(monkeypatch)
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set; run once online") as e:
        resolve("org/model", "main")
    assert e.value.model == "org/model"
    assert hub.requests == []


def test_offline_revision_never_fetched_is_not_found(hub: LocalHub, monkeypatch) -> None:
    hub.add_commit("org/model", {"config.json": _cfg()}, tag="v1")
    resolve("org/model", "main")
    _go_offline(monkeypatch)
    with pytest.raises(ModelNotFound, match="not in the local cache"):
        resolve("org/model", "v1")


def test_unknown_repo_and_revision(hub: LocalHub) -> None:
    hub.add_commit("org/model", {"config.json": _cfg()})
    with pytest.raises(ModelNotFound, match="No Hub repo 'org/missing'"):
        resolve("org/missing", "main")
    with pytest.raises(ModelNotFound, match="no revision 'nope'"):
        resolve("org/model", "nope")
    with pytest.raises(ModelNotFound, match="no revision"):
        resolve("org/model", "f" * 40)
    assert all(r.status == 404 for r in hub.requests)  # 4xx: asked once each, never retried
    assert len(hub.requests) == 3


def test_safetensors_preferred_over_bin(hub: LocalHub) -> None:
    hub.add_commit(
        "org/both",
        {
            "config.json": _cfg(),
            "model.safetensors": b"s" * 8,
            "pytorch_model.bin": b"b" * 8,
            "tokenizer.json": b"{}",
            "vocab.txt": b"a",
            "spiece.model": b"m",
            "README.md": b"# card",
            "onnx/model.onnx": b"o",
        },
    )
    r = resolve("org/both", "main")
    got = sorted(p.relative_to(r.path).as_posix() for p in r.path.rglob("*") if p.is_file())
    assert got == ["config.json", "model.safetensors", "spiece.model", "tokenizer.json", "vocab.txt"]
    assert not any("pytorch_model.bin" in p for p in hub.paths)

    hub.add_commit("org/binonly", {"config.json": _cfg(), "pytorch_model.bin": b"b" * 8})
    r = resolve("org/binonly", "main")
    assert (r.path / "pytorch_model.bin").read_bytes() == b"b" * 8


def test_offline_keeps_the_safetensors_choice(hub: LocalHub, monkeypatch) -> None:
    hub.add_commit("org/both", {"config.json": _cfg(), "model.safetensors": b"s", "pytorch_model.bin": b"b"})
    online = resolve("org/both")
    _go_offline(monkeypatch)
    assert resolve("org/both").path == online.path  # a missing .bin does not make the snapshot "incomplete"


def test_explicit_allow_patterns(hub: LocalHub) -> None:
    hub.add_commit("org/model", {"config.json": _cfg(), "model.safetensors": b"s", "pytorch_model.bin": b"b"})
    r = resolve("org/model", allow_patterns=["*.bin", "config.json"])
    assert sorted(p.name for p in r.path.iterdir()) == ["config.json", "pytorch_model.bin"]


def test_5xx_twice_then_ok_is_retried(hub: LocalHub, caplog: pytest.LogCaptureFixture) -> None:
    c1 = hub.add_commit("org/model", {"config.json": _cfg()})
    hub.fail_next(2, status=503, path_contains="/api/models/org/model/revision/")
    waits: list[float] = []
    with caplog.at_level("WARNING", logger="hf_provider.hub.resolve"):
        r = resolve(
            "org/model", "main", retry=HubRetry(initial_wait=0.01, sleep=waits.append, jitter=lambda: 1.0)
        )
    assert r.commit == c1
    assert [x.status for x in hub.requests if "/revision/" in x.path] == [503, 503, 200]
    assert len(waits) == 2 and waits[1] > waits[0]
    assert sum("retry" in m for m in caplog.messages) == 2


def test_hub_down_falls_back_to_cache_then_unavailable(hub: LocalHub) -> None:
    c1 = hub.add_commit("org/model", {"config.json": _cfg()})
    resolve("org/model")
    hub.fail_next(10, status=500, path_contains="/revision/")
    assert resolve("org/model", retry=NO_SLEEP).commit == c1  # stale but served, with a warning
    hub.add_commit("org/other", {"config.json": _cfg()})
    with pytest.raises(Unavailable, match="unreachable"):
        resolve("org/other", retry=HubRetry(attempts=2, sleep=lambda _s: None))


def test_connection_refused_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = LocalHub()
    use_local_hub(monkeypatch, hub, tmp_path / "home")
    hub.stop()  # nothing listens on that port any more
    with pytest.raises(Unavailable):
        resolve("org/model", retry=HubRetry(attempts=2, sleep=lambda _s: None))


def test_corrupt_file_keeps_advertised_hashes(hub: LocalHub) -> None:
    """huggingface_hub checks only sizes on download; a corrupt file lands in the cache unnoticed."""
    from huggingface_hub import HfApi, hf_hub_download

    weights = b"real weights" * 10
    c1 = hub.add_commit("org/model", {"config.json": _cfg(), "model.safetensors": weights})
    hub.corrupt("org/model", "model.safetensors")
    r = resolve("org/model")
    served = (r.path / "model.safetensors").read_bytes()
    api = HfApi(endpoint=hub.url)
    info = api.model_info("org/model", revision=c1, files_metadata=True)
    lfs = {s.rfilename: s.lfs for s in info.siblings}["model.safetensors"]
    assert len(served) == len(weights) and served != weights
    assert lfs.sha256 == hashlib.sha256(weights).hexdigest() != hashlib.sha256(served).hexdigest()
    # a small (non-LFS) file can be corrupted too, at one commit; its ETag stays the true git sha1
    hub.corrupt("org/model", "config.json", commit=c1)
    cache = r.path.parents[2]
    p = hf_hub_download(
        "org/model", "config.json", revision=c1, endpoint=hub.url, cache_dir=cache, force_download=True
    )
    assert Path(p).read_bytes() != _cfg()
    check = api.verify_repo_checksums("org/model", revision=c1, cache_dir=cache)
    assert {(m["path"], m["algorithm"]) for m in check.mismatches} == {
        ("config.json", "git-sha1"),
        ("model.safetensors", "sha256"),
    }


def test_protocol_refs_commits_tree_and_errors(hub: LocalHub) -> None:
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    c1 = hub.add_commit("org/model", {"config.json": _cfg(), "sub/a.txt": b"a"}, tag="v1")
    c2 = hub.add_commit("org/model", {"b.txt": b"b"}, branch="dev")
    api = HfApi(endpoint=hub.url)
    refs = api.list_repo_refs("org/model")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": c1, "dev": c2}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": c1}
    assert [c.commit_id for c in api.list_repo_commits("org/model", revision="dev")] == [c2, c1]
    assert sorted(api.list_repo_files("org/model", revision="dev")) == ["b.txt", "config.json", "sub/a.txt"]
    assert api.model_info("org/model").sha == c1
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/nope")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/model", revision="nope")
    with pytest.raises(RemoteEntryNotFoundError):
        next(iter(api.list_repo_tree("org/model", path_in_repo="nothing", revision=c1)))
    r = httpx.get(f"{hub.url}/org/model/resolve/main/missing.txt")
    assert (r.status_code, r.headers["X-Error-Code"], r.headers["X-Repo-Commit"]) == (
        404,
        "EntryNotFound",
        c1,
    )
    r = httpx.get(f"{hub.url}/org/model/resolve/main/config.json", headers={"Range": "bytes=2-5"})
    assert (r.status_code, r.content) == (206, _cfg()[2:6])
    r = httpx.head(f"{hub.url}/org/model/resolve/v1/config.json")
    assert r.headers["X-Repo-Commit"] == c1 and r.headers["Content-Length"] == str(len(_cfg()))


def test_add_commit_from_folder(hub: LocalHub, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "1_Pooling").mkdir(parents=True)
    (src / "config.json").write_bytes(_cfg())
    (src / "1_Pooling" / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"st")
    hub.add_commit("org/st", src)
    r = resolve("org/st")
    assert (r.path / "1_Pooling" / "config.json").read_text() == "{}"
    assert (r.path / "model.safetensors").read_bytes() == b"st"
