"""`hfp lock` and `hfp outdated`: resolve the configured models into hfp.lock; compare the lock with the Hub.

Locking downloads each model's files (as a load would), checks them against what the Hub advertises (so a corrupt
cache never ends up in a lock), and records every file's size and sha256. Local folders have no commit and are
left out. `trust_remote_code` models record `code_revision`: the commit whose code was locked (the model's own).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hf_provider.cache.integrity import ensure_intact
from hf_provider.cache.state import state_for
from hf_provider.hub.lockfile import LockEntry, entry_from_snapshot
from hf_provider.hub.resolve import COMMIT_RE, HubEnv, resolve
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockResult:
    entries: dict[str, LockEntry]
    skipped: dict[str, str]  # name -> why it has no entry (a local folder)


def lock_models(specs: Iterable[ModelSpec]) -> LockResult:
    """Resolve and hash every configured Hub model. Raises what resolve raises (ModelNotFound, Unavailable)."""
    entries: dict[str, LockEntry] = {}
    skipped: dict[str, str] = {}
    env = HubEnv.current()
    for spec in specs:
        if Path(spec.source).expanduser().is_dir():
            skipped[spec.name] = f"{spec.source} is a local folder: nothing to lock"
            continue
        r = resolve(spec.source, spec.revision)
        assert r.commit is not None
        ensure_intact(
            model=spec.name,
            repo_id=r.source,
            commit=r.commit,
            snapshot=r.path,
            cache_dir=env.cache_dir,
            endpoint=env.endpoint,
            offline=env.offline,
        )
        state_for(env.cache_dir).touch(r.source, r.commit)  # a lock is a use: the budget keeps it recent
        entries[spec.name] = entry_from_snapshot(
            spec.name,
            spec.source,
            spec.revision or "main",
            r.commit,
            r.path,
            code_revision=r.commit if spec.trust_remote_code else None,
        )
        log.info(
            "locked %s: %s@%s (%d files)", spec.name, spec.source, r.commit, len(entries[spec.name].files)
        )
    return LockResult(entries, skipped)


@dataclass(frozen=True)
class OutdatedRow:
    name: str
    source: str
    revision: str
    locked: str | None  # the lock's commit (None: not in the lock)
    upstream: str | None  # where `revision` points on the Hub now (None: could not tell)
    status: str  # up to date | outdated | not locked | pinned | error
    detail: str = ""

    def to_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "source": self.source,
            "revision": self.revision,
            "locked": self.locked,
            "upstream": self.upstream,
            "status": self.status,
            "detail": self.detail,
        }


def outdated(specs: Iterable[ModelSpec], entries: dict[str, LockEntry]) -> list[OutdatedRow]:
    """Each configured Hub model: the lock's commit against where its revision points on the Hub now."""
    from huggingface_hub import HfApi

    from hf_provider.hub.resolve import _hub_online

    env = HubEnv.current()
    api = HfApi(endpoint=env.endpoint)
    rows = []
    for spec in specs:
        if Path(spec.source).expanduser().is_dir():
            continue
        entry = entries.get(spec.name)
        rev = entry.revision if entry else (spec.revision or "main")
        locked = entry.commit if entry else None
        if COMMIT_RE.match(rev):
            rows.append(
                OutdatedRow(spec.name, spec.source, rev, locked, rev, "pinned", "a commit never moves")
            )
            continue
        try:
            with _hub_online():
                upstream = api.model_info(spec.source, revision=rev).sha
        except Exception as e:  # one unreachable or missing repo must not hide the others' answers
            rows.append(
                OutdatedRow(spec.name, spec.source, rev, locked, None, "error", f"{type(e).__name__}")
            )
            continue
        if entry is None:
            status = "not locked"
        elif entry.source != spec.source or entry.revision != (spec.revision or "main"):
            status = "outdated"
        else:
            status = "up to date" if upstream == locked else "outdated"
        detail = "" if status == "up to date" else _detail(spec, entry, upstream)
        rows.append(OutdatedRow(spec.name, spec.source, rev, locked, upstream, status, detail))
    return rows


def _detail(spec: ModelSpec, entry: LockEntry | None, upstream: str | None) -> str:
    if entry is None:
        return "run `hfp lock`"
    if entry.source != spec.source or entry.revision != (spec.revision or "main"):
        return "the config changed since the lock: run `hfp lock`"
    return f"{entry.revision} moved upstream: run `hfp lock` to take it"


__all__ = ["LockResult", "OutdatedRow", "lock_models", "outdated"]
