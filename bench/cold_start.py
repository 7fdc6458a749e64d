"""`hfp run` cold start on MiniLM vs a plain SentenceTransformer(path) load, each in a fresh process, same run.

    python bench/cold_start.py [--repeats 3]

Prints medians of wall time and the ratios hfp/raw (load only, and load + one encode).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hf_provider.testing.models import minilm_path

HFP = str(Path(sys.executable).with_name("hfp"))


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = str(minilm_path())
    load = [
        sys.executable,
        "-c",
        f"from sentence_transformers import SentenceTransformer; SentenceTransformer({path!r})",
    ]
    encode = [
        sys.executable,
        "-c",
        "from sentence_transformers import SentenceTransformer; "
        f"SentenceTransformer({path!r}).encode(['a cat'])",
    ]
    hfp = [HFP, "run", "all-MiniLM-L6-v2", "embeddings", "a cat", "--json"]
    wall(load)  # warm the page cache so neither side pays first-read disk costs
    times: dict[str, list[float]] = {"raw_load": [], "raw_load_encode": [], "hfp_run": []}
    for _ in range(args.repeats):
        times["raw_load"].append(wall(load))
        times["raw_load_encode"].append(wall(encode))
        times["hfp_run"].append(wall(hfp))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:16s} median {v:.2f}s  ({', '.join(f'{x:.2f}' for x in times[k])})")
    print(f"hfp run / SentenceTransformer(path) load: {med['hfp_run'] / med['raw_load']:.2f}")
    print(f"hfp run / SentenceTransformer(path) load + encode: {med['hfp_run'] / med['raw_load_encode']:.2f}")


if __name__ == "__main__":
    main()
