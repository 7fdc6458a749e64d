"""resolve(): local folders, name validation, env handling, retry classification (Hub parts: LocalHub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider.errors import ModelNotFound
from hf_provider.hub import resolve as R
from hf_provider.hub.resolve import HubEnv, HubRetry, default_patterns, resolve
from hf_provider.testing.hub_server import LocalHub, use_local_hub


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with LocalHub() as h:
        use_local_hub(monkeypatch, h, tmp_path / "hf-home")
        h.add_commit("org/model", {"config.json": b"{}", "model.safetensors": b"w"})
        yield h


def test_local_folder_has_no_commit_and_makes_no_request(hub: LocalHub, tmp_path: Path) -> None:
    folder = tmp_path / "org" / "model"  # shaped like a repo id on purpose: the folder wins
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    r = resolve(str(folder), "v1")
    assert (r.path, r.commit, r.kind, r.revision) == (folder.resolve(), None, "local", None)
    assert hub.requests == []


def test_relative_folder_that_looks_like_a_repo_id(hub: LocalHub, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    r = resolve("org/model")
    assert r.kind == "local" and r.path == (tmp_path / "org" / "model").resolve()
    assert hub.requests == []


@pytest.mark.parametrize("name", ["./no/such/dir", "/abs/missing", "a/b/c", "bad name", "org--x/y", "-x/"])
def test_neither_folder_nor_repo_id(name: str) -> None:
    with pytest.raises(ModelNotFound, match="not a Hub repo id") as e:
        resolve(name)
    assert e.value.model == name and isinstance(e.value, LookupError)


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="is a file"):
        resolve(str(f))


def test_offline_by_default_under_the_test_suite_and_says_what_to_do() -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1 and an empty HF_HOME
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set; run once online"):
        resolve("org/never-downloaded")


def test_offline_argument_overrides_env(hub: LocalHub) -> None:
    with pytest.raises(ModelNotFound, match="not in the local cache"):
        resolve("org/model", offline=True)
    assert hub.requests == []
    assert resolve("org/model", offline=False).commit == hub.head("org/model")


def test_env_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    env = HubEnv.current()
    assert (env.endpoint, env.cache_dir, env.offline) == (
        "https://huggingface.co",
        tmp_path / "home" / "hub",
        False,
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror:1/")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    env = HubEnv.current()
    assert (env.endpoint, env.cache_dir, env.offline) == ("http://mirror:1", tmp_path / "c", True)
    assert HubEnv.current(offline=False).offline is False


def test_default_patterns_prefer_safetensors() -> None:
    with_st = default_patterns(["config.json", "model.safetensors", "pytorch_model.bin"])
    without = default_patterns(["config.json", "pytorch_model.bin"])
    assert "*.safetensors" in with_st and "*.bin" not in with_st
    assert "*.bin" in without
    assert {"*.json", "*.txt", "*.model"} <= set(with_st)


def test_transient_classification() -> None:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import httpx as client  # the HTTP client hub raises from (httpx2 in 2.x)

    def http_error(status: int) -> HfHubHTTPError:
        req = client.Request("GET", "http://x/api/models/a/b")
        return HfHubHTTPError(f"{status}", response=client.Response(status, request=req))

    assert R._is_transient(http_error(503)) and R._is_transient(http_error(500))
    assert not R._is_transient(http_error(404)) and not R._is_transient(http_error(429))
    assert R._is_transient(client.ConnectError("refused"))
    assert R._is_transient(client.ReadTimeout("slow"))
    assert R._is_transient(client.RemoteProtocolError("peer closed"))
    wrapped = LocalEntryNotFoundError("cache miss")
    wrapped.__cause__ = http_error(502)
    assert R._is_transient(wrapped)
    assert not R._is_transient(LocalEntryNotFoundError("plain cache miss"))
    assert not R._is_transient(ValueError("bug"))


def test_http_clients_we_import_are_declared_dependencies() -> None:
    """resolve.py and the CLI (hfp top, hfp models) import HTTP clients at run time: each must come from a
    distribution in [project].dependencies, not only from dev extras or another package's requirements."""
    import ast
    import re
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    root = Path(__file__).resolve().parents[3]
    src = root / "src" / "hf_provider"

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {norm(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    # An optional extra (not dev) may be imported where it is used, under `except ImportError` with an install hint.
    extras = {
        norm(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0])
        for name, reqs in project["optional-dependencies"].items()
        if name != "dev"
        for d in reqs
    }
    owners = packages_distributions()
    missing = set()
    for path in [src / "hub" / "resolve.py", *(src / "cli").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = {
            id(n)
            for t in ast.walk(tree)
            if isinstance(t, ast.Try)
            and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in t.handlers)
            for n in ast.walk(t)
        }
        for node in ast.walk(tree):
            allowed = declared | extras if id(node) in guarded else declared
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"hf_provider"}:
                if not {norm(d) for d in owners.get(top, [top])} & allowed:
                    missing.add(f"{top} ({path.relative_to(root)})")
    assert not missing, f"imported but not in [project].dependencies: {sorted(missing)}"


def test_retries_are_bounded(hub: LocalHub) -> None:
    from hf_provider.errors import Unavailable

    hub.fail_next(100, status=502, path_contains="/revision/")
    sleeps: list[float] = []
    with pytest.raises(Unavailable) as e:
        resolve(
            "org/model",
            retry=HubRetry(attempts=3, initial_wait=1, max_wait=1.5, sleep=sleeps.append, jitter=lambda: 1.0),
        )
    assert sleeps == [1, 1.5]
    assert len([r for r in hub.requests if "/revision/" in r.path]) == 3
    assert e.value.retry_after and "HTTP 502" in e.value.message
