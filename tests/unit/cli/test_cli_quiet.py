"""Third-party noise: off in `hfp` (and the server), on with --verbose, untouched by the library.

The CLI runs in a child process: the switches are process-wide, and a fresh process is what a user starts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_provider.observability.quiet import DemoteOnnxruntime

LOADING = "Loading weights"
ONNX_ADVICE = "Please consider to run pre-processing"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "HFP_VERBOSE")}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    # a fresh cache: optimize keeps its ONNX graphs beside HF_HUB_CACHE, and a cached graph is not quantized again
    hf = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    return {**env, **hf, "HFP_HOME": str(tmp_path / "hfp"), "COLUMNS": "200"}


def _hfp(tmp_path: Path, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "hf_provider.cli.main", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def test_optimize_prints_neither_the_weights_bar_nor_onnxruntime_advice(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    model = str(tiny_models["bert-cls"])
    args = ["optimize", model, "--task", "text-classification", "--candidates", "onnx-int8", "--repeats", "1"]
    out = _hfp(tmp_path, *args, "--no-lock")
    assert "onnx-int8" in out
    assert LOADING not in out and ONNX_ADVICE not in out, out


def test_verbose_shows_them(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = str(tiny_models["bert-cls"])
    args = ["optimize", model, "--task", "text-classification", "--candidates", "onnx-int8", "--repeats", "1"]
    out = _hfp(tmp_path, "--verbose", *args, "--no-lock")
    assert LOADING in out and ONNX_ADVICE in out, out


def test_run_prints_no_weights_bar(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = _hfp(tmp_path, "run", str(tiny_models["bert-cls"]), "text-classification", "hello", "--json")
    assert LOADING not in out, out


LIBRARY = """
import json, logging, os, sys, warnings
import huggingface_hub.utils as hub
from transformers.utils import logging as tf
# what the load imports anyway, before the snapshot: torch, scipy and sympy add warnings filters of their own
import torch, scipy.sparse, scipy.special, transformers
transformers.BertForSequenceClassification

def state():
    return {
        "bars": tf.is_progress_bar_enabled(),
        "hub_bars": not hub.are_progress_bars_disabled(),
        "verbosity": tf.get_verbosity(),
        "warnings": [repr(f) for f in warnings.filters],
        "root_filters": [type(f).__name__ for f in logging.getLogger().filters],
        "env": {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")},
    }

before = state()
from hf_provider import Provider, ModelSpec
from hf_provider.settings import Settings
with Provider(settings=Settings(models=[ModelSpec(name="m", source=sys.argv[1])])) as p:
    p.run("m", "text-classification", "hello")
print("STATE" + json.dumps([before, state()]))
"""


def test_a_library_provider_leaves_bars_warnings_and_logging_alone(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", LIBRARY, str(tiny_models["bert-cls"])],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("STATE"))
    before, after = json.loads(line.removeprefix("STATE"))
    assert before["bars"] is True and before["hub_bars"] is True  # as the host program had them
    assert after == before
    assert LOADING in run.stderr  # the host program's bars, left on


def _record(pathname: str, name: str = "root") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, pathname, 1, ONNX_ADVICE, None, None)


def test_onnxruntime_root_warnings_become_debug_records() -> None:
    demote, root = DemoteOnnxruntime(), logging.getLogger()
    onnx = os.path.join("site-packages", "onnxruntime", "quantization", "quantize.py")
    ours = _record(os.path.join("site-packages", "hf_provider", "x.py"))
    assert demote.filter(ours) and ours.levelno == logging.WARNING  # others pass unchanged
    assert demote.filter(_record(onnx, name="onnxruntime"))  # its named loggers are the user's to set
    level = root.level
    try:
        root.setLevel(logging.WARNING)
        record = _record(onnx)
        assert not demote.filter(record) and record.levelname == "DEBUG"
        root.setLevel(logging.DEBUG)  # debug logging keeps them
        assert demote.filter(_record(onnx))
    finally:
        root.setLevel(level)


def test_the_test_model_builder_prints_only_its_json(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "hf_provider.testing.models", str(tmp_path / "models")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("{"), run.stdout[:200]  # the tokenizer trainers' blank lines are gone
    assert "bert-cls" in json.loads(run.stdout)
    assert "Writing model shards" not in run.stderr, run.stderr[-2000:]


SERVER = """
import json, logging, sys
from transformers.utils import logging as tf
from hf_provider.provider import Provider
from hf_provider.server.app import create_app
from hf_provider.settings import load_settings
settings = load_settings({"metrics_enabled": False, "load_on_start": False, "server": {"log_level": sys.argv[1]}})
create_app(Provider([], settings=settings))
print("STATE" + json.dumps([tf.is_progress_bar_enabled(), tf.get_verbosity() == logging.ERROR]))
"""


@pytest.mark.parametrize(("level", "quiet"), [("info", True), ("debug", False)])
def test_the_server_entry_point_quiets_them_unless_debug(tmp_path: Path, level: str, quiet: bool) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SERVER, level], env=_env(tmp_path), capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("STATE"))
    bars, errors_only = json.loads(line.removeprefix("STATE"))
    assert (not bars, errors_only) == (quiet, quiet)
