"""A model's files, ready to load: resolved (from the lock when `locked`), verified, repaired, within budget.

`Fetcher.fetch(spec)` is what the model manager calls instead of `resolve` directly:

1. `locked`: the spec's lock entry gives the exact commit and file list; a configured Hub model without an entry
   is refused unless its revision is itself a full commit, and the config asking another source or revision than
   the lock is drift (LockDrift, with what to run). Otherwise `resolve(source, revision)`.
2. Integrity (cache/integrity.py): every file checked against the lock's sha256 (or what the Hub advertised at
   download), a bad one quarantined and downloaded again alone; a locked file whose Hub-advertised sha256 or size
   differs from the lock's is drift, not corruption, and is never "repaired" into another file.
3. The revision's use is recorded (cache/state.py) and the cache is pruned to `[cache] disk_budget`, never
   touching what is loaded, locked, swapping, or being loaded now.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_provider.cache import budget as cache_budget
from hf_provider.cache import pins
from hf_provider.cache.integrity import ensure_intact, expected_files, file_digest
from hf_provider.cache.state import state_for
from hf_provider.errors import ConfigError, LockDrift
from hf_provider.hub.lockfile import LockEntry, read_lock
from hf_provider.hub.resolve import COMMIT_RE, HubEnv, Resolved, resolve
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchPolicy:
    lock_file: Path | None = None  # hfp.lock; its commits are never pruned, and `locked` loads exactly them
    locked: bool = False
    disk_budget: str | int | float | None = None  # bytes or a fraction of the disk; None: no budget
    verify: bool = True  # check files before each load (digests are cached, so a warm check reads nothing)

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        cache = getattr(settings, "cache", None)
        return cls(
            lock_file=getattr(settings, "lock_file", None),
            locked=bool(getattr(settings, "locked", False)),
            disk_budget=getattr(cache, "disk_budget", None),
            verify=getattr(cache, "verify", True),
        )


class Fetcher:
    def __init__(self, policy: FetchPolicy | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy or FetchPolicy()
        self.clock = clock
        # model name -> (repo id, commit) of its last fetch: the manager reports a model whose load is under way
        # from here (its files must not be pruned between the fetch and the weights being in memory)
        self.fetched: dict[str, tuple[str, str]] = {}
        if self.policy.locked and self.policy.lock_file is None:
            raise ConfigError(
                "locked=True needs a lock file: pass lock_file (hfp.lock, written by `hfp lock`)"
            )

    # ---- the lock ------------------------------------------------------------------------------------------
    def lock(self) -> dict[str, LockEntry]:
        return read_lock(self.policy.lock_file) if self.policy.lock_file else {}

    def check_locked(self, specs: list[ModelSpec]) -> None:
        """At start with `locked`: every configured Hub model has a matching entry. ConfigError lists the rest."""
        if not self.policy.locked:
            return
        entries = self.lock()
        problems = [p for s in specs if (p := self._lock_problem(s, entries.get(s.name)))]
        if problems:
            raise ConfigError(
                f"--locked: {'; '.join(problems)}. Run `hfp lock` to resolve the configuration into "
                f"{self.policy.lock_file}, or start without --locked."
            )

    def _lock_problem(self, spec: ModelSpec, entry: LockEntry | None) -> str | None:
        if Path(spec.source).expanduser().is_dir():
            return None  # a local folder has no commit to lock
        asked = spec.revision or "main"
        if entry is None:
            if COMMIT_RE.match(asked):
                return None  # a full commit pins itself
            return f"model {spec.name!r} asks revision {asked!r} of {spec.source}, which has no entry in the lock"
        if entry.source != spec.source:
            return f"model {spec.name!r}: the config says source {spec.source!r}, the lock {entry.source!r}"
        if entry.revision != asked:
            return f"model {spec.name!r}: the config asks revision {asked!r}, the lock was made for {entry.revision!r}"
        return None

    # ---- fetching ------------------------------------------------------------------------------------------
    def fetch(self, spec: ModelSpec, *, revision: str | None = None, retry: Any = None) -> Resolved:
        """The verified snapshot of `spec` (at `revision` when given: a swap's candidate, not held to the lock)."""
        entry: LockEntry | None = None
        if self.policy.locked and revision is None:
            entry = self.lock().get(spec.name)
            if (why := self._lock_problem(spec, entry)) is not None:
                raise LockDrift(f"{why}; run `hfp lock` (or start without --locked).", model=spec.name)
        kwargs: dict[str, Any] = {"retry": retry} if retry is not None else {}
        if entry is not None:
            patterns = [glob.escape(f.path) for f in entry.files]
            resolved = resolve(spec.source, entry.commit, allow_patterns=patterns, **kwargs)
        else:
            resolved = resolve(spec.source, revision or spec.revision, **kwargs)
        if resolved.kind != "hub" or resolved.commit is None:
            return resolved
        env = HubEnv.current()
        state = state_for(env.cache_dir)
        with pins.pinned(resolved.source, resolved.commit, "loading"):
            if entry is not None:
                self._check_drift(spec, entry, resolved, env.cache_dir)
            if self.policy.verify or entry is not None:
                ensure_intact(
                    model=spec.name,
                    repo_id=resolved.source,
                    commit=resolved.commit,
                    snapshot=resolved.path,
                    cache_dir=env.cache_dir,
                    endpoint=env.endpoint,
                    offline=env.offline,
                    entry=entry,
                    state=state,
                )
            self.fetched[spec.name] = (resolved.source, resolved.commit)
            state.touch(resolved.source, resolved.commit, self.clock())
            if self.policy.disk_budget is not None:
                self.prune()
        return resolved

    def prune(self, *, dry_run: bool = False) -> cache_budget.Plan | None:
        """Bring the cache within the budget now (also after each fetch); None when there is no budget."""
        if self.policy.disk_budget is None:
            return None
        env = HubEnv.current()
        protect = {(e.source, e.commit): {"locked"} for e in self.lock().values()}
        return cache_budget.enforce(env.cache_dir, self.policy.disk_budget, protect=protect, dry_run=dry_run)

    def _check_drift(self, spec: ModelSpec, entry: LockEntry, resolved: Resolved, cache_dir: Path) -> None:
        """Files of the locked commit that the lock lists but the Hub does not have, or advertises otherwise."""
        advertised = expected_files(resolved.source, entry.commit, resolved.path, cache_dir)
        problems = []
        for f in entry.files:
            hub = advertised.get(f.path)
            if hub is None:
                if not (resolved.path / f.path).exists():
                    problems.append(f"{f.path} is not in commit {entry.commit}")
            elif hub.size is not None and hub.size != f.size:
                problems.append(f"{f.path} is {hub.size} bytes upstream, {f.size} in the lock")
            elif hub.algorithm == "sha256" and hub.digest != f.sha256:
                problems.append(
                    f"{f.path} has sha256 {hub.digest[:12]}… upstream, {f.sha256[:12]}… in the lock"
                )
            elif hub.algorithm == "git-sha1" and self._small_file_drifted(
                resolved.path / f.path, f.sha256, hub
            ):
                problems.append(f"{f.path} as the Hub serves it has another sha256 than the lock's")
        if problems:
            raise LockDrift(
                f"model {spec.name!r} ({spec.source}@{entry.commit}) differs from hfp.lock: "
                f"{'; '.join(problems)}. Run `hfp lock` if the change is expected.",
                model=spec.name,
            )

    @staticmethod
    def _small_file_drifted(path: Path, locked_sha256: str, hub: Any) -> bool:
        """A small file's Hub checksum is a git sha1, not comparable with the lock's sha256: the file on disk
        that matches the Hub's sha1 but not the lock's sha256 shows the lock and the Hub disagree (a file that
        matches neither is corruption, left to the integrity check to repair)."""
        if not path.exists():
            return False
        state = state_for(HubEnv.current().cache_dir)
        if file_digest(path, "sha256", state)[0] == locked_sha256:
            return False
        return file_digest(path, "git-sha1", state)[0] == hub.digest


__all__ = ["FetchPolicy", "Fetcher"]
