"""Swaps on a `--locked` server: the lock (hub/lockfile.py) decides the commit of every load, so after a swap,
rollback or promotion the model's lock entry is rewritten with the commit now serving and its files' hashes. The
entry keeps the revision the configuration asks (else the next start would refuse a config/lock mismatch), and
the entry's spec keeps it too, so a reload after keep-alive or eviction loads the swapped-in commit from the lock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hf_provider.models.manager import Entry, ModelManager

log = logging.getLogger(__name__)


class LockKeeper:
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        # the revision each model was configured with
        self._configured = {n: manager.entry(n).spec.revision for n in manager.names()}

    @property
    def path(self) -> Path | None:
        """The lock file when the server is locked, else None."""
        policy = getattr(getattr(self.manager, "fetcher", None), "policy", None)
        if policy is None or not getattr(policy, "locked", False):
            return None
        return getattr(policy, "lock_file", None)

    def spec_revision(self, e: Entry, asked: str | None) -> str | None:
        """The revision the entry's spec keeps after a switch: as asked, or on a locked server the configured one."""
        if self.path is None:
            return asked
        return self._configured.get(e.spec.name, e.spec.revision)

    def rewrite(self, e: Entry, asked: str | None) -> None:
        """Pin the commit `e` serves now in the lock (a no-op on a server that is not locked)."""
        path = self.path
        if path is None or e.model is None or e.model.commit is None:
            return
        from hf_provider.hub.lockfile import entry_from_snapshot, update_entry

        revision = self._configured.get(e.spec.name) or "main"
        # as `hfp lock` writes it: remote code is pinned to the model's own commit, the one serving now
        code = e.model.commit if e.spec.trust_remote_code else None
        entry = entry_from_snapshot(
            e.spec.name, e.spec.source, revision, e.model.commit, e.model.path, code_revision=code
        )
        update_entry(path, entry)
        log.info("lock entry of %s now pins %s (swapped to %s)", e.spec.name, e.model.commit, asked)
