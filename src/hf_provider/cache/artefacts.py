"""Where `hfp optimize` keeps its exported graphs and results in the HF cache's assets folder, and their removal
with the revisions the cache budget removes (optimize/store.py writes and reads them).

In cache/ because the budget (cache/budget.py) must drop a removed commit's artefacts, and the cache sits
below optimize/ in the layers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hf_provider.cache.hubenv import HubEnv


def root(cache_dir: Path | None = None) -> Path:
    """The optimize folder for the HF cache `cache_dir` (the current one when None)."""
    from huggingface_hub import cached_assets_path

    cache_dir = Path(cache_dir or HubEnv.current().cache_dir)
    assets = os.environ.get("HF_ASSETS_CACHE") or str(cache_dir.parent / "assets")
    return cached_assets_path(library_name="hf-provider", namespace="optimize", assets_dir=assets)


def drop_commits(cache_dir: Path, commits: set[str]) -> int:
    """Remove the artefacts and results of these commits (the cache budget removed their snapshots); returns
    the bytes freed."""
    r, freed = root(cache_dir), 0
    for d in (r / "artefacts").glob("*"):
        if any(d.name.startswith(c[:40]) for c in commits):
            freed += sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
            shutil.rmtree(d, ignore_errors=True)
    for f in (r / "results").glob("*.json"):
        try:
            commit = json.loads(f.read_text()).get("model_id")
        except (OSError, ValueError):
            continue
        if commit in commits:
            freed += f.stat().st_size
            f.unlink(missing_ok=True)
    return freed
