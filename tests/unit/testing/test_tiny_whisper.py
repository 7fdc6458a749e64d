"""The tiny Whisper loads like a Hub checkpoint: AutoProcessor (feature extractor + a fast tokenizer with Whisper's
special tokens in Hub order) and a generation config that transformers' Whisper generate needs."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

from hf_provider.testing.audio import tone


def test_processor_tokens_and_generation_config(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["whisper"]
    proc = AutoProcessor.from_pretrained(path)
    tok, fe = proc.tokenizer, proc.feature_extractor
    assert tok.is_fast and fe.sampling_rate == 16000 and fe.feature_size == 80
    ids = tok.convert_tokens_to_ids
    sot, no_ts = ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    assert ids("<|endoftext|>") == sot - 1 and ids("<|en|>") == sot + 1
    assert ids("<|translate|>") < ids("<|transcribe|>") < no_ts and ids("<|0.00|>") == no_ts + 1
    assert ids("<|30.00|>") == no_ts + 1501 and tok.pad_token == "<|endoftext|>"
    assert "<|fr|>" in tok.all_special_tokens and "<|0.00|>" not in tok.all_special_tokens
    text = "Alice lives in Paris."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    model = AutoModelForSpeechSeq2Seq.from_pretrained(path)
    gen = model.generation_config
    assert gen.decoder_start_token_id == sot and gen.no_timestamps_token_id == no_ts
    assert gen.task_to_id == {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    assert gen.lang_to_id["<|de|>"] == ids("<|de|>") and gen.is_multilingual
    feats = fe(tone(2.0), sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        langs = model.detect_language(feats)
        out = model.generate(feats, task="translate", language="fr", max_new_tokens=5, return_segments=True)
    assert int(langs[0]) in gen.lang_to_id.values()
    full = out["segments"][0][0]["result"].tolist()
    assert ids("<|fr|>") in full and ids("<|translate|>") in full and out["sequences"].shape[1] >= 1
