"""`hfp run`'s inputs: `--param key=value` and the positional inputs as the task takes them (JSON objects, image
and audio files read as bytes, rerank / score pairs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hf_provider.cli.common import fail
from hf_provider.types import IMAGE_TASKS


def parse_param(raw: str) -> tuple[str, Any]:
    if "=" not in raw:
        fail(f"--param takes key=value, got {raw!r}", 2)
    key, value = raw.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def run_payload(task: str, inputs: list[str]) -> tuple[list[Any], Any]:
    """The inputs as values (files read), and the payload the task takes."""
    values: list[Any] = [json.loads(i) if i.lstrip().startswith("{") else i for i in inputs]
    if task == "automatic-speech-recognition":  # inputs are audio files: their bytes go to the model
        values = [_audio_file(i) for i in inputs]
    elif task in IMAGE_TASKS or task == "embeddings":  # image files as their bytes (a CLIP embeds them too)
        values = [_image_file(v, task in IMAGE_TASKS) for v in values]
    from hf_provider.cli.run_pairs import payload as pair_payload

    payload: Any = pair_payload(task, values)  # rerank QUERY DOC..., score TEXT_1 TEXT_2...
    if payload is None:
        payload = values[0] if len(values) == 1 else values
    return values, payload


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _image_file(value: Any, any_file: bool) -> Any:
    """The bytes of an image file named on the command line (any file for an image task), else the value."""
    if not isinstance(value, str) or not (any_file or value.lower().endswith(_IMAGE_SUFFIXES)):
        return value
    path = Path(value)
    return path.read_bytes() if path.is_file() else value


def _audio_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        fail(f"cannot read audio file {path!r}: {e.strerror or e}", 2)
        raise  # fail exits; for the type checker
