"""Constrained decoding: a request's output held to a JSON schema, a regex or a list of choices, token by token.

The one adapter around llguidance (chosen over xgrammar and outlines-core; bench/constrained_libs.py and the
README give the figures): it builds its token trie from a Hugging Face fast tokenizer, compiles lazily (a matcher
is ready in well under a millisecond and pays for the states it visits), its grammar errors are plain messages,
and it is one small wheel (xgrammar brings triton and a TVM runtime). A compiled grammar is cached per (grammar,
tokenizer): the first request compiles and validates a template matcher, every row gets a `deep_copy` of it, so a
schema's states are built once and shared by later requests.

A request carries a `GrammarSpec` (plain data: it crosses to a worker process as it is); the handler validates it
at parse time (an invalid schema is a 400 naming the problem) and each generated row gets its own `RowMatcher`,
the `Constraint` that runtime/tasks/rowlogits.py applies per row, so constrained and free rows share a batch.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hf_provider.errors import InvalidInput

#: Compiled grammars kept per process (least recently used dropped past it).
CACHE_SIZE = 256
#: JSON is generated without free whitespace: OpenAI's own structured outputs are compact, and a model (a small
#: one especially) allowed unbounded whitespace can spend its whole budget on it.
_JSON_OPTIONS = {"whitespace_flexible": False}
KINDS = ("json_schema", "json_object", "regex", "choice", "lark")


@dataclass(frozen=True, slots=True)
class GrammarSpec:
    """What a request's output must match. `source`: the canonical JSON of a schema, a regex, or the JSON list of
    choices. `param`: the request field that carried it, for errors."""

    kind: str
    source: str
    param: str = field(default="grammar", compare=False)  # not part of the cache key

    def grammar(self) -> str:
        import llguidance

        m = llguidance.LLMatcher
        if self.kind == "json_schema":
            return str(m.grammar_from_json_schema(self.source, defaults=_JSON_OPTIONS))
        if self.kind == "json_object":
            return str(m.grammar_from_json_schema('{"type": "object"}', defaults=_JSON_OPTIONS))
        if self.kind == "regex":
            return str(m.grammar_from_regex(self.source))
        if self.kind == "lark":
            return str(m.grammar_from_lark(self.source))
        choices = json.loads(self.source)
        return str(m.grammar_from_regex("|".join(_escape(c) for c in choices)))


def _escape(text: str) -> str:
    """A literal in llguidance's regex syntax (Rust's regex crate escapes these)."""
    return "".join("\\" + c if c in r"\.+*?()|[]{}^$#&-~" else c for c in text)


def spec_from_param(value: Any, param: str = "grammar") -> GrammarSpec | None:
    """The task parameter `grammar`: {"type": "json_schema", "schema": {...}} | {"type": "json_object"} |
    {"type": "regex", "pattern": "..."} | {"type": "choice", "choices": ["a", "b"]} | {"type": "lark", "grammar":
    "..."} (llguidance's Lark dialect)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type") not in KINDS:
        raise InvalidInput(
            f"'{param}' must be an object whose type is one of {', '.join(KINDS)}", param=param
        )
    kind = value["type"]
    if kind == "json_schema":
        schema = value.get("schema")
        if not isinstance(schema, Mapping):
            raise InvalidInput(f"'{param}.schema' must be a JSON schema (an object)", param=f"{param}.schema")
        return GrammarSpec(kind, json.dumps(schema), param)  # key order kept: properties come in that order
    if kind == "json_object":
        return GrammarSpec(kind, "", param)
    if kind == "lark":  # llguidance's Lark dialect (`%json {...}` embeds a schema): tool calls are built so
        text = value.get("grammar")
        if not isinstance(text, str) or not text:
            raise InvalidInput(f"'{param}.grammar' must be a non-empty Lark grammar", param=param)
        return GrammarSpec(kind, text, param)
    if kind == "regex":
        pattern = value.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise InvalidInput(f"'{param}.pattern' must be a non-empty regular expression", param=param)
        return GrammarSpec(kind, pattern, param)
    choices = value.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise InvalidInput(f"'{param}.choices' must be a non-empty list of non-empty strings", param=param)
    return GrammarSpec(kind, json.dumps(choices), param)


class GrammarCache:
    """Compiled grammars per (grammar, tokenizer), and llguidance's view of each tokenizer (built once: about a
    second for a large vocabulary). Thread-safe: requests parse on request threads, rows start on the model's."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._tokenizers: dict[int, tuple[weakref.ref[Any], Any]] = {}
        self._grammars: OrderedDict[tuple[int, GrammarSpec], Any] = OrderedDict()
        self.hits = self.misses = 0
        self.compile_s = 0.0  # time spent compiling, for the bench's report

    def template(self, tokenizer: Any, spec: GrammarSpec) -> Any:
        """The validated template matcher of `spec` for `tokenizer`; InvalidInput naming the problem."""
        lltok = self._lltokenizer(tokenizer)
        key = (id(lltok), spec)
        with self._lock:
            found = self._grammars.get(key)
            if found is not None:
                self._grammars.move_to_end(key)
                self.hits += 1
                return found
        t0 = time.perf_counter()
        template = _compile(lltok, spec)
        with self._lock:
            self.misses += 1
            self.compile_s += time.perf_counter() - t0
            self._grammars[key] = template
            while len(self._grammars) > self.size:
                self._grammars.popitem(last=False)
        return template

    def matcher(self, tokenizer: Any, spec: GrammarSpec) -> RowMatcher:
        return RowMatcher(self.template(tokenizer, spec))

    def _lltokenizer(self, tokenizer: Any) -> Any:
        with self._lock:
            held = self._tokenizers.get(id(tokenizer))
            if held is not None and held[0]() is tokenizer:
                return held[1]
        try:
            import llguidance.hf
        except ImportError:  # pragma: no cover - a core dependency; an install without it says what to do
            raise InvalidInput(
                "structured outputs need llguidance: pip install llguidance", param="grammar"
            ) from None
        try:
            lltok = llguidance.hf.from_tokenizer(tokenizer)
        except Exception as e:  # a slow (Python) tokenizer, or one llguidance cannot read
            raise InvalidInput(
                f"this model's tokenizer cannot be constrained ({type(e).__name__}: {e})", param="grammar"
            ) from None
        with self._lock:
            self._tokenizers[id(tokenizer)] = (weakref.ref(tokenizer), lltok)
        return lltok


def _compile(lltok: Any, spec: GrammarSpec) -> Any:
    import llguidance

    try:
        grammar = spec.grammar()
    except ValueError as e:
        raise InvalidInput(f"'{spec.param}' is not valid JSON: {e}", param=spec.param) from None
    matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
    if not matcher.is_error():
        matcher.compute_bitmask()  # the first mask: a grammar that cannot start fails here, not in a batch
    if matcher.is_error():
        raise InvalidInput(f"'{spec.param}' cannot be enforced: {matcher.get_error()}", param=spec.param)
    return matcher


class RowMatcher:
    """One row's position in its grammar (a `rowlogits.Constraint`): masks what may come next, takes the token
    sampled. Unpacks llguidance's bitmask with numpy: llguidance.torch's apply helper runs torch.compile."""

    def __init__(self, template: Any) -> None:
        self._m = template.deep_copy()
        self._allowed: torch.Tensor | None = None

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        width = scores.shape[-1]
        bits = np.unpackbits(np.frombuffer(self._m.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = np.zeros(width, dtype=bool)
        n = min(width, bits.shape[0])
        allowed[:n] = bits[:n].astype(bool)  # ids past the tokenizer's (a padded embedding) are never allowed
        mask = torch.from_numpy(allowed).to(scores.device)
        return scores.masked_fill(~mask, float("-inf"))

    def accept(self, token: int) -> None:
        if not self._m.consume_token(token):
            raise ValueError(f"the grammar refused token {token}: {self._m.get_error()}")

    @property
    def done(self) -> bool:
        return bool(self._m.is_stopped())


#: The process's grammars (as runtime/shared_tokenizers.py shares tokenizers): the models of a process share it.
CACHE = GrammarCache()
