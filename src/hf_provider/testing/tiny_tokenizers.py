"""Real fast tokenizers for the tiny test models, trained with the `tokenizers` library on a small built-in English
corpus (no download), so tokenization, offsets and special tokens behave as they do for Hub models.
"""

from __future__ import annotations

import functools
import random
from typing import Any

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
def t5_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=1000,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
        show_progress=False,  # its bar is blank lines on stdout when not a terminal
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


def bpe_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
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
def wordpiece_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        corpus(),
        trainer=trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials, show_progress=False),
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
