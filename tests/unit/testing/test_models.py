"""The tiny models load through the same Auto* code path a Hub model takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from hf_provider.testing import models as tm

AUTO = {
    "t5": AutoModelForSeq2SeqLM,
    "decoder": AutoModelForCausalLM,
    "bert-cls": AutoModelForSequenceClassification,
    "bert-ner": AutoModelForTokenClassification,
    "bert-mlm": AutoModelForMaskedLM,
    "bert-qa": AutoModelForQuestionAnswering,
    "bert-rerank": AutoModelForSequenceClassification,
    "bert-nli": AutoModelForSequenceClassification,
}


@pytest.mark.parametrize("name", sorted(AUTO))
def test_loads_with_auto_classes(tiny_models: dict[str, Path], name: str) -> None:
    path = tiny_models[name]
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.is_fast
    model = AUTO[name].from_pretrained(path)
    assert model.config.vocab_size >= len(tok)
    text = "Alice lives in Paris."
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    with torch.inference_mode():
        out = (
            model(**tok(text, return_tensors="pt"))
            if name != "t5"
            else model(**tok(text, return_tensors="pt"), decoder_input_ids=torch.tensor([[0]]))
        )
    assert out[0].shape[0] == 1


def test_special_tokens_and_labels(tiny_models: dict[str, Path]) -> None:
    t5 = AutoTokenizer.from_pretrained(tiny_models["t5"])
    assert (t5.pad_token, t5.pad_token_id, t5.eos_token, t5.eos_token_id) == ("<pad>", 0, "</s>", 1)
    cfg = AutoConfig.from_pretrained(tiny_models["t5"])
    assert cfg.task_specific_params["summarization"]["prefix"] == "summarize: "
    assert cfg.task_specific_params["translation_en_to_de"]["prefix"] == "translate English to German: "
    assert cfg.decoder_start_token_id == 0
    bert = AutoTokenizer.from_pretrained(tiny_models["bert-mlm"])
    assert bert.pad_token_id == 0 and bert.mask_token == "[MASK]"
    assert AutoTokenizer.from_pretrained(tiny_models["bert-ner"]).get_vocab() == bert.get_vocab()
    assert AutoConfig.from_pretrained(tiny_models["bert-cls"]).id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert list(AutoConfig.from_pretrained(tiny_models["bert-ner"]).id2label.values()) == tm.NER_LABELS


def test_decoder_chat_template(tiny_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models["decoder"])
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>\nhi<|endoftext|>\n<|assistant|>\n"


def test_cached_build_is_reused(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tiny_models["t5"].parent
    monkeypatch.setitem(tm.TINY_BUILDERS, "t5", lambda d: pytest.fail("rebuilt a cached model"))
    assert tm.build_tiny_models(out)["t5"] == tiny_models["t5"]


def test_stale_marker_rebuilds_atomically(tmp_path: Path) -> None:
    calls = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "config.json").write_text("{}")

    dest = tm._cached(tmp_path, "m", build)
    assert tm._cached(tmp_path, "m", build) == dest and len(calls) == 1
    (dest / tm.MARKER).write_text(json.dumps({"builder_version": "old", "name": "m"}))
    tm._cached(tmp_path, "m", build)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folders left behind


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(d: Path) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        tm._cached(tmp_path, "m", build)
    assert list(tmp_path.iterdir()) == []


def test_pair_models_have_the_heads_their_tasks_need(tiny_models: dict[str, Path]) -> None:
    assert AutoConfig.from_pretrained(tiny_models["bert-rerank"]).num_labels == 1  # a cross-encoder
    nli = AutoConfig.from_pretrained(tiny_models["bert-nli"])
    assert nli.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    assert nli.label2id["entailment"] == 2


def test_minilm_path(minilm_path: Path) -> None:
    assert (minilm_path / "modules.json").is_file()


def test_cli_prints_json(tiny_models: dict[str, Path]) -> None:
    out = tiny_models["t5"].parent
    proc = subprocess.run(
        [sys.executable, "-m", "hf_provider.testing.models", str(out)],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )
    assert json.loads(proc.stdout) == {k: str(v) for k, v in tiny_models.items()}
