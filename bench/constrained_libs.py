"""Constrained-decoding libraries compared on CPU: grammar compile time and per-token cost (mask + apply +
advance) for JSON schemas, with Hugging Face fast tokenizers: the tiny byte-level BPE of hf_provider.testing
(1000 tokens) and a synthetic byte-level BPE of 32000 tokens (a realistic vocabulary size for the per-token mask).

The raw baseline is the same loop without a grammar (argmax over the logits only), measured in the same run.

    flock /tmp/hfp-bench.lock python bench/constrained_libs.py
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
    },
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
            "temps": {"type": "array", "items": {"type": "number"}, "maxItems": 5},
        },
        "required": ["city", "temps"],
    },
    {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
                "required": ["id", "email"],
            },
            "roles": {"type": "array", "items": {"type": "string", "enum": ["admin", "dev", "ops"]}},
            "active": {"type": "boolean"},
        },
        "required": ["user", "roles", "active"],
    },
]
INSTANCES = [
    {"name": "Ada Lovelace", "age": 36},
    {"city": "Oslo", "temps": [1.5, -3, 7.25]},
    {"user": {"id": 42, "email": "a@b.c"}, "roles": ["admin", "ops"], "active": True},
]


def tokenizers() -> dict[str, Any]:
    from hf_provider.testing.tiny_tokenizers import bpe_tokenizer

    return {"tiny-bpe-1000": bpe_tokenizer(), "synthetic-bpe-32000": big_bpe(32000)}


def big_bpe(size: int) -> Any:
    """A byte-level BPE of `size` tokens (GPT-2's alphabet plus random merges of existing tokens): a realistic
    vocabulary size for the per-token mask, without a Hub download."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tokens, merges = list(alphabet), []
    while len(vocab) < size:
        a, b = rng.choice(tokens), rng.choice(tokens)
        if len(a) + len(b) > 8 or a + b in vocab:
            continue
        merges.append((a, b))
        vocab[a + b] = len(vocab)
        tokens.append(a + b)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok: Any) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.vocab = self.info.vocab_size

    def compile(self, schema: dict[str, Any]) -> Any:
        compiler = self.xgr.GrammarCompiler(self.info, cache_enabled=False)  # a cold compile each time
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))

    def walk(self, compiled: Any, ids: list[int]) -> None:
        m = self.xgr.GrammarMatcher(compiled)
        mask = self.xgr.allocate_token_bitmask(1, self.vocab)
        logits = torch.zeros(1, self.vocab)
        for t in ids:
            m.fill_next_token_bitmask(mask)
            self.xgr.apply_token_bitmask_inplace(logits, mask)
            if not m.accept_token(t):
                raise RuntimeError("xgrammar refused a valid token")


class LLGuidance:
    """As runtime/constrained.py drives it: a cached matcher copied per row, the mask read with compute_bitmask
    (llguidance.torch's apply helper calls torch.compile, which the CPU path avoids)."""

    name = "llguidance"

    def __init__(self, tok: Any) -> None:
        import llguidance
        import llguidance.hf

        self.llg = llguidance
        self.tok = llguidance.hf.from_tokenizer(tok)
        self.vocab = self.tok.vocab_size

    def compile(self, schema: dict[str, Any]) -> Any:
        g = self.llg.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False}
        )
        m = self.llg.LLMatcher(self.tok, g)  # compiles lazily: the first mask pays the rest
        m.compute_bitmask()
        if m.is_error():
            raise RuntimeError(m.get_error())
        return m

    def walk(self, compiled: Any, ids: list[int]) -> None:
        m = compiled.deep_copy()
        logits = torch.zeros(1, self.vocab)
        for t in ids:
            bits = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")
            allowed = torch.from_numpy(bits[: self.vocab].astype(bool))
            logits.masked_fill_(~allowed, float("-inf"))
            logits.zero_()
            if not m.consume_token(t):
                raise RuntimeError("llguidance refused a valid token: " + m.get_error())


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, tok: Any) -> None:
        from outlines_core import Vocabulary

        # outlines-core wants each token's text; a byte-level BPE's tokens are bytes in GPT-2's alphabet.
        vocab: dict[str, list[int]] = {}
        for token, i in tok.get_vocab().items():
            if i != tok.eos_token_id:
                vocab.setdefault(token, []).append(i)
        self.vocabulary = Vocabulary(tok.eos_token_id, vocab)
        self.vocab = len(tok)

    def compile(self, schema: dict[str, Any]) -> Any:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        return Index(build_regex_from_schema(json.dumps(schema)), self.vocabulary)

    def walk(self, compiled: Any, ids: list[int]) -> None:
        from outlines_core import Guide

        g = Guide(compiled)
        logits = torch.zeros(1, self.vocab)
        for t in ids:
            allowed = torch.tensor(g.get_tokens())
            mask = torch.full_like(logits, float("-inf"))
            mask[0, allowed] = 0
            logits = logits + mask
            logits.zero_()
            g.advance(t)


def _walk_all(impl: Any, grammars: list[Any], token_lists: list[list[int]]) -> None:
    for g, ids in zip(grammars, token_lists, strict=True):
        impl.walk(g, ids)


def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    torch.set_num_threads(1)
    for tname, tok in tokenizers().items():
        texts = [json.dumps(x, separators=(",", ":")) for x in INSTANCES]  # compact: no free whitespace
        token_lists = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        n_tokens = sum(map(len, token_lists))
        logits = torch.zeros(1, len(tok))
        raw = timed(lambda: [logits.argmax() for _ in range(n_tokens)])  # noqa: B023
        print(
            f"\n{tname}: {n_tokens} tokens over {len(SCHEMAS)} schemas; raw argmax {raw / n_tokens * 1e6:.1f} us/token"
        )
        for lib in (XGrammar, LLGuidance, OutlinesCore):
            try:
                impl = lib(tok)
                compile_s = [timed(functools.partial(impl.compile, s), 3) for s in SCHEMAS]
                grammars = [impl.compile(s) for s in SCHEMAS]
                walk = timed(functools.partial(_walk_all, impl, grammars, token_lists))
            except Exception as e:  # a library that cannot take this tokenizer says so and the others go on
                print(f"  {lib.name:14s} failed: {type(e).__name__}: {str(e)[:120]}")
                continue
            per_token = walk / n_tokens
            print(
                f"  {lib.name:14s} compile median {statistics.median(compile_s) * 1e3:8.2f} ms "
                f"(max {max(compile_s) * 1e3:.2f}); per token {per_token * 1e6:8.1f} us "
                f"({per_token / (raw / n_tokens):.1f}x raw argmax)"
            )


if __name__ == "__main__":
    main()
