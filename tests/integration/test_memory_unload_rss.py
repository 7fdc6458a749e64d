"""Unloading gives memory back: in a fresh process, RSS after unloading a t5-small-sized model (~240 MB
fp32) is within 10% of RSS before it was loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_CACHE

from hf_provider.testing.models import build_t5_small_random


def test_rss_returns_within_ten_percent_after_unload(tiny_models: dict[str, Path]) -> None:
    big = build_t5_small_random(TINY_CACHE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_provider.testing.workload",
            "rss",
            str(big),
            "--warmup",
            str(tiny_models["t5"]),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    grew = rss["loaded"] - rss["before"]
    print(
        f"RSS before {rss['before'] >> 20} MiB, loaded {rss['loaded'] >> 20} MiB, after unload "
        f"{rss['after'] >> 20} MiB (weights {rss['weight_bytes'] >> 20} MiB)"
    )
    assert grew > 0.8 * rss["weight_bytes"]  # the load was visible in RSS
    assert rss["after"] <= 1.10 * rss["before"], rss
