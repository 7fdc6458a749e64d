"""Integrity and self-repair, the issue's done-means: N runs, each flipping one random byte (one random bit of
it) of a cached safetensors file, then loading the model: every flip detected before the load, every one repaired
by downloading that one file again, and the model loads (its output equals the untouched model's).

    python bench/integrity.py [--runs 100] [--model bert-cls]

Against LocalHub, counting the requests it serves. The baseline in the same run is a clean load (files intact:
the check reads nothing, its verdicts are cached); the figures are detection and repair counts, the files and
bytes fetched per repair, and load times.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from _localhub import point_at
from hf_provider import ModelSpec, Provider
from hf_provider.testing.hub_server import LocalHub
from hf_provider.testing.models import build_tiny_models

REPO = "bench/model"


def _fetched(hub: LocalHub) -> list[str]:
    out = []
    for r in hub.requests:
        if r.method == "GET" and "/_lfs/" in r.path:
            out.append(r.path.split("f=")[-1].split("&")[0])
        elif r.method == "GET" and "/resolve/" in r.path:
            out.append(r.path.rsplit("/", 1)[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--model", default="bert-cls", help="a tiny model of hf_provider.testing.models")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    logging.basicConfig(level=logging.ERROR)  # each run logs its quarantine as a warning: the counts say it
    tiny = build_tiny_models(Path(os.environ.get("HFP_TEST_MODELS", ".hfp/tiny-models")))
    with tempfile.TemporaryDirectory() as home, LocalHub() as hub:
        point_at(hub, Path(home))
        hub.add_commit(REPO, tiny[args.model])
        spec = ModelSpec(name="m", source=REPO, tasks=["text-classification"])
        provider = Provider([spec])
        try:
            provider.load("m")
            model = provider.manager.get("m").model
            snapshot = Path(model.path)
            expected = provider.run("m", "text-classification", ["a quiet check"])
            provider.unload("m")
            snap_bytes = sum(p.stat().st_size for p in snapshot.iterdir())
            n_files = len(list(snapshot.iterdir()))
            target = snapshot / "model.safetensors"
            size = target.stat().st_size

            clean = []
            for _ in range(5):
                hub.clear_requests()
                t0 = time.perf_counter()
                provider.load("m")
                clean.append(time.perf_counter() - t0)
                provider.unload("m")
                assert _fetched(hub) == [], _fetched(hub)

            detected = repaired = one_file = same_output = 0
            times, fetched_bytes = [], 0
            for _ in range(args.runs):
                real = Path(os.path.realpath(target))
                raw = bytearray(real.read_bytes())
                i = rng.randrange(len(raw))
                raw[i] ^= 1 << rng.randrange(8)
                real.write_bytes(bytes(raw))
                hub.clear_requests()
                t0 = time.perf_counter()
                try:
                    provider.load("m")
                except Exception as e:  # counted as a failed repair; the run goes on
                    print(f"run failed at byte {i}: {type(e).__name__}: {e}")
                    continue
                times.append(time.perf_counter() - t0)
                files = _fetched(hub)
                detected += bool(files)
                one_file += files == ["model.safetensors"]
                fetched_bytes += size * files.count("model.safetensors")
                repaired += _intact(target, tiny[args.model] / "model.safetensors")
                same_output += provider.run("m", "text-classification", ["a quiet check"]) == expected
                provider.unload("m")
        finally:
            provider.close()
    n = args.runs
    print(
        f"{args.model}: snapshot {snap_bytes} bytes, model.safetensors {size} bytes, {n} runs, seed {args.seed}"
    )
    print(f"detected:  {detected}/{n}")
    print(f"repaired:  {repaired}/{n} (file identical to the Hub's afterwards)")
    print(f"one file:  {one_file}/{n} runs downloaded exactly model.safetensors, nothing else")
    print(f"same output after repair: {same_output}/{n}")
    print(
        f"fetched per repair: {fetched_bytes / max(1, detected):.0f} bytes, 1 of the snapshot's {n_files} files "
        f"({snap_bytes} bytes)"
    )
    ok, bad = statistics.median(clean), statistics.median(times)
    print(
        f"load time: clean {ok * 1000:.0f} ms (median of 5), with detection and repair {bad * 1000:.0f} ms "
        f"(median) = {bad / ok:.2f}x"
    )


def _intact(path: Path, original: Path) -> bool:
    return Path(os.path.realpath(path)).read_bytes() == original.read_bytes()


if __name__ == "__main__":
    main()
