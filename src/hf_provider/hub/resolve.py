"""Resolve a model source (local folder or Hub repo id) and a revision to a snapshot folder and exact commit.

Environment variables are read on every call, never at import. huggingface_hub freezes `HF_ENDPOINT`,
`HF_HUB_CACHE` / `HF_HOME` and `HF_HUB_OFFLINE` into `huggingface_hub.constants` when first imported, so a
process that sets them later (tests, a CLI flag, a settings file) would otherwise talk to the wrong Hub,
write to the wrong cache, or be refused by the client's offline guard. Hence `resolve` passes `endpoint=`
and `cache_dir=` explicitly, goes offline through `local_files_only=True`, and, while it talks to the Hub,
lifts the frozen offline flag (see `_hub_online`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tenacity

from hf_provider.cache.hubenv import HubEnv
from hf_provider.cache.hubenv import hub_online as _hub_online
from hf_provider.errors import ModelNotFound, Unavailable
from hf_provider.resilience.retry import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Configs, tokenizers (json, txt vocabularies, sentencepiece .model, tiktoken), remote code, and weights.
BASE_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*tokenizer*",
    "*.py",
    "*.safetensors",
)
PICKLE_PATTERNS: tuple[str, ...] = ("*.bin",)  # pickled weights: fetched only when a repo has no safetensors


@dataclass(frozen=True)
class Resolved:
    path: Path  # the folder to load from: a snapshot in the HF cache, or the local folder itself
    commit: str | None  # exact 40-hex commit for Hub sources; None for local folders
    kind: Literal["local", "hub"]
    source: str
    revision: str | None  # the revision asked for ("main" when None was given for a Hub source)


# Bounded retries of transient Hub failures (connection errors, timeouts, 5xx; 4xx are never retried): attempts,
# backoff with jitter, and, when the caller passes them, a deadline and a retry budget shared by a model's loads.
HubRetry = RetryPolicy


def default_patterns(files: Iterable[str]) -> list[str]:
    """Files worth downloading for serving: safetensors weights when the repo has any, else pickled `.bin`."""
    has_safetensors = any(f.endswith(".safetensors") for f in files)
    return [*BASE_PATTERNS, *(() if has_safetensors else PICKLE_PATTERNS)]


def resolve(
    source: str,
    revision: str | None = None,
    *,
    allow_patterns: Sequence[str] | None = None,
    offline: bool | None = None,
    retry: HubRetry | None = None,
) -> Resolved:
    """Map `source` + `revision` to a local folder and, for Hub repos, the exact commit.

    A folder that exists is used as is (no network; `revision` is ignored). Otherwise `source` must be a Hub
    repo id; its revision (default "main") is downloaded into the HF cache, or, when offline, found there.
    `offline=None` follows `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` as set now. `allow_patterns=None` means
    `default_patterns` of the repo's files. Raises ModelNotFound (unknown repo / revision, not cached while
    offline, not a folder nor a repo id) or Unavailable (Hub unreachable after retries and nothing cached).
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        if revision:
            log.debug("revision %r ignored: %s is a local folder", revision, folder)
        return Resolved(folder.resolve(), None, "local", source, None)
    if folder.exists():
        raise ModelNotFound(source, detail=f"{where(source)} is a file; point source at the model's folder.")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        raise ModelNotFound(
            source,
            detail=(
                f"{where(source)} is not a folder and not a Hub repo id ('org/name'); check the path or the id."
            ),
        ) from None

    env = HubEnv.current(offline)
    rev = revision or "main"
    if env.offline:
        return _from_cache(source, rev, allow_patterns, env, why="HF_HUB_OFFLINE is set")
    if COMMIT_RE.match(rev):  # a commit never changes: a complete cached snapshot needs no network at all
        try:
            return _from_cache(source, rev, allow_patterns, env, why="")
        except ModelNotFound:
            pass
    policy = retry or HubRetry()
    try:
        return call_with_retries(
            lambda: _download(source, rev, allow_patterns, env),
            policy,
            transient=_is_transient,
            before_sleep=lambda state: _log_retry(source, rev, policy, state),
        )
    except Exception as e:
        if not _is_transient(e):
            raise
        cause = _describe(e)
        log.warning(
            "Hub at %s unreachable for %s@%s after %d attempts (%s); trying the local cache",
            env.endpoint,
            source,
            rev,
            policy.attempts,
            cause,
        )
        try:
            return _from_cache(source, rev, allow_patterns, env, why=f"the Hub is unreachable ({cause})")
        except ModelNotFound:
            raise Unavailable(
                f"The Hub at {env.endpoint} is unreachable ({cause}) and {source}@{rev} is not in "
                f"the local cache {env.cache_dir}; retry later, or point source at a local folder.",
                model=source,
                retry_after=30.0,
            ) from e


def _download(repo_id: str, rev: str, allow_patterns: Sequence[str] | None, env: HubEnv) -> Resolved:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        with _hub_online():
            info = HfApi(endpoint=env.endpoint).model_info(repo_id, revision=rev)
            commit = info.sha
            if not commit or not COMMIT_RE.match(commit):
                raise RuntimeError(f"the Hub at {env.endpoint} returned no commit sha for {repo_id}@{rev}")
            files = [s.rfilename for s in info.siblings or ()]
            patterns = list(allow_patterns) if allow_patterns is not None else default_patterns(files)
            # Download the commit just looked at, not `rev` again: a branch may move between the two calls.
            path = snapshot_download(
                repo_id,
                revision=commit,
                cache_dir=env.cache_dir,
                endpoint=env.endpoint,
                allow_patterns=patterns,
            )
    except RepositoryNotFoundError as e:  # also GatedRepoError
        raise ModelNotFound(
            repo_id,
            detail=(
                f"No Hub repo {repo_id!r} at {env.endpoint} (or it is private or "
                "gated and HF_TOKEN is missing); check the id, or point source at "
                "a local folder."
            ),
        ) from e
    except RevisionNotFoundError as e:
        raise ModelNotFound(
            repo_id,
            detail=(
                f"The Hub repo {repo_id!r} has no revision {rev!r}; use a "
                "branch, a tag or a full commit hash that exists."
            ),
        ) from e
    except HfHubHTTPError as e:
        status = _status(e)
        if status == 429:
            raise Unavailable(
                f"The Hub at {env.endpoint} is rate limiting requests for {repo_id}; retry later.",
                model=repo_id,
                retry_after=60.0,
            ) from e
        if status is not None and 400 <= status < 500:
            raise ModelNotFound(repo_id, detail=f"The Hub refused {repo_id}@{rev} (HTTP {status}).") from e
        raise
    if rev != commit:
        # snapshot_download was given the commit, so it recorded no ref: record rev -> commit for offline use.
        _write_ref(env.cache_dir, repo_id, rev, commit)
    return Resolved(_snapshot_path(path, commit), commit, "hub", repo_id, rev)


def where(source: str) -> str:
    """`source` as a message names it: with the absolute path it stands for and what that was resolved from."""
    path = Path(source).expanduser()
    if path.is_absolute():
        full = os.path.normpath(path)
        return f"source {source!r}" + ("" if full == source else f" ({full})")
    cwd = Path.cwd()
    return f"source {source!r} (resolved against {cwd}: {os.path.normpath(cwd / path)})"


def _from_cache(
    repo_id: str, rev: str, allow_patterns: Sequence[str] | None, env: HubEnv, why: str
) -> Resolved:
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, LocalEntryNotFoundError

    storage = env.cache_dir / _repo_folder(repo_id)
    hint = (
        f"{repo_id}@{rev} is not in the local cache {env.cache_dir}{' and ' + why if why else ''}; run once "
        "online (HF_HUB_OFFLINE unset) to download it, or point source at a local folder."
    )
    commit: str | None = rev if COMMIT_RE.match(rev) else None
    ref = storage / "refs" / rev
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if not commit or not (storage / "snapshots" / commit).is_dir():
        raise ModelNotFound(repo_id, detail=hint)
    if allow_patterns is not None:
        patterns = list(allow_patterns)
    else:
        try:
            files = [f.path for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=env.cache_dir)]
        except CachedRepoTreeNotFoundError:  # cache filled by something else: judge from what is on disk
            snap = storage / "snapshots" / commit
            files = [p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()]
        patterns = default_patterns(files)
    try:
        path = snapshot_download(
            repo_id,
            revision=commit,
            cache_dir=env.cache_dir,
            endpoint=env.endpoint,
            allow_patterns=patterns,
            local_files_only=True,
        )
    except LocalEntryNotFoundError as e:  # also IncompleteSnapshotError: some wanted files never arrived
        raise ModelNotFound(repo_id, detail=f"{hint} ({e})") from e
    return Resolved(_snapshot_path(path, commit), commit, "hub", repo_id, rev)


def _is_transient(e: BaseException | None) -> bool:
    """Connection errors, timeouts and 5xx, also when snapshot_download wrapped them in a cache miss."""
    from huggingface_hub import utils as hub_utils
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    # Catch the errors of the HTTP client huggingface_hub itself uses, through its re-export
    # huggingface_hub.utils.httpx (httpx2 in 2.x), rather than importing httpx2: that would be a dependency
    # of ours to declare and keep in step with hub's. Hub 1.x used httpx (ours too) and may lack the re-export.
    client = getattr(hub_utils, "httpx", None)
    if client is None:
        import httpx as client
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, client.TimeoutException | client.NetworkError | client.RemoteProtocolError):
            return True
        if isinstance(e, HfHubHTTPError):
            status = _status(e)
            return status is not None and status >= 500
        if not isinstance(e, LocalEntryNotFoundError):
            return False
        e, seen = e.__cause__, seen + 1
    return False


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _describe(e: BaseException) -> str:
    for x in (e, e.__cause__):
        if x is not None and (status := _status(x)):
            return f"HTTP {status}"
    return type(e.__cause__ or e).__name__


def _log_retry(source: str, rev: str, policy: HubRetry, state: tenacity.RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "Hub request for %s@%s failed (%s); retry %d/%d in %.1fs",
        source,
        rev,
        _describe(exc) if exc else "?",
        state.attempt_number,
        policy.attempts - 1,
        wait,
    )


def _repo_folder(repo_id: str) -> str:
    return "--".join(["models", *repo_id.split("/")])


def _snapshot_path(path: str | os.PathLike[str], commit: str) -> Path:
    p = Path(path)
    if p.parent.name != "snapshots" or p.name != commit:
        raise RuntimeError(f"huggingface_hub returned {p}, expected a snapshots/{commit} folder")
    return p


def _write_ref(cache_dir: Path, repo_id: str, rev: str, commit: str) -> None:
    ref = cache_dir / _repo_folder(repo_id) / "refs" / rev
    try:
        if ref.is_file() and ref.read_text().strip() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        # Unique temp file, then rename: a concurrent reader sees the old commit or the new, never half a sha.
        fd, tmp = tempfile.mkstemp(dir=ref.parent, prefix=f".{ref.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(commit)
            os.replace(tmp, ref)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as e:  # a read-only cache still serves this call; only later offline lookups lose the ref
        log.warning("could not record %s -> %s in %s: %s", rev, commit, ref, e)
