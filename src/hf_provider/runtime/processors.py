"""What a checkpoint needs besides its weights to read inputs: whether it has a tokenizer (a ViT has none), and its
image processor, loaded as transformers' AutoImageProcessor loads it, from the local snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The files transformers' tokenizer loaders read; a snapshot with none of them has no tokenizer (a vision model).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in _TOKENIZER_FILES)


def has_image_processor(path: Path) -> bool:
    """True when the snapshot configures an image processor: `preprocessor_config.json` naming one (not an
    audio feature extractor), or a processor (`processor_config.json`, transformers 5) that holds one."""
    for name, key in (
        ("preprocessor_config.json", "image_processor_type"),
        ("processor_config.json", "image_processor"),
    ):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return True  # unreadable: let the load say what is wrong with it
        if isinstance(data, dict) and key in data:
            return True
    return False


def load_image_processor(path: Path, trust_remote_code: bool) -> Any | None:
    """The snapshot's image processor, or None when it configures none."""
    if not has_image_processor(path):
        return None
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(
        path, trust_remote_code=trust_remote_code, local_files_only=True
    )
