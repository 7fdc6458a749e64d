"""Templates of a pipeline's inputs: `{inputs}`, `{inputs.question}`, `{translate.text}`, `{classify.label}`,
`{item}` (a map step's item), `{a.text|b.text}` (the first of the steps that ran: routes joining again), and text
around them (`"question: {inputs.q} context: {summary.text}"`). `{{` and `}}` are literal braces.

A template that is exactly one reference passes its value through as it is (a list stays a list, for `map` and
fan-in); references inside text are formatted (strings as they are, anything else as JSON). Parsing is
`string.Formatter.parse` (the standard library's own brace grammar and escapes); conversions (`!r`) and format
specs (`:>10`) are refused, so a template means one thing.

Field lookup (`field`): a mapping by key, `text` standing for the task's text output (`translation_text`,
`summary_text`, `generated_text`, `answer`); a list by index (`{a.0}`); a ranking (a list of `{label, score}`, a
classification's answer) by its top entry, so `{classify.label}` is the winning label; any other list (a mapped
step's outputs) field by field, so `{summaries.text}` is the list of texts.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TEXT_KEYS = ("text", "generated_text", "translation_text", "summary_text", "answer")
_FORMATTER = string.Formatter()


class Skipped(Exception):
    """Every step a reference names was skipped (its condition did not hold): so is the step that needs it."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One `{...}`: alternatives (root, path), the first whose root has a value wins."""

    alternatives: tuple[tuple[str, tuple[str, ...]], ...]
    text: str  # as written, for messages

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(root for root, _ in self.alternatives)


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Ref, ...]

    @property
    def whole(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Ref)


def parse(text: str) -> Template:
    """A template string; ValueError says what is wrong with it."""
    parts: list[str | Ref] = []
    try:
        pieces = list(_FORMATTER.parse(text))
    except ValueError as e:
        raise ValueError(
            f"{text!r} is not a valid template ({e}); write {{{{ and }}}} for literal braces"
        ) from None
    for literal, name, spec, conversion in pieces:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if conversion or spec:
            raise ValueError(f"{text!r}: conversions and format specs ('!r', ':...') are not supported")
        parts.append(_ref(name, text))
    return Template(tuple(parts))


def _ref(name: str, text: str) -> Ref:
    alternatives = []
    for alt in name.split("|"):
        path = tuple(p.strip() for p in alt.strip().split("."))
        if not path or not all(path):
            raise ValueError(
                f"{text!r}: '{{{name}}}' is not a reference; write '{{inputs}}', '{{inputs.field}}', "
                "'{step}' or '{step.field}'"
            )
        alternatives.append((path[0], path[1:]))
    return Ref(tuple(alternatives), "{" + name + "}")


def compile_value(value: Any) -> Any:
    """Strings become Templates, lists and tables are compiled item by item, anything else stays a literal."""
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: compile_value(v) for k, v in value.items()}
    return value


def refs(compiled: Any) -> Iterator[Ref]:
    if isinstance(compiled, Template):
        yield from (p for p in compiled.parts if isinstance(p, Ref))
    elif isinstance(compiled, list):
        for v in compiled:
            yield from refs(v)
    elif isinstance(compiled, dict):
        for v in compiled.values():
            yield from refs(v)


def render(compiled: Any, scope: Mapping[str, Any]) -> Any:
    """The value of a compiled template with `scope` (root name -> value; a skipped step is absent). Raises
    Skipped, or LookupError naming the reference and what is missing."""
    if isinstance(compiled, Template):
        if compiled.whole:
            return resolve(compiled.parts[0], scope)  # type: ignore[arg-type]
        return "".join(p if isinstance(p, str) else _text(resolve(p, scope)) for p in compiled.parts)
    if isinstance(compiled, list):
        return [render(v, scope) for v in compiled]
    if isinstance(compiled, dict):
        return {k: render(v, scope) for k, v in compiled.items()}
    return compiled


def resolve(ref: Ref, scope: Mapping[str, Any]) -> Any:
    for root, path in ref.alternatives:
        if root not in scope:
            continue
        value = scope[root]
        for i, key in enumerate(path):
            try:
                value = field(value, key)
            except LookupError as e:
                where = ".".join((root, *path[:i])) or root
                raise LookupError(f"{ref.text}: {where} {e}") from None
        return value
    raise Skipped(ref.text)


def field(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        if key in value:
            return value[key]
        if key == "text":
            for k in TEXT_KEYS:
                if k in value:
                    return value[k]
        raise LookupError(f"has no field {key!r} (it has: {', '.join(map(str, value)) or 'none'})")
    if isinstance(value, list):
        if key.lstrip("-").isdigit():
            try:
                return value[int(key)]
            except IndexError:
                raise LookupError(f"has {len(value)} entries, no entry {key}") from None
        if value and all(isinstance(x, Mapping) and "score" in x for x in value):
            return field(value[0], key)  # a ranking: its top entry answers
        return [field(x, key) for x in value]
    raise LookupError(f"is a {type(value).__name__}, which has no field {key!r}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    tolist: Callable[[], Any] | None = getattr(value, "tolist", None)  # numpy vectors (embeddings)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} cannot be written into a template")
