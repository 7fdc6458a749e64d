"""The server config of bench/interference.py: one T5 weight set under three names with different scheduling
config, and MiniLM, written as the hfp.toml that `hfp serve` loads; and the legend that prints those configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHARE = {"translation": 3, "summarization": 1}


def model_configs(args: argparse.Namespace) -> dict[str, dict]:
    """name -> ModelSpec overrides of the T5 models (same weights, scheduling config apart)."""
    batching: dict = {
        "generation": args.generation,
        "yield_to_interactive": args.yield_to_interactive,
        "cross_task": True,
    }
    if args.max_batch_size:
        batching["max_batch_size"] = args.max_batch_size
    return {
        "t5": {"batching": batching},
        "t5-share": {"batching": batching, "task_share": SHARE},
        "t5-xt-off": {"batching": {**batching, "cross_task": False}},
    }


def _toml(v: object) -> str:
    """A TOML value: JSON's strings, numbers and booleans are TOML's (paths here are plain), dicts inline."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)


def write_config(work: Path, t5: Path, minilm: Path, configs: dict[str, dict], device: str) -> Path:
    text = f"home = {_toml(str(work / 'hfp-home'))}\n"
    models = {
        name: {
            "source": str(t5),
            "tasks": ["translation", "summarization"],
            "device": device,
            **cfg,
        }
        for name, cfg in configs.items()
    }
    models["minilm"] = {"source": str(minilm), "tasks": ["embeddings"], "device": device}
    for name, spec in models.items():
        text += f"\n[[models]]\nname = {_toml(name)}\n" + "".join(
            f"{k} = {_toml(v)}\n" for k, v in spec.items()
        )
    path = work / "hfp.toml"
    path.write_text(text)
    return path


def legend(configs: dict[str, dict]) -> str:
    def flat(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if isinstance(v, dict) and k == "batching":
                out += flat(v, f"{k}.")
            else:
                out.append(f"{prefix}{k}={json.dumps(v) if isinstance(v, dict) else v}")
        return out

    return "\n".join(f"  {name}: {', '.join(flat(cfg))}" for name, cfg in configs.items())
