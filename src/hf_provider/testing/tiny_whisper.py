"""A tiny random Whisper (WhisperForConditionalGeneration + WhisperProcessor), built offline.

The tokenizer is real: a byte-level BPE trained with the `tokenizers` library on the built-in corpus, wrapped in
transformers' `WhisperTokenizer` with Whisper's special tokens in Whisper's own order (<|endoftext|>,
<|startoftranscript|>, the 99 language tokens, <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>,
<|nospeech|>, <|notimestamps|>, then the 1501 timestamps <|0.00|>..<|30.00|>), so `generate`'s language
detection, task tokens and timestamp logic run exactly as for a Hub checkpoint: they find the ids through the
generation config (lang_to_id, task_to_id, no_timestamps_token_id; timestamps follow <|notimestamps|>).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hf_provider.testing.tiny_tokenizers import corpus

SAMPLING_RATE = 16000


def control_tokens() -> list[str]:
    """Whisper's special tokens after <|endoftext|>, in the order of Hub checkpoints."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def whisper_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.whisper.tokenization_whisper import WhisperTokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer=trainer)
    state = bpe.model.__getstate__()
    import json

    model = json.loads(state)
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab["<|endoftext|>"] = len(vocab)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in control_tokens()]}
    )
    # timestamps are plain added tokens in Hub checkpoints too (decoded as text unless filtered)
    tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(1501)])
    tok.model_max_length = 448
    tok.pad_token = "<|endoftext|>"  # as in Hub checkpoints: the pipeline batches only with a pad token
    return tok


def build_whisper(dest: Path, *, d_model: int = 64, layers: int = 2, heads: int = 2) -> None:
    """Save a random Whisper (by default 2+2 layers, d_model 64; 80 mel bins, 30 s windows) with its processor to
    `dest`. d_model=512, layers=6, heads=8 has whisper-base's dimensions (for memory benchmarks)."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tok = whisper_tokenizer()
    ids = tok.convert_tokens_to_ids
    eot, sot, notimestamps = ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    # The control tokens are never predicted as text (a trained Whisper learns that; random weights must be told)
    suppress = [ids(t) for t in control_tokens()]
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model if d_model == 64 else 4 * d_model,
        decoder_ffn_dim=2 * d_model if d_model == 64 else 4 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=[ids("Ġ"), eot],
        suppress_tokens=suppress,
        init_std=0.2,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        # Random weights end most transcriptions at once (<|endoftext|> wins the first step) and every audio
        # would read as the empty text: zeroing that embedding row (the output projection is tied to it) keeps
        # its logit at 0, so outputs are non-empty and depend on the audio, which is what the tests compare.
        model.model.decoder.embed_tokens.weight[eot].zero_()
        # Timestamps: at the init scale random weights emit them anywhere, and each one makes generate start
        # another pass over the window (dozens for a 3 s clip). A tenth of the scale keeps their logits below the
        # text's, so they appear only where generate's timestamp rules ask for them (return_timestamps), and still
        # differ from one another, so the times it picks spread over the window, as a trained model's do.
        model.model.decoder.embed_tokens.weight[notimestamps + 1 :].mul_(0.1)
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[ids("Ġ"), eot],
        suppress_tokens=suppress,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=notimestamps,
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        alignment_heads=[[1, 0], [1, 1]],
        return_timestamps=False,
    )
    model.generation_config = gen
    model.save_pretrained(dest)
    fe = WhisperFeatureExtractor(
        feature_size=80, sampling_rate=SAMPLING_RATE, hop_length=160, chunk_length=30
    )
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(dest)
