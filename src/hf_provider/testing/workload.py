"""A rotating workload over more models than fit the memory budget: shared by the memory tests and
bench/memory.py.

Five random BERT classifiers of growing size are served by one Provider whose host budget is a third of their
total accounted size (weights plus one batch's working memory), so serving them in rotation forces evictions
and reloads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (hidden, layers) of the five models: from about 3 MB to 16 MB accounted each.
ROTATION_SIZES: tuple[tuple[int, int], ...] = ((128, 2), (192, 2), (256, 2), (256, 3), (256, 4))
TASK = "text-classification"
_GENERATIVE = {"text-generation", "text2text-generation", "summarization", "translation"}
TEXTS = ("Alice likes the good book.", "The movie in Paris is terrible.", "Bob reads the new report in Oslo.")


def build_rotation_models(out_dir: Path) -> dict[str, Path]:
    """name -> folder of the five rotation models (cached under out_dir)."""
    from hf_provider.testing.models import build_sized_bert

    return {f"bert-h{h}-l{n}": build_sized_bert(Path(out_dir), h, n) for h, n in ROTATION_SIZES}


def rotation_specs(paths: dict[str, Path], *, max_batch_size: int = 4, max_length: int = 64) -> list[Any]:
    from hf_provider.spec import ModelSpec

    return [
        ModelSpec(
            name=name,
            source=str(path),
            tasks=[TASK],
            device="cpu",
            max_length=max_length,
            batching={"max_batch_size": max_batch_size, "max_wait_ms": 1.0},
        )
        for name, path in paths.items()
    ]


def accounted_estimate(spec: Any) -> int:
    """Bytes the manager will admit `spec` against (the same call ModelManager.load_into makes, on CPU in
    fp32)."""
    import torch

    from hf_provider.models.admission import admission_estimate

    return admission_estimate(spec, Path(spec.source), torch.float32).total_bytes


@dataclass
class WorkloadResult:
    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    total_bytes: int = 0
    budget_bytes: int = 0
    peak_bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.failed} failed, {sum(self.loads.values())} loads "
            f"({', '.join(f'{k}: {v}' for k, v in self.loads.items())}); models total {self.total_bytes} B "
            f"= {self.total_bytes / self.budget_bytes:.2f}x the {self.budget_bytes} B budget; accounted peak "
            f"{self.peak_bytes} B; {self.seconds:.1f}s"
        )


def rotating_workload(
    provider: Any, names: list[str], *, threads: int = 4, rounds: int = 10, timeout_s: float = 60.0
) -> WorkloadResult:
    """Each thread sends `rounds` requests, to the models in rotation (thread i starts at model i)."""
    result = WorkloadResult()
    lock = threading.Lock()

    def client(i: int) -> None:
        for j in range(rounds):
            name = names[(i + j) % len(names)]
            try:
                out = provider.run(name, TASK, list(TEXTS[: 1 + (i + j) % len(TEXTS)]), timeout=timeout_s)
                assert len(out) == 1 + (i + j) % len(TEXTS), out
                err = None
            except Exception as exc:  # counted and reported: the workload must not fail any request
                err = f"{name}: {type(exc).__name__}: {exc}"
            with lock:
                result.requests += 1
                if err:
                    result.failed += 1
                    result.errors.append(err)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,), name=f"rotation-{i}") for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result.seconds = time.perf_counter() - t0
    result.loads = {d["name"]: d["loads"] for d in provider.admin.describe()}
    result.peak_bytes = provider.manager.accountant.peak("host")
    return result


def run_rotation(out_dir: Path, *, ratio: float = 2.5, threads: int = 4, rounds: int = 10) -> WorkloadResult:
    """Build the five models, serve them with a host budget of total/ratio, run the workload, close."""
    from hf_provider.provider import Provider
    from hf_provider.settings import MemorySettings, Settings

    specs = rotation_specs(build_rotation_models(out_dir))
    sizes = [accounted_estimate(s) for s in specs]
    total = sum(sizes)
    budget = int(total / ratio)
    if max(sizes) > budget:
        raise ValueError(
            f"the largest model ({max(sizes)} B) exceeds the budget ({budget} B); lower the ratio"
        )
    settings = Settings(
        memory=MemorySettings(host_budget=budget, min_residency_s=0, load_wait_s=60),
        metrics_enabled=False,
        history_enabled=False,
    )
    with Provider(specs, settings=settings, allow_adhoc=False) as provider:
        result = rotating_workload(provider, [s.name for s in specs], threads=threads, rounds=rounds)
    result.total_bytes, result.budget_bytes = total, budget
    return result


def unload_rss(
    source: Path, *, warmup: Path | None = None, task: str = "text2text-generation"
) -> dict[str, int]:
    """RSS of this process before loading `source`, after loading it and after unloading it (bytes).

    Run it in a fresh process for a clean figure. `warmup` (a small model of the same architecture) is loaded
    and unloaded first, so the one-off imports of its modeling code do not count as memory the unload failed
    to return.
    """
    import psutil

    from hf_provider.provider import Provider
    from hf_provider.settings import MemorySettings, Settings
    from hf_provider.spec import ModelSpec

    proc = psutil.Process()
    specs = [
        ModelSpec(
            name="model", source=str(source), tasks=[task], device="cpu", batching={"max_batch_size": 4}
        )
    ]
    if warmup is not None:
        specs.append(ModelSpec(name="warmup", source=str(warmup), tasks=[task], device="cpu"))
    settings = Settings(memory=MemorySettings(), metrics_enabled=False, history_enabled=False)
    with Provider(specs, settings=settings, allow_adhoc=False) as p:
        if warmup is not None:
            p.manager.get("warmup")
            p.unload("warmup")
        before = proc.memory_info().rss
        weight_bytes = p.manager.get("model").model.weight_bytes  # type: ignore[union-attr]
        # Weights may be memory-mapped from the safetensors file and only paged in when used: serve one
        # request
        # so that "loaded" is the model as it sits in memory while serving.
        p.run("model", task, TEXTS[0], {"max_new_tokens": 4} if task in _GENERATIVE else None)
        loaded = proc.memory_info().rss
        p.unload("model")
        after = proc.memory_info().rss
    return {"before": before, "loaded": loaded, "after": after, "weight_bytes": weight_bytes}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m hf_provider.testing.workload")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rss = sub.add_parser("rss", help="print RSS before load / after load / after unload as JSON")
    rss.add_argument("source", type=Path)
    rss.add_argument("--warmup", type=Path)
    rss.add_argument("--task", default="text2text-generation")
    rot = sub.add_parser("rotation", help="run the rotating workload and print its summary")
    rot.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "rss":
        json.dump(unload_rss(args.source, warmup=args.warmup, task=args.task), sys.stdout)
    else:
        print(run_rotation(args.out_dir).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
