"""Every field of OpenAI's request schemas, per route: honoured, or refused unless sent at its default.

One table, read by the schemas (a refused field sent at its default or "off" value is dropped before validation,
so clients that always send defaults work; at any other value it stays and the schema refuses it with 400
`unsupported_parameter` naming it), by the README's field table (tests/unit/server/test_openai_field_table.py checks
that both agree and that the official `openai` package's request types hold no field this table lacks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HONOURED = "honoured"
REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Field:
    status: str
    note: str = ""
    #: Values that mean "off" for a refused field: sent at one of them, the field is accepted (and means nothing).
    off: tuple[Any, ...] = (None,)


def _h(note: str = "") -> Field:
    return Field(HONOURED, note)


def _r(note: str = "", *off: Any) -> Field:
    return Field(REFUSED, note, (None, *off))


_SAMPLING = {
    "model": _h("a configured model name"),
    "max_tokens": _h("default: the model's `defaults.text-generation.max_new_tokens`, else 64"),
    "temperature": _h("0 = greedy"),
    "top_p": _h(),
    "stop": _h("up to 4 strings, cut from the text"),
    "stream": _h("server-sent events"),
    "stream_options": _h("`include_usage` adds a last chunk with the usage"),
    "seed": _h("per row: a seeded request gives the same text alone or in a batch (continuous batching)"),
    "n": _h("1-16 rows of one batch; not with stream"),
    "user": _h("accepted as an end-user tag (not stored)"),
    "presence_penalty": _h("OpenAI's additive penalty over the generated tokens, -2 to 2"),
    "frequency_penalty": _h("OpenAI's additive penalty over the generated tokens, -2 to 2"),
    "logit_bias": _h("token id -> bias in [-100, 100], added to the logits"),
}

CHAT: dict[str, Field] = {
    **_SAMPLING,
    "messages": _h("text content parts; image, audio and file parts refused with 400 (text-only models)"),
    "max_completion_tokens": _h("same as max_tokens; wins when both are sent"),
    "logprobs": _h(
        "from the scores sampled from (after bias, penalties, temperature, top-p); not with stream"
    ),
    "top_logprobs": _h("0-20, with logprobs=true"),
    "response_format": _h("json_object / json_schema, enforced token by token (llguidance); text"),
    "tools": _h("rendered by the chat template; calls parsed (hermes, llama3, mistral formats)"),
    "tool_choice": _h("none / auto / required / a named function; required and named enforced by a grammar"),
    "parallel_tool_calls": _h("false: one call at most (required / named); true: one or more"),
    "functions": _r("deprecated; use tools", []),
    "function_call": _r("deprecated; use tool_choice", "none", "auto"),
    "audio": _r("text-only models"),
    "modalities": _r("text-only models", ["text"]),
    "prediction": _r("predicted outputs are not implemented"),
    "reasoning_effort": _r("not a reasoning model's server"),
    "verbosity": _r("not a reasoning model's server"),
    "web_search_options": _r("no web search"),
    "store": _r("nothing is stored", False),
    "metadata": _r("meaningful with store only", {}),
    "service_tier": _r("one tier; use the X-Priority header", "auto", "default"),
    "prompt_cache_key": _r("no prompt cache", ""),
    "prompt_cache_retention": _r("no prompt cache"),
    "prompt_cache_options": _r("no prompt cache"),
    "moderation": _r("no moderation"),
    "safety_identifier": _h("accepted as an end-user tag (not stored)"),
    "truncate": _h("hf-provider extension: cut the prompt from the left to fit"),
}

COMPLETIONS: dict[str, Field] = {
    **_SAMPLING,
    "prompt": _h("a string, a list of strings, token ids, or a list of token-id lists"),
    "echo": _h("the prompt before the completion"),
    "best_of": _h("best_of rows, the n with the highest logprob per token returned; not with stream"),
    "suffix": _r("insertion is not implemented", ""),
    "logprobs": _h("0-5: each token's logprob and the top ones (the echoed prompt's too); not with stream"),
    "response_format": _h("hf-provider extension (as on chat): json_object / json_schema, enforced"),
    "truncate": _h("hf-provider extension: cut the prompt from the left to fit"),
}

EMBEDDINGS: dict[str, Field] = {
    "model": _h("a configured model name"),
    "input": _h("a string, a list of strings, token ids, or a list of token-id lists"),
    "encoding_format": _h("float or base64"),
    "dimensions": _h("truncated and renormalized"),
    "user": _h("accepted as an end-user tag (not stored)"),
    "truncate": _h("hf-provider extension: cut inputs to the model's length; default per model"),
    "modality": _h("hf-provider extension: image-text models read every string as a text or an image"),
}

RESPONSES: dict[str, Field] = {
    "model": _h("a configured model name"),
    "input": _h("a string, or message items with text parts; other items and image / file parts refused"),
    "instructions": _h("a system message before the input"),
    "max_output_tokens": _h("as max_tokens; status incomplete when it ends the reply"),
    "temperature": _h("0 = greedy"),
    "top_p": _h(),
    "stream": _h("OpenAI's response.* events"),
    "text": _h("format text / json_object / json_schema (enforced as response_format is)"),
    "truncation": _h('"auto" cuts the input from the left to fit; "disabled" (default) refuses it'),
    "user": _h("accepted as an end-user tag (not stored)"),
    "safety_identifier": _h("accepted as an end-user tag (not stored)"),
    "store": _r("responses are not stored", False),
    "previous_response_id": _r("responses are not stored: send the conversation as input"),
    "conversation": _r("responses are not stored: send the conversation as input"),
    "include": _r("nothing extra to include", []),
    "tools": _r("tools are served by /v1/chat/completions", []),
    "tool_choice": _r("tools are served by /v1/chat/completions", "none", "auto"),
    "parallel_tool_calls": _r("meaningless without tools", True, False),
    "max_tool_calls": _r("tools are served by /v1/chat/completions"),
    "reasoning": _r("not a reasoning model's server"),
    "background": _r("requests run in the foreground", False),
    "background_options": _r("requests run in the foreground"),
    "metadata": _r("meaningful with store only", {}),
    "prompt": _r("no stored prompts"),
    "service_tier": _r("one tier; use the X-Priority header", "auto", "default"),
    "prompt_cache_key": _r("no prompt cache", ""),
    "prompt_cache_retention": _r("no prompt cache"),
    "prompt_cache_options": _r("no prompt cache"),
    "top_logprobs": _r("logprobs are served by /v1/chat/completions", 0),
    "stream_options": _r("no stream options here", {}),
    "moderation": _r("no moderation"),
    "image": _r("text-only models"),
    "context_management": _r("no server-side context"),
    "access_programs": _r("not applicable"),
}

#: Fields hf-provider adds to OpenAI's (sent by the openai client through `extra_body`).
EXTENSIONS = frozenset({"truncate", "response_format", "modality"})


def drop_off(fields: Mapping[str, Field], data: Any) -> Any:
    """The body without its refused fields that were sent at an "off" value (a pydantic before-validator)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, value in data.items():
        f = fields.get(name)
        if f is not None and f.status == REFUSED and any(_same(value, off) for off in f.off):
            del out[name]
    return out


def _same(value: Any, off: Any) -> bool:
    # bool is an int in Python: True must not pass for an off value of 1, nor 0 for False
    return type(value) is type(off) and value == off if off is not None else value is None


def refused_message(fields: Mapping[str, Field], name: str) -> str:
    f = fields.get(name)
    if f is None:
        return f"Unsupported parameter {name!r}: it is not a field of this route; remove it from the request."
    offs = [o for o in f.off if o is not None]
    at = f" (accepted at {', '.join(repr(o) for o in offs)})" if offs else ""
    why = f": {f.note}" if f.note else ""
    return f"Unsupported parameter {name!r}{why}. Remove it from the request{at}."
