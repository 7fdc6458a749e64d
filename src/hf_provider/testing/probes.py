"""Measurements that need a fresh process: RSS of a model loaded for a set of tasks, and CLI cold start.

`python -m hf_provider.testing.probes rss SOURCE TASK [TASK ...]` prints JSON {rss_before, rss_after, weight_bytes}.
Used by the multi-task memory test and by bench/multitask_memory.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_GENERATIVE = {
    "text-generation",
    "text2text-generation",
    "translation",
    "summarization",
    "question-answering",
}
_SAMPLE = {
    "question-answering": {"question": "What was rebuilt?", "context": "The harbour was rebuilt."},
    "fill-mask": "The harbour was [MASK].",
}


def _rss_in_process(source: str, tasks: list[str]) -> dict:
    import gc

    import psutil

    from hf_provider.memory.release import release_memory
    from hf_provider.provider import Provider
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec

    proc = psutil.Process()
    spec = ModelSpec(name="m", source=source, tasks=tasks)
    provider = Provider([spec], settings=load_settings({"metrics_enabled": False}))
    gc.collect()
    release_memory("cpu")
    before = proc.memory_info().rss
    info = provider.load("m")
    # One small request per task touches every weight page (safetensors may be memory-mapped until then).
    for task in tasks:
        provider.run(
            "m", task, _SAMPLE.get(task, "The harbour was rebuilt after the storm."), {"max_new_tokens": 2}
        ) if task in _GENERATIVE else provider.run("m", task, _SAMPLE.get(task, "The harbour was rebuilt."))
    gc.collect()
    release_memory("cpu")
    after = proc.memory_info().rss
    entry = provider.manager.get("m")
    handler_modules = {id(h.model.module) for h in entry.model.handlers.values()}
    provider.close()
    return {
        "tasks": tasks,
        "rss_before": before,
        "rss_after": after,
        "rss_added": after - before,
        "weight_bytes": info["weight_bytes"],
        "distinct_modules": len(handler_modules),
    }


def rss_of_load(source: str | Path, tasks: list[str]) -> dict:
    """Load `source` for `tasks` in a fresh interpreter and report its RSS growth."""
    out = subprocess.run(
        [sys.executable, "-m", "hf_provider.testing.probes", "rss", str(source), *tasks],
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "rss":
        print(json.dumps(_rss_in_process(sys.argv[2], sys.argv[3:])))
    else:
        sys.exit("usage: python -m hf_provider.testing.probes rss SOURCE TASK [TASK ...]")
