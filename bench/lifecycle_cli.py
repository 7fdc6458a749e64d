"""Real output of `hfp serve --locked` (no lock yet), `hfp lock`, `hfp outdated`, `hfp cache ls | verify |
prune --dry-run` against LocalHub.

    python bench/lifecycle_cli.py [--out /tmp/helpers/issue11_cli_output.txt]

Starts a LocalHub in this process with three tiny models, writes an hfp.toml in a temporary folder, runs the
`hfp` commands as subprocesses (the installed CLI, its HF client pointed at the LocalHub), moves a branch between
`hfp lock` and `hfp outdated`, flips a byte in one cached file before `hfp cache verify`, and prints everything
(also to --out).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hf_provider.hub.resolve import resolve
from hf_provider.testing.hub_server import LocalHub
from hf_provider.testing.models import build_tiny_models

HFP = str(Path(sys.executable).with_name("hfp"))
CONFIG = """\
[cache]
disk_budget = "600KB"

[[models]]
name = "classifier"
source = "acme/bert-cls"
tasks = ["text-classification"]

[[models]]
name = "ner"
source = "acme/bert-ner"
revision = "v1"

[[models]]
name = "generator"
source = "acme/tiny-decoder"
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/helpers/issue11_cli_output.txt")
    args = ap.parse_args()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # this process's own downloads (resolve) would print bars between the outputs
    tiny = build_tiny_models(Path(os.environ.get("HFP_TEST_MODELS", ".hfp/tiny-models")))
    log: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, LocalHub() as hub:
        home = Path(tmp) / "hf-home"
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "COLUMNS": "150",
        }
        os.environ.update({k: env[k] for k in ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")})
        hub.add_commit("acme/bert-cls", tiny["bert-cls"])
        hub.add_commit("acme/bert-ner", tiny["bert-ner"], tag="v1")
        hub.add_commit("acme/tiny-decoder", tiny["decoder"])
        cfg = Path(tmp) / "hfp.toml"
        cfg.write_text(CONFIG)

        def hfp(*argv: str) -> None:
            shown = " ".join(["hfp", *argv]).replace(str(cfg), "hfp.toml")
            r = subprocess.run([HFP, *argv], env=env, capture_output=True, text=True, cwd=tmp)
            out = (r.stdout + r.stderr).replace(tmp, "<tmp>").rstrip()
            log.append(f"$ {shown}    # exit {r.returncode}\n{out}\n")
            print(log[-1])

        hfp(
            "serve", "--config", str(cfg), "--locked", "--no-supervise", "--port", "0"
        )  # refused: no lock yet
        hfp("lock", "--config", str(cfg))
        log.append(
            "$ head -n 14 hfp.lock\n"
            + "\n".join((Path(tmp) / "hfp.lock").read_text().splitlines()[:14])
            + "\n"
        )
        print(log[-1])
        hub.add_commit("acme/bert-cls", {"README.md": "a new commit on main"})
        log.append("# (a new commit lands on acme/bert-cls main; acme/bert-ner's tag v1 stays)\n")
        hfp("outdated", "--config", str(cfg))
        hfp("outdated", "--config", str(cfg), "--json")
        resolve("acme/bert-cls")  # the newer main into the cache too: two revisions of one repo
        hfp("run", "classifier", "text-classification", "the cache keeps what is used", "--config", str(cfg))
        hfp("cache", "ls", "--config", str(cfg))
        blob = Path(os.path.realpath(resolve("acme/tiny-decoder").path / "model.safetensors"))
        raw = bytearray(blob.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        blob.write_bytes(bytes(raw))
        log.append("# (one bit flipped in the cached acme/tiny-decoder model.safetensors)\n")
        hfp("cache", "verify", "--config", str(cfg))
        hfp("cache", "prune", "--config", str(cfg), "--dry-run")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(log))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
