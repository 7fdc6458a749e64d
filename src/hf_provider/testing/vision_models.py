"""Tiny random vision models with their processors, built offline: a ViT image classifier with its image processor,
and a CLIP with its processor (image processor and a real fast CLIP tokenizer trained on the built-in corpus)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from hf_provider.testing.tiny_tokenizers import corpus

IMAGE_SIZE = 32  # pixels: 4x4 patches of 8, so a forward pass is a few milliseconds on a CPU
VIT_LABELS = ["cat", "dog", "bird", "car", "house"]
# CLIP's pre-tokenization (transformers' CLIPTokenizer builds the same pipeline from vocab and merges)
_CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


@functools.cache  # one vocabulary for every build (training can break ties differently run to run)
def clip_tokenizer() -> Any:
    """A real CLIPTokenizer: byte-level BPE with CLIP's lower-casing, pre-tokenization and </w> suffix."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(
        models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>")
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator([*corpus(), *(f"a photo of a {x}." for x in VIT_LABELS)], trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    return CLIPTokenizer(
        vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], model_max_length=77
    )


def build_vit(dest: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(VIT_LABELS)),
        label2id={v: i for i, v in enumerate(VIT_LABELS)},
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(dest)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(dest)


def build_clip(
    dest: Path, *, hidden: int = 32, layers: int = 2, image_size: int = IMAGE_SIZE, patch: int = 8
) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    heads = max(2, hidden // 64)
    tower = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers}
    config = CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": heads,
            "vocab_size": len(tok),
            "max_position_embeddings": 77,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={**tower, "num_attention_heads": heads, "image_size": image_size, "patch_size": patch},
        projection_dim=16 if hidden <= 64 else hidden,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(dest)
    # CLIPImageProcessor is the torchvision backend where torchvision is installed, else its PIL twin
    sizes = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
    CLIPProcessor(image_processor=CLIPImageProcessor(**sizes), tokenizer=tok).save_pretrained(dest)


def build_sized_clip(out_dir: Path, hidden: int, layers: int, image_size: int = 224) -> Path:
    """A random CLIP of chosen width and depth (both towers) with patch-32 images of `image_size` pixels: hidden
    512 x 6 layers is about 40M parameters (160 MB in float32), for memory measurements."""
    from hf_provider.testing.models import cached

    name = f"clip-h{hidden}-l{layers}-i{image_size}"
    return cached(
        Path(out_dir),
        name,
        lambda d: build_clip(d, hidden=hidden, layers=layers, image_size=image_size, patch=32),
    )
