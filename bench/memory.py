"""Memory management, measured in one run: `python bench/memory.py [--quick]`.

Prints
  1. estimate / actual weight bytes per model (estimate from safetensors headers only; actual after the load),
  2. all-MiniLM-L6-v2 fp32 vs int8 (torch dynamic, weight-only): weight bytes, throughput (sentences/s,
     batch 32) and minimum cosine to fp32 on the benchmark sentences, plus the accuracy guard's verdict
     through the manager,
  3. memory returned after unload (RSS before load / after load and one request / after unload, in a fresh
     process),
  4. requests failed (must be 0) in the rotating workload: five models, 2.5 times the host budget.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sentences import sentences

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MODELS_DIR = Path(
    os.environ.get("HFP_TEST_MODELS", Path(__file__).resolve().parent.parent / ".hfp" / "tiny-models")
)


def estimate_vs_actual(paths: dict[str, Path]) -> None:
    import torch

    from hf_provider.memory.estimate import estimate_weight_bytes
    from hf_provider.runtime.loader import load_model
    from hf_provider.spec import ModelSpec

    print("\n1. estimate / actual weight bytes (fp32, CPU)")
    print(f"   {'model':<22}{'estimate':>14}{'actual':>14}{'ratio':>8}")
    for name, path in paths.items():
        est = estimate_weight_bytes(path, torch.float32).weight_bytes
        model = load_model(ModelSpec(name=name, source=str(path), device="cpu", dtype="float32"))
        actual = model.weight_bytes
        del model
        print(f"   {name:<22}{est:>14,}{actual:>14,}{est / actual:>8.3f}")


def _rates(encoders: dict, texts: list[str], rounds: int = 3) -> dict[str, float]:
    """Best sentences/s of each encoder over `rounds` interleaved rounds: the variants share whatever else
    runs
    on the machine, and the best round is the least disturbed one."""
    for enc in encoders.values():
        enc(texts[:64])  # warm-up
    best = dict.fromkeys(encoders, 0.0)
    for _ in range(rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - t0))
    return best


def minilm_int8(texts: list[str]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from hf_provider.errors import QuantizationRejected
    from hf_provider.memory.estimate import module_bytes
    from hf_provider.memory.quantize import quantize_int8
    from hf_provider.provider import Provider
    from hf_provider.settings import MemorySettings, Settings
    from hf_provider.spec import ModelSpec
    from hf_provider.testing.models import minilm_path

    path = minilm_path()
    fp32 = SentenceTransformer(str(path), device="cpu")
    variants = {"fp32": fp32}
    for scheme in ("dynamic", "weight_only"):
        variants[f"int8 {scheme}"] = quantize_int8(copy.deepcopy(fp32), scheme)  # type: ignore[arg-type]

    def encoder(st):
        return lambda xs: st.encode(xs, batch_size=32, convert_to_tensor=True)

    reference = encoder(fp32)(texts)
    rates = _rates({name: encoder(st) for name, st in variants.items()}, texts)
    rows = []
    for name, st in variants.items():
        cos = torch.nn.functional.cosine_similarity(reference, encoder(st)(texts)).min().item()
        rows.append((name, module_bytes(st), rates[name], cos))

    # The guard's verdict through the manager (its own fixed guard sentences, threshold 0.99).
    verdict = {}
    settings = Settings(memory=MemorySettings(), metrics_enabled=False, history_enabled=False)
    specs = [
        ModelSpec(
            name=q,
            source=str(path),
            tasks=["embeddings"],
            device="cpu",
            quantization=q,
            batching={"max_batch_size": 32},
        )
        for q in ("int8", "int8-weight-only")
    ]
    with Provider(specs, settings=settings, allow_adhoc=False) as p:
        for q, label in (("int8", "int8 dynamic"), ("int8-weight-only", "int8 weight_only")):
            try:
                p.manager.get(q)
                cos = next(d for d in p.admin.describe() if d["name"] == q)["quantization_cosine"]
                verdict[label] = f"accepted (guard cosine {cos:.4f})"
            except QuantizationRejected as e:
                verdict[label] = f"REFUSED (guard cosine {e.measured:.4f})"
    verdict["fp32"] = "-"

    base_bytes, base_rate = rows[0][1], rows[0][2]
    print(
        f"\n2. all-MiniLM-L6-v2 on CPU ({torch.get_num_threads()} threads): {len(texts)} sentences, "
        "batch 32, best of 3 interleaved rounds"
    )
    print(
        f"   {'variant':<18}{'weight bytes':>14}{'x fp32':>8}{'sent/s':>9}{'x fp32':>8}{'min cos':>9}   guard"
    )
    for name, nbytes, rate, cos in rows:
        print(
            f"   {name:<18}{nbytes:>14,}{nbytes / base_bytes:>8.2f}{rate:>9.1f}{rate / base_rate:>8.2f}"
            f"{cos:>9.4f}   {verdict[name]}"
        )


def unload_rss(t5_small: Path, warmup: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hf_provider.testing.workload", "rss", str(t5_small), "--warmup", str(warmup)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    mib = {k: v / 2**20 for k, v in rss.items()}
    print("\n3. memory returned after unload (t5-small-sized random T5, fresh process)")
    print(
        f"   weights {mib['weight_bytes']:.1f} MiB; RSS before load {mib['before']:.1f} MiB, "
        f"after load + one request {mib['loaded']:.1f} MiB, after unload {mib['after']:.1f} MiB"
    )
    grew = rss["loaded"] - rss["before"]
    kept = rss["after"] - rss["before"]
    print(
        f"   after unload / before load = {rss['after'] / rss['before']:.3f} (target <= 1.10); "
        f"{100 * (1 - kept / grew):.1f}% of the growth returned"
    )


def rotation(models_dir: Path, rounds: int) -> int:
    from hf_provider.testing.workload import run_rotation

    result = run_rotation(models_dir, ratio=2.5, threads=4, rounds=rounds)
    print(
        "\n4. rotating workload (4 threads, five BERT classifiers, host budget = total / 3, min residency 0)"
    )
    print(f"   {result.summary()}")
    print(
        f"   requests failed: {result.failed} (must be 0); peak within budget: "
        f"{result.peak_bytes <= result.budget_bytes}"
    )
    for e in result.errors[:5]:
        print(f"   error: {e}")
    return result.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 sentences, fewer rotation rounds")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where test models are built and cached (default: .hfp/tiny-models)",
    )
    args = parser.parse_args()
    import transformers

    from hf_provider.testing.models import build_t5_small_random, build_tiny_models, minilm_path
    from hf_provider.testing.workload import build_rotation_models

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    models_dir = args.models_dir or MODELS_DIR
    with tempfile.TemporaryDirectory() as home:
        os.environ.setdefault("HF_HOME", home)
        tiny = build_tiny_models(models_dir)
        t5_small = build_t5_small_random(models_dir)
        paths = {
            **tiny,
            **build_rotation_models(models_dir),
            "all-MiniLM-L6-v2": minilm_path(),
            "t5-small-random": t5_small,
        }
        estimate_vs_actual(paths)
        minilm_int8(sentences(128 if args.quick else 512))
        unload_rss(t5_small, tiny["t5"])
        failed = rotation(models_dir, 5 if args.quick else 10)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
