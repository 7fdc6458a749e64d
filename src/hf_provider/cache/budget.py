"""`[cache] disk_budget`: keep the HF cache within a size by removing least recently used revisions.

The cache is read and changed only through huggingface_hub's cache API (`scan_cache_dir`, `delete_revisions`),
so `hf cache ls` keeps seeing a well-formed cache and shared blobs are accounted the way hub accounts them (a
revision's files that a kept revision also uses free nothing). Recency comes from the provider's own access
records (cache/state.py); a revision it never used counts as used when it was downloaded (its last_modified).

Never removed: revisions pinned in cache/pins.py (loaded, swapping, the one being loaded), and every commit of
the lock(s) given. When only protected revisions are left, the cache stays over budget and the plan says so.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hf_provider.cache import pins
from hf_provider.cache.artefacts import drop_commits
from hf_provider.cache.state import CacheState, state_for
from hf_provider.units import SizeValue, parse_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revision:
    repo_id: str
    commit: str
    size: int  # bytes of its blobs (shared ones included)
    last_used: float
    refs: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()  # why it must stay: loaded, locked, swapping, loading


@dataclass(frozen=True)
class Plan:
    budget: int
    total: int  # the cache's physical size now
    remove: tuple[Revision, ...]
    freed: int  # what removing them frees, shared blobs taken into account
    revisions: tuple[Revision, ...] = field(default=(), repr=False)

    @property
    def after(self) -> int:
        return self.total - self.freed

    @property
    def within(self) -> bool:
        return self.after <= self.budget


def budget_bytes(value: SizeValue, cache_dir: Path) -> int:
    """Bytes from '20GiB', 123 (bytes) or a fraction (0.25, '25%') of the disk holding the cache."""
    probe = Path(cache_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return parse_size(value, shutil.disk_usage(probe).total, of="the disk holding the HF cache")


def revisions(
    info, state: CacheState, protect: Mapping[tuple[str, str], Iterable[str]] | None = None
) -> list[Revision]:
    """Every cached model revision with its recency and why it is protected, least recently used first."""
    used = state.last_used()
    held = pins.everywhere(state)  # ours and live processes' (a server's, for `hfp cache prune`)
    for key, why in (protect or {}).items():
        held.setdefault(key, set()).update(why)
    out = []
    for repo in info.repos:
        for rev in repo.revisions:
            key = (repo.repo_id, rev.commit_hash)
            out.append(
                Revision(
                    repo_id=repo.repo_id,
                    commit=rev.commit_hash,
                    size=rev.size_on_disk,
                    last_used=used.get(key, rev.last_modified),
                    refs=tuple(sorted(rev.refs)),
                    protected=tuple(sorted(held.get(key, ()))),
                )
            )
    return sorted(out, key=lambda r: (r.last_used, r.repo_id, r.commit))


def plan(info, budget: int, revs: list[Revision]) -> Plan:
    """The fewest least-recently-used unprotected revisions whose removal brings the cache within `budget`."""
    total = info.size_on_disk
    chosen: list[Revision] = []
    freed = 0
    for r in revs:
        if total - freed <= budget:
            break
        if r.protected:
            continue
        chosen.append(r)
        freed = info.delete_revisions(*(c.commit for c in chosen)).expected_freed_size
    return Plan(budget, total, tuple(chosen), freed, tuple(revs))


def enforce(
    cache_dir: Path,
    budget: SizeValue,
    *,
    protect: Mapping[tuple[str, str], Iterable[str]] | None = None,
    state: CacheState | None = None,
    dry_run: bool = False,
) -> Plan:
    """Remove least recently used revisions until the cache fits `budget` (bytes or a fraction of the disk)."""
    from huggingface_hub import scan_cache_dir

    state = state or state_for(cache_dir)
    limit = budget_bytes(budget, cache_dir)
    if not Path(cache_dir).exists():
        return Plan(limit, 0, (), 0)
    info = scan_cache_dir(cache_dir)
    p = plan(info, limit, revisions(info, state, protect))
    if p.remove and not dry_run:
        # Re-check the pins just before deleting: a load may have started since the scan.
        now = pins.everywhere(state)
        remove = tuple(r for r in p.remove if (r.repo_id, r.commit) not in now)
        info.delete_revisions(*(r.commit for r in remove)).execute()
        if remove:  # their optimize artefacts (ONNX files) and results go with them (optimize/store.py)
            drop_commits(Path(cache_dir), {r.commit for r in remove})
        for r in remove:
            state.forget(r.repo_id, r.commit)
            log.info(
                "cache budget: removed %s@%s (%d bytes, least recently used)", r.repo_id, r.commit, r.size
            )
        p = Plan(limit, p.total, remove, p.freed if remove == p.remove else _freed(info, remove), p.revisions)
    if not p.within and not dry_run:
        log.warning(
            "cache budget %d bytes: the cache holds %d bytes after pruning; what is left is loaded, locked or "
            "swapping",
            limit,
            p.after,
        )
    return p


def _freed(info, remove: tuple[Revision, ...]) -> int:
    return info.delete_revisions(*(r.commit for r in remove)).expected_freed_size if remove else 0


__all__ = ["Plan", "Revision", "budget_bytes", "enforce", "plan", "revisions"]
