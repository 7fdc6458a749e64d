"""A local server speaking the part of the Hugging Face Hub HTTP protocol that `huggingface_hub` uses.

Point `HF_ENDPOINT` at `LocalHub.start()` and `snapshot_download`, `hf_hub_download`, `HfApi.model_info`,
`list_repo_tree`, `list_repo_refs` and `list_repo_commits` run unchanged against in-memory repos. Routes:

    GET  /api/models/{repo}[/revision/{rev}]     model info: sha, siblings (size, blobId, lfs with ?blobs=1)
    GET  /api/models/{repo}/tree/{rev}[/{path}]   tree listing (?recursive=true)
    GET  /api/models/{repo}/refs                  branches and tags
    GET  /api/models/{repo}/commits/{rev}         history, newest first
    HEAD|GET /{repo}/resolve/{rev}/{file}         small files: 200 with ETag (git blob sha1), X-Repo-Commit;
                                                  LFS files: 302, X-Linked-Etag (sha256), X-Linked-Size and
                                                  a Location on another host name (as the real CDN is), so the
                                                  client takes the metadata from the redirect itself
    GET  /_lfs/{sha256}?r=&c=&f=                  the LFS "CDN" (Range supported)

Tests change the repos while the server runs: `add_commit` (a new commit on a branch, moving it), `move_branch`
(point a branch at any commit), `corrupt` (serve flipped bytes under the right ETag), `fail_next` (injected
errors); `requests` counts what the client asked for.

Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub's do, which is what
`huggingface_hub` turns into its typed errors. Std-lib only: the server runs in a daemon thread.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

# What a default Hub `.gitattributes` sends to LFS (abridged); bigger files go too (see `lfs_threshold`).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".gguf", ".model")
_REPO_ID_RE = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Blob:
    data: bytes
    git_oid: str
    sha256: str
    lfs: bool

    @classmethod
    def of(cls, data: bytes, lfs: bool) -> _Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        # An LFS file's git blob is its pointer file, as on the Hub.
        stored = _lfs_pointer(sha256, len(data)) if lfs else data
        git_oid = hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()
        return cls(data=data, git_oid=git_oid, sha256=sha256, lfs=lfs)


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _Commit:
    sha: str
    parent: str | None
    files: Mapping[str, _Blob]
    title: str
    date: datetime


@dataclass
class _Repo:
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def rev(self, revision: str) -> _Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # path and query, as received
    status: int


@dataclass
class _Failure:
    remaining: int
    status: int
    path_contains: str | None


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class LocalHub:
    """In-memory Hub repos served over loopback. Thread-safe; use as a context manager or start()/stop()."""

    def __init__(
        self, *, host: str = "127.0.0.1", lfs_host: str = "localhost", lfs_threshold: int = 10 * 1024 * 1024
    ) -> None:
        self.host = host
        self.lfs_host = (
            lfs_host  # a different name for the same socket: the client treats it as a foreign CDN
        )
        self.lfs_threshold = lfs_threshold
        self._repos: dict[str, _Repo] = {}
        self._corrupt: set[tuple[str, str, str | None]] = set()
        self._failures: list[_Failure] = []
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- repo content -------------------------------------------------------------------------------------
    def add_commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str] | Path | str,
        *,
        branch: str = "main",
        tag: str | None = None,
        message: str | None = None,
        delete: Iterable[str] = (),
        replace: bool = False,
    ) -> str:
        """Commit `files` (name -> bytes, or a folder) on top of `branch` and return the 40-hex commit sha.

        Like a git commit, files are added or updated over the parent's tree; `delete` removes paths and
        `replace=True` starts from an empty tree. The repo and the branch are created on first use (a new
        branch starts from main). `tag` points a tag at the new commit. Shas are deterministic for a given
        call sequence.
        """
        if not _REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id:
            raise ValueError(
                f"invalid repo id {repo_id!r}: use 'name' or 'org/name' with letters, digits, -, _, ."
            )
        content = _read_folder(Path(files)) if isinstance(files, Path | str) else dict(files)
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            parent_sha = repo.branches.get(branch) or repo.branches.get("main")
            tree: dict[str, _Blob] = (
                {} if replace or parent_sha is None else dict(repo.commits[parent_sha].files)
            )
            for name in delete:
                tree.pop(name, None)
            for name, data in content.items():
                raw = data.encode() if isinstance(data, str) else bytes(data)
                name = name.replace("\\", "/").lstrip("/")
                tree[name] = _Blob.of(raw, lfs=name.endswith(LFS_SUFFIXES) or len(raw) > self.lfs_threshold)
            self._counter += 1
            title = message or f"Commit {self._counter} to {branch}"
            listing = "\n".join(f"{p} {b.git_oid}" for p, b in sorted(tree.items()))
            sha = hashlib.sha1(
                f"{repo_id}\n{parent_sha}\n{listing}\n{title}\n{self._counter}".encode()
            ).hexdigest()
            repo.commits[sha] = _Commit(
                sha, parent_sha, tree, title, _EPOCH + timedelta(minutes=self._counter)
            )
            repo.branches[branch] = sha
            if tag is not None:
                repo.tags[tag] = sha
            return sha

    def move_branch(self, repo_id: str, branch: str, commit: str) -> None:
        """Point `branch` (created if new) at an existing `commit`, as a force-push or a reset would."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None or commit not in repo.commits:
                raise KeyError(f"no commit {commit!r} in repo {repo_id!r} of this LocalHub")
            repo.branches[branch] = commit

    def corrupt(self, repo_id: str, filename: str, commit: str | None = None) -> None:
        """Serve wrong bytes (same length, every byte flipped) for `filename`, at `commit` or at every commit,
        while advertising the right ETag / sha256 / size: only an integrity check notices."""
        with self._lock:
            if repo_id not in self._repos:
                raise KeyError(f"no repo {repo_id!r} in this LocalHub")
            self._corrupt.add((repo_id, filename, commit))

    def fail_next(self, n: int = 1, *, status: int = 503, path_contains: str | None = None) -> None:
        """Answer the next `n` requests (whose path contains `path_contains`, if given) with `status`."""
        with self._lock:
            self._failures.append(_Failure(n, status, path_contains))

    def head(self, repo_id: str, branch: str = "main") -> str:
        with self._lock:
            return self._repos[repo_id].branches[branch]

    # ---- request log --------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHub is not started: call start() or use it as a context manager")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> str:
        if self._server is None:
            from hf_provider.testing import hub_http  # imports this module: bound here, not at import time

            server = ThreadingHTTPServer((self.host, 0), hub_http.make_handler(self))
            server.daemon_threads = True
            server.block_on_close = False  # idle keep-alive connections must not hold stop() up
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> LocalHub:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- protocol (called from handler threads) -----------------------------------------------------------
    def _take_failure(self, path: str) -> int | None:
        with self._lock:
            for f in self._failures:
                if f.remaining > 0 and (f.path_contains is None or f.path_contains in path):
                    f.remaining -= 1
                    return f.status
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append(RequestRecord(method, path, status))

    def _split_repo(self, segments: list[str]) -> tuple[str, _Repo, list[str]]:
        with self._lock:
            for k in (2, 1):
                repo_id = "/".join(segments[:k])
                if len(segments) >= k and repo_id in self._repos:
                    return repo_id, self._repos[repo_id], segments[k:]
        raise _HubError(404, "RepoNotFound", f"Repository {'/'.join(segments[:2])!r} not found")

    def _commit(self, repo: _Repo, revision: str) -> _Commit:
        with self._lock:
            commit = repo.rev(revision)
        if commit is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _payload(self, repo_id: str, commit: _Commit, filename: str) -> bytes:
        data = commit.files[filename].data
        with self._lock:
            bad = {(repo_id, filename, None), (repo_id, filename, commit.sha)} & self._corrupt
        if not bad:
            return data
        return bytes(b ^ 0xFF for b in data) if data else b"\0"  # an empty file cannot keep its length

    def _api(self, segments: list[str], query: dict[str, list[str]]) -> object:
        repo_id, repo, rest = self._split_repo(segments)
        op = rest[0] if rest else "revision"
        revision = rest[1] if len(rest) > 1 else "main"
        if op == "refs":
            with self._lock:

                def refs(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
                    return [
                        {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in names.items()
                    ]

                return {
                    "branches": refs("heads", repo.branches),
                    "converts": [],
                    "tags": refs("tags", repo.tags),
                    "pullRequests": [],
                }
        commit = self._commit(repo, revision)
        if op == "revision":
            return _model_info(repo_id, commit, blobs=_true(query.get("blobs")))
        if op == "tree":
            return _tree(commit, "/".join(rest[2:]), recursive=_true(query.get("recursive")))
        if op == "commits":
            history = []
            c: _Commit | None = commit
            while c is not None:
                history.append(
                    {
                        "id": c.sha,
                        "authors": [{"user": "local-hub"}],
                        "date": _iso(c.date),
                        "title": c.title,
                        "message": "",
                    }
                )
                c = repo.commits.get(c.parent) if c.parent else None
            return history
        raise _HubError(404, None, f"unknown API route {op!r}")


def use_local_hub(monkeypatch: Any, hub: LocalHub, home: Path) -> None:
    """Point this process's Hub client at `hub`, online, with its cache under `home` (pytest's monkeypatch).

    Besides the environment, patches what huggingface_hub froze at import: the offline guard (else every
    request is refused), telemetry and its once-a-process agent registry fetch, which goes to the import-time
    endpoint (else a test could reach huggingface.co).
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setenv("HF_ENDPOINT", hub.start())
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})


def _true(values: list[str] | None) -> bool:
    return bool(values) and values[0].lower() in {"1", "true", "yes"}


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _read_folder(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder: pass a folder or a mapping of file name to bytes")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {".git", ".cache"} & set(p.relative_to(root).parts)
    }


def _lfs_json(blob: _Blob, sha_key: str) -> dict[str, object]:
    return {
        sha_key: blob.sha256,
        "size": len(blob.data),
        "pointerSize": len(_lfs_pointer(blob.sha256, 0)) + 2,
    }


def _model_info(repo_id: str, commit: _Commit, *, blobs: bool) -> dict[str, object]:
    siblings: list[dict[str, object]] = []
    for name, blob in sorted(commit.files.items()):
        entry: dict[str, object] = {"rfilename": name}
        if blobs:
            entry.update(size=len(blob.data), blobId=blob.git_oid)
            if blob.lfs:
                entry["lfs"] = _lfs_json(blob, "sha256")
        siblings.append(entry)
    return {
        "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/")[0] if "/" in repo_id else None,
        "sha": commit.sha,
        "lastModified": _iso(commit.date),
        "createdAt": _iso(_EPOCH),
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }


def _tree(commit: _Commit, path: str, *, recursive: bool) -> list[dict[str, object]]:
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    under = {n: b for n, b in commit.files.items() if n.startswith(prefix)}
    if prefix and not under:
        raise _HubError(404, "EntryNotFound", f"{path} does not exist on {commit.sha}", commit.sha)
    files, folders = [], set()
    for name, blob in sorted(under.items()):
        parts = name[len(prefix) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entry: dict[str, object] = {
                "type": "file",
                "oid": blob.git_oid,
                "size": len(blob.data),
                "path": name,
            }
            if blob.lfs:
                entry["lfs"] = _lfs_json(blob, "oid")
            files.append(entry)
    dirs = [
        {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d} for d in sorted(folders)
    ]
    return dirs + files


__all__ = ["LFS_SUFFIXES", "LocalHub", "RequestRecord", "use_local_hub"]
