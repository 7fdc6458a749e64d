#!/usr/bin/env bash
# Issue 12 on a GPU (H100 / H200): continuous batching for generation against static `generate`, in one run.
#
#   OUT=/path/to/out bash bench/gpu_issue12.sh
#
# Needs Python 3.12 with torch (CUDA) and transformers. The Provider path also imports pydantic,
# pydantic-settings and tenacity (and transformers' generation imports psutil): put their wheels' contents on
# PYTHONPATH before running; nothing of the server (fastapi, uvicorn, orjson, prometheus-client) or the CLI
# (typer, rich) is imported. Writes $OUT/gpu_generation.json, $OUT/gpu_generation.log and $OUT/env.txt;
# finishes in about 3 minutes (the workload is 256 requests; each step is bounded by `timeout`).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${OUT:-$ROOT/gpu-out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src:$HERE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export HFP_BENCH_MODELS="${HFP_BENCH_MODELS:-/tmp/hfp-gpu-models}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
missing = []
# psutil: transformers' generation imports it in some versions; reported, not required here.
for name in ("torch", "transformers", "tokenizers", "pydantic", "pydantic_settings", "tenacity", "psutil"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except ImportError as e:
        if name != "psutil":
            missing.append(name)
        print(name, "MISSING:", e)
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda)
if missing:
    sys.exit(f"missing modules: {missing}; put their wheels on PYTHONPATH")
EOF
} 2>&1 | tee "$OUT/env.txt"

# The workload itself: ceiling (static generate grouped by length), then the Provider with continuous batching,
# then with static batching (the previous behaviour), each with the Poisson stream and the 64-request burst.
timeout 330 "$PY" "$HERE/gpu_generation.py" "$OUT/gpu_generation.json" 2>&1 \
  | grep -v -e "Loading weights" -e "Writing model shards" | tee "$OUT/gpu_generation.log"
