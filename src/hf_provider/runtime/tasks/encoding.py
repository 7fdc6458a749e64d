"""Fast, lock-free encoding on a private copy of the model's Rust tokenizer.

`tokenizer(texts)` from transformers spends most of a short input's time in Python (argument resolution,
BatchEncoding), and it rewrites truncation/padding state on the shared Rust backend on every call, so concurrent
callers need a lock. A private `tokenizers.Tokenizer` copy with truncation and padding switched off once never
changes state: request threads encode with it concurrently, in Rust, without the GIL. Its output is checked against
the transformers call at load; a tokenizer whose output differs (Python-side special-token handling) keeps the
slow path.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

_PROBES = ("Hello world.", "The city council announced a plan, after months of debate!", "a")


class FastEncoder:
    def __init__(self, tokenizer: Any) -> None:
        from tokenizers import Tokenizer

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError("not a fast tokenizer")
        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        self._names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

    def encode(self, texts: Sequence[str], offsets: bool = False, special_mask: bool = False) -> list[dict]:
        # One text (most requests): `encode` on this thread. `encode_batch` hands even one text to the Rayon pool,
        # whose threads then wait for a core that the forward pass keeps busy (py-spy, 256 one-sentence clients on
        # 2 busy cores: 46% of the event loop's samples in it; 31% with `encode`, on a shared machine).
        encodings = (
            [self._tok.encode(texts[0], add_special_tokens=True)]
            if len(texts) == 1
            else self._tok.encode_batch(list(texts), add_special_tokens=True)
        )
        return self._rows(encodings, offsets, special_mask)

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict]:
        """Text pairs (query and document, premise and hypothesis), special tokens and token types as the
        tokenizer's post-processor places them: what `tokenizer(firsts, seconds)` gives."""
        return self._rows(self._tok.encode_batch(list(pairs), add_special_tokens=True), False, False)

    def _rows(self, encodings: list[Any], offsets: bool, special_mask: bool) -> list[dict]:
        rows = []
        for e in encodings:
            row: dict[str, list] = {"input_ids": e.ids}
            if "token_type_ids" in self._names:
                row["token_type_ids"] = e.type_ids
            if "attention_mask" in self._names:
                row["attention_mask"] = e.attention_mask
            if offsets:
                row["offset_mapping"] = e.offsets
            if special_mask:
                row["special_tokens_mask"] = e.special_tokens_mask
            rows.append(row)
        return rows

    def agrees_with(self, tokenizer: Any) -> bool:
        """True when this encoder gives exactly what `tokenizer(texts)` gives on a few probes."""
        ref = tokenizer(list(_PROBES), truncation=False)
        mine = self.encode(_PROBES)
        pairs = list(itertools.pairwise(_PROBES))
        ref_pairs = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=False)
        mine_pairs = self.encode_pairs(pairs)
        return all(list(ref[k][i]) == row[k] for i, row in enumerate(mine) for k in row) and all(
            list(ref_pairs[k][i]) == row[k] for i, row in enumerate(mine_pairs) for k in row
        )


def fast_encoder(tokenizer: Any) -> FastEncoder | None:
    try:
        enc = FastEncoder(tokenizer)
        return enc if enc.agrees_with(tokenizer) else None
    except Exception:
        return None
