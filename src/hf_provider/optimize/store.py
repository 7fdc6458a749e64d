"""Where optimization outputs live: built artefacts (ONNX files) and cached `auto` results.

Both sit in huggingface_hub's assets folder beside the provider's cache state (`<HF_HOME>/assets/hf-provider/
optimize/`), so they follow the HF cache they were built from:

- `artefacts/<model key>/`: the exported files of one model commit under one set of library versions, with a
  `manifest.json` of their sizes and sha256. A later load verifies them through the cache's digest records
  (cache/integrity.py `file_digest`: unchanged files are not read again) and rebuilds on any mismatch. The cache
  budget (cache/budget.py) drops the artefacts of every revision it removes (`drop_commits`).
- `results/<key>.json`: the table and choice of one measurement, keyed by (model commit, tasks, hardware,
  library versions), so `optimize = "auto"` measures once per machine and upgrade, not per load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hf_provider.cache.artefacts import root
from hf_provider.optimize.env import digest, hardware, library_versions

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def model_id(path: Path, commit: str | None) -> str:
    """The model's identity in keys: its commit, or for a plain local folder a fingerprint of its files (path,
    size, mtime), which changes whenever a file does."""
    if commit:
        return commit
    files = sorted(
        (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in Path(path).rglob("*")
        if p.is_file()
    )
    return "local-" + digest(str(Path(path).resolve()), files)


def artefact_dir(path: Path, commit: str | None, task: str, cache_dir: Path | None = None) -> Path:
    """This model commit's artefact folder for `task` under the installed library versions (created)."""
    mid = model_id(path, commit)
    d = root(cache_dir) / "artefacts" / f"{mid[:40]}-{digest(mid, task, library_versions())}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_manifest(folder: Path, names: list[str], cache_dir: Path | None = None) -> None:
    from hf_provider.cache.integrity import file_sha256

    files = {
        n: {"size": (folder / n).stat().st_size, "sha256": file_sha256(folder / n, cache_dir)} for n in names
    }
    _atomic_json(folder / MANIFEST, {"files": files})


def intact(folder: Path, names: list[str], cache_dir: Path | None = None) -> bool:
    """True when every name is in the manifest and on disk with the recorded size and sha256. A mismatch is
    logged and the folder's files are removed, so the caller builds them again."""
    from hf_provider.cache.integrity import file_sha256

    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    for n in names:
        p, want = folder / n, files.get(n)
        if want is None or not p.is_file():
            return False
        if p.stat().st_size != want["size"] or file_sha256(p, cache_dir) != want["sha256"]:
            log.warning("optimize artefact %s does not match its manifest; building it again", p)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            return False
    return True


def total_bytes(cache_dir: Path | None = None) -> int:
    r = root(cache_dir)
    return sum(p.stat().st_size for p in r.rglob("*") if p.is_file())


def result_key(mid: str, tasks: list[str]) -> str:
    return digest(mid, sorted(tasks), hardware(), library_versions())


def read_result(key: str, cache_dir: Path | None = None) -> dict[str, Any] | None:
    try:
        return json.loads((root(cache_dir) / "results" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def write_result(key: str, result: dict[str, Any], cache_dir: Path | None = None) -> Path:
    p = root(cache_dir) / "results" / f"{key}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    _atomic_json(p, result)
    return p


def _atomic_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
