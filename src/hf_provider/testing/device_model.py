"""A device-bound test model: served through the normal configuration as an `embeddings` model, its forward
pass waits a fixed time per batch of up to `batch_rows` rows while holding no CPU and no GIL (a stand-in for a
GPU or a remote accelerator; the code is testing/device_code.py). Replicas of it add capacity the way replicas
on devices do, which is what bench/ray_scale.py --device-bound measures on a machine without one.

Selected by configuration, not by a switch in the serving code: the saved folder's config.json maps AutoModel
to the code saved beside the weights (transformers' remote code), so a spec loads it like any Hub model that
ships its own code, with `trust_remote_code = true`:

    [[models]]
    name = "device"
    source = "/path/printed/by/build_device_bound"
    tasks = ["embeddings"]
    trust_remote_code = true
    batching = { max_batch_size = 8 }
"""

from __future__ import annotations

from pathlib import Path

from hf_provider.testing.models import _cached, _seed
from hf_provider.testing.tiny_tokenizers import wordpiece_tokenizer


def build_device_bound(
    out_dir: Path,
    *,
    batch_seconds: float = 0.02,
    batch_rows: int = 8,
    ballast_bytes: int = 0,
    name: str | None = None,
) -> Path:
    """The folder of a device-bound model (built once per parameters under out_dir): `batch_seconds` of
    waiting per `batch_rows` rows of a batch, and `ballast_bytes` of weights besides a small embedding table
    (a model of that many bytes for placement by a replica's byte budget)."""
    name = name or f"device-bound-{int(batch_seconds * 1e6)}us-{batch_rows}r-{ballast_bytes}b"

    def build(dest: Path) -> None:
        from hf_provider.testing.device_code import DeviceBoundConfig, DeviceBoundModel

        tok = wordpiece_tokenizer()
        config = DeviceBoundConfig(
            vocab_size=len(tok),
            batch_seconds=batch_seconds,
            batch_rows=batch_rows,
            ballast_bytes=ballast_bytes,
            pad_token_id=tok.pad_token_id,
            architectures=["DeviceBoundModel"],
        )
        # the classes' own file goes into the folder with an auto_map naming it: transformers' remote code
        DeviceBoundConfig.register_for_auto_class()
        DeviceBoundModel.register_for_auto_class("AutoModel")
        _seed()
        DeviceBoundModel(config).save_pretrained(dest)
        tok.save_pretrained(dest)

    return _cached(Path(out_dir), name, build)
