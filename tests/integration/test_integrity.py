"""Integrity and self-repair (issue 11 part 7) against LocalHub: a flipped byte in a cached safetensors file is
detected before the load, quarantined, and only that file is downloaded again; offline it is `cache_corrupt`."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from hf_provider import ModelSpec, Provider
from hf_provider.cache.integrity import ensure_intact, safetensors_problem
from hf_provider.cache.state import state_for
from hf_provider.errors import CacheCorrupt
from hf_provider.hub.fetch import Fetcher
from hf_provider.hub.resolve import HubEnv, resolve
from hf_provider.testing.hub_server import LocalHub, use_local_hub

REPO = "org/cls"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        h.add_commit(REPO, tiny_models["bert-cls"])
        yield h


def _go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def _flip(path: Path, rng: random.Random, *, data_only: bool = False) -> int:
    real = Path(os.path.realpath(path))
    raw = bytearray(real.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little") if data_only else 0
    i = rng.randrange(start, len(raw))
    raw[i] ^= 1 << rng.randrange(8)
    real.write_bytes(bytes(raw))
    return i


def _file_downloads(hub: LocalHub) -> list[str]:
    """The files fetched (GET of a resolve or LFS URL), by name."""
    out = []
    for r in hub.requests:
        if r.method != "GET":
            continue
        if "/_lfs/" in r.path:
            out.append(r.path.split("f=")[-1].split("&")[0])
        elif "/resolve/" in r.path:
            out.append(r.path.rsplit("/", 1)[-1])
    return out


def _check(cache: Path, rev) -> list[str]:
    return ensure_intact(
        model="cls",
        repo_id=REPO,
        commit=rev.commit,
        snapshot=rev.path,
        cache_dir=cache,
        endpoint=HubEnv.current().endpoint,
        offline=HubEnv.current().offline,
    )


def test_offline_a_flipped_byte_fails_the_load_with_cache_corrupt_naming_the_file(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    rev = resolve(REPO)
    _flip(rev.path / "model.safetensors", random.Random(1), data_only=True)
    _go_offline(monkeypatch)
    provider = Provider([ModelSpec(name="cls", source=REPO, tasks=["text-classification"])])
    try:
        with pytest.raises(CacheCorrupt) as info:
            provider.load("cls")
    finally:
        provider.close()
    assert info.value.code == "cache_corrupt" and info.value.file == "model.safetensors"
    assert "model.safetensors" in info.value.message and "offline" in info.value.message
    assert not (rev.path / "model.safetensors").exists()  # quarantined, not left to be loaded
    from hf_provider.reporting.reports import classify
    from hf_provider.server.errors import provider_error_response

    assert classify(info.value) == "cache_corrupt"
    response = provider_error_response(info.value)
    assert response.status_code == 503 and b'"code":"cache_corrupt"' in response.body


def test_a_flipped_byte_is_repaired_by_downloading_only_that_file_and_the_model_loads(hub: LocalHub) -> None:
    provider = Provider([ModelSpec(name="cls", source=REPO, tasks=["text-classification"])])
    try:
        provider.load("cls")
        rev = resolve(REPO)
        provider.unload("cls")
        _flip(rev.path / "model.safetensors", random.Random(2), data_only=True)
        hub.clear_requests()
        info = provider.load("cls")
        assert info["commit"] == rev.commit
        assert _file_downloads(hub) == ["model.safetensors"]
        assert provider.run("cls", "text-classification", ["a cat"])
    finally:
        provider.close()


def test_random_flips_anywhere_are_detected_and_each_repaired_with_one_download(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    rev = resolve(REPO)
    assert _check(cache, rev) == []
    rng = random.Random(11)
    for _ in range(5):
        _flip(rev.path / "model.safetensors", rng)
        hub.clear_requests()
        assert _check(cache, rev) == ["model.safetensors"]
        assert _file_downloads(hub) == ["model.safetensors"]
    hub.clear_requests()
    assert _check(cache, rev) == [] and hub.requests == []


def test_a_warm_check_hashes_nothing_also_after_a_restart(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hf_provider.cache.integrity as integrity
    from hf_provider.cache import state as state_mod

    cache = HubEnv.current().cache_dir
    rev = resolve(REPO)
    for (
        f
    ) in rev.path.iterdir():  # downloaded a while ago (a file hashed within 2 s of its write is hashed again)
        real = os.path.realpath(f)
        st = os.stat(real)
        os.utime(real, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))
    read: list[str] = []
    real = integrity.digest_file
    monkeypatch.setattr(integrity, "digest_file", lambda p, a: read.append(Path(p).name) or real(p, a))
    _check(cache, rev)
    assert len(read) == 5  # cold: every file hashed once
    read.clear()
    _check(cache, rev)
    assert read == []
    # a restart: the verdicts come back from the state file on disk, not from this process's memory
    state_for(cache).close()
    state_mod._states.clear()
    _check(cache, rev)
    assert read == []
    # a file written since is hashed again (its mtime changed), and only that one
    _flip(rev.path / "model.safetensors", random.Random(5), data_only=True)
    _check(cache, rev)
    assert (
        read == [Path(os.path.realpath(rev.path / "model.safetensors")).name] * 2
    )  # the bad one, the repaired one


def test_the_hub_sending_bad_bytes_again_is_cache_corrupt_not_a_loop(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    rev = resolve(REPO)
    _flip(rev.path / "model.safetensors", random.Random(3), data_only=True)
    hub.corrupt(REPO, "model.safetensors")
    hub.clear_requests()
    with pytest.raises(CacheCorrupt) as info:
        _check(cache, rev)
    assert info.value.file == "model.safetensors"
    assert _file_downloads(hub).count("model.safetensors") <= 1


def test_safetensors_header_problems_are_named(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    good = tiny_models["bert-cls"] / "model.safetensors"
    assert safetensors_problem(good) is None
    raw = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[:-10])
    assert "cover" in (safetensors_problem(cut) or "") or "outside" in (safetensors_problem(cut) or "")
    short = tmp_path / "short.safetensors"
    short.write_bytes(raw[:4])
    assert safetensors_problem(short) == "shorter than a safetensors header"
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**9).to_bytes(8, "little") + raw[8:])
    assert "does not fit" in (safetensors_problem(huge) or "")


def test_fetcher_records_use_for_the_budget(hub: LocalHub) -> None:
    cache = HubEnv.current().cache_dir
    t = [100.0]
    fetcher = Fetcher(clock=lambda: t[0])
    rev = fetcher.fetch(ModelSpec(name="cls", source=REPO))
    assert state_for(cache).last_used()[(REPO, rev.commit)] == 100.0
