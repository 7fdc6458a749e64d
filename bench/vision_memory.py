"""One CLIP weight set for three tasks: resident memory of the second and third task against the first.

`python bench/vision_memory.py [--hidden 768 --layers 12]`: a random CLIP (both towers of that width and depth,
224-pixel images in 32-pixel patches; 768 x 12 is about CLIP ViT-B/32's size, ~170M parameters, 680 MB in
float32) is served in a fresh process per scenario, and RSS (after gc and malloc_trim) is read at each step:

  A. tasks = [embeddings]: load, then text embeddings                                   -> the first task
  B. tasks = [embeddings, zero-shot-image-classification]: load, text embeddings, then image embeddings (the
     second task, same handler), then zero-shot-image-classification (the third task)

transformers 5 memory-maps safetensors weights: a tower's pages become resident when it first runs, so after text
embeddings alone the vision tower is not yet in RSS (it is in the accounting). Each scenario therefore reads every
weight once after the load (as a server that has served each kind of request holds them), and the steps then
measure what each task adds beyond the one weight set. `--no-touch` leaves the pages to fault in as requests come
(the vision tower then shows up at the first image request: the same weights, counted once by the budget).
Prints RSS added over the process before the load at each step, its private part (RssAnon: not the mapped
weights or library code), the model's byte accounting (`Entry.accounted_bytes`: weights + working estimate, what
the memory budget admits), and the ratios second/first, third/first (target: at most 1.10).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _image(seed: int) -> str:
    import numpy as np
    from PIL import Image

    im = Image.fromarray((np.random.RandomState(seed).rand(300, 400, 3) * 255).astype("uint8"))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def child(source: str, tasks: list[str], touch: bool) -> dict:
    import gc

    import psutil

    from hf_provider.memory.release import release_memory
    from hf_provider.provider import Provider
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec

    proc = psutil.Process()

    def rss() -> tuple[int, int]:
        gc.collect()
        release_memory("cpu")
        return proc.memory_info().rss, _status("RssAnon")

    def added(now: tuple[int, int]) -> list[int]:
        return [now[0] - before[0], now[1] - before[1]]

    spec = ModelSpec(name="clip", source=source, tasks=tasks, device="cpu", dtype="float32")
    texts = [f"a photo of a {w}" for w in ("cat", "dog", "car", "house")] * 8
    images = [_image(i) for i in range(8)]
    with Provider([spec], settings=load_settings({"metrics_enabled": False, "history_enabled": False})) as p:
        before = rss()
        p.load("clip")
        if touch:  # every weight page read once: the weight set resident, whichever tower runs first
            import torch

            with torch.inference_mode():
                for t in p.manager.get("clip").model.module.parameters():
                    float(t.sum())
        out: dict = {"tasks": tasks, "steps": {}}
        p.run("clip", "embeddings", texts)
        out["steps"]["text embeddings"] = added(rss())
        if len(tasks) > 1:
            p.run("clip", "embeddings", images)
            out["steps"]["+ image embeddings"] = added(rss())
            labels = {"candidate_labels": ["cat", "dog", "car"]}
            p.run("clip", "zero-shot-image-classification", images, labels)
            out["steps"]["+ zero-shot-image-classification"] = added(rss())
        e = p.manager.get("clip")
        out["accounted_bytes"] = e.accounted_bytes
        out["weight_bytes"] = e.model.weight_bytes
        out["modules"] = len({id(h.model.module) for h in e.model.handlers.values()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--no-touch", action="store_true", help="let weight pages fault in as requests come")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:], touch=not args.no_touch)))
        return
    from hf_provider.testing.vision_models import build_sized_clip

    cache = Path(tempfile.gettempdir()) / "hfp-bench-models"
    source = str(build_sized_clip(cache, args.hidden, args.layers))

    def run(tasks: list[str]) -> dict:
        cmd = [
            sys.executable,
            __file__,
            *(["--no-touch"] if args.no_touch else []),
            "--child",
            source,
            *tasks,
        ]
        return json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )

    a = run(["embeddings"])
    b = run(["embeddings", "zero-shot-image-classification"])
    mib = 1024 * 1024
    first, first_anon = a["steps"]["text embeddings"]
    touched = "weights read once after the load" if not args.no_touch else "weights paged in as requests come"
    print(
        f"CLIP hidden {args.hidden} x {args.layers} layers: weights {a['weight_bytes'] / mib:.1f} MiB ({touched})"
    )
    print(
        f"A {a['tasks']}: RSS added {first / mib:.1f} MiB (private {first_anon / mib:.1f}); "
        f"accounted {a['accounted_bytes'] / mib:.1f} MiB"
    )
    worst = 0.0
    for step, (rss_added, anon_added) in b["steps"].items():
        ratio = rss_added / first
        worst = max(worst, ratio)
        print(
            f"B {step:<34} RSS added {rss_added / mib:7.1f} MiB (private {anon_added / mib:6.1f})   "
            f"ratio to A's first task {ratio:.3f}"
        )
    print(
        f"B accounted {b['accounted_bytes'] / mib:.1f} MiB (ratio {b['accounted_bytes'] / a['accounted_bytes']:.3f}); "
        f"modules behind B's handlers: {b['modules']}"
    )
    print(f"worst ratio {worst:.3f} (target <= 1.10): {'OK' if worst <= 1.10 else 'OVER'}")


if __name__ == "__main__":
    main()
