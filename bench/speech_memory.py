"""Resident memory of one Whisper weight set serving transcription, then translation as well.

Loads the model through the Provider (the real load path), serves transcriptions, reads the process's RSS, then
serves translations of the same audio on the same model and reads it again. Prints both and the ratio; the
target is at most 1.10 (the second task shares the module; only its batch's activations are new).

    PYTHONPATH=src python bench/speech_memory.py [--base | --model FOLDER] [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import warnings
from pathlib import Path

import psutil


def rss() -> int:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="a Whisper folder (default: see --base)")
    ap.add_argument(
        "--base",
        action="store_true",
        help="a random Whisper of whisper-base's dimensions (else the tiny one)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from hf_provider.provider import Provider
    from hf_provider.settings import Settings
    from hf_provider.testing.audio import audio_file
    from hf_provider.testing.models import build_tiny_models, build_whisper_base_random

    cache = Path(".hfp/tiny-models")
    folder = args.model or (
        build_whisper_base_random(cache) if args.base else build_tiny_models(cache)["whisper"]
    )
    clips = [audio_file("wav", seconds=s, freq=f) for s, f in ((3, 220), (12, 440), (45, 330))]
    home = tempfile.mkdtemp(prefix="hfp-speech-bench-")
    spec = {"name": "whisper", "source": str(folder), "device": "cpu", "dtype": "float32"}
    settings = Settings.model_validate({"home": home, "models": [spec]})
    asr = "automatic-speech-recognition"
    with Provider(settings=settings) as p:
        p.run("whisper", asr, clips[:1], {"max_new_tokens": 1})  # loads it
        p_weights = p.admin.describe()[0].get("weight_bytes") or 0
        base = rss()
        for _ in range(args.rounds):
            p.run("whisper", asr, clips, {"speech_task": "transcribe", "max_new_tokens": 16})
        first = rss()
        for _ in range(args.rounds):
            p.run("whisper", asr, clips, {"speech_task": "translate", "language": "fr", "max_new_tokens": 16})
        second = rss()
    mib = 1024 * 1024
    print(f"model {folder} ({p_weights / mib:.1f} MiB of weights)")
    print(f"rss after load:                  {base / mib:8.1f} MiB")
    print(f"rss serving transcription:       {first / mib:8.1f} MiB")
    print(f"rss serving + translation too:   {second / mib:8.1f} MiB")
    print(f"ratio second task / first task:  {second / first:8.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
