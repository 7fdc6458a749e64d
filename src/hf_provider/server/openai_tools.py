"""Tool calling on chat completions: tools rendered by the model's chat template, calls parsed from its output in
the template family's format, and `tool_choice` "required" / a named function enforced by a grammar
(runtime/constrained.py) so the arguments always parse against the function's parameters.

Families, told from the chat template's text:
- "hermes" (Hermes, Qwen 2.5 / 3, and templates like them): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
  blocks, text around them is content. Parsed and enforced.
- "llama3" (Llama 3.1 / 3.2 JSON tool calling): the whole reply is `{"name": ..., "parameters": {...}}`
  (optionally after `<|python_tag|>`, several joined by ";"). Parsed and enforced.
- "mistral": `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`. Parsed only (its marker is a control token):
  "required" and named choices are refused with 400 for it.
A template that does not render `tools` cannot serve them: 400 naming `tools`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from hf_provider.errors import InvalidInput

HERMES, LLAMA3, MISTRAL = "hermes", "llama3", "mistral"
_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


@dataclass(frozen=True)
class ToolPlan:
    """What a request asked of its tools: the functions, the choice, and the template family."""

    tools: list[dict[str, Any]]  # OpenAI's tool objects, as sent
    choice: str  # "none" | "auto" | "required" | a function's name (named)
    parallel: bool
    family: str | None

    @property
    def parses(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    def functions(self) -> list[dict[str, Any]]:
        return [t["function"] for t in self.tools]


def plan(
    tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None, template: str | None
) -> ToolPlan | None:
    """Validate the request's tool fields against the model's chat template; None when it has no tools."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidInput("tool_choice needs tools", param="tool_choice")
        return None
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidInput(
                f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param=f"tools[{i}]"
            )
        if not isinstance(fn.get("name"), str) or not re.fullmatch(r"[A-Za-z0-9_\-.]{1,64}", fn["name"]):
            raise InvalidInput(
                f"tools[{i}].function.name must be 1-64 letters, digits, _ - .", param=f"tools[{i}]"
            )
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise InvalidInput(f"tools[{i}].function.parameters must be a JSON schema", param=f"tools[{i}]")
    text = template or ""
    if "tools" not in text:
        raise InvalidInput(
            "this model's chat template does not render tools, so it cannot be asked to call them",
            param="tools",
        )
    family = family_of(text)
    names = [t["function"]["name"] for t in tools]
    if choice is None or choice in ("auto", "none", "required"):
        mode = choice or "auto"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        mode = (choice.get("function") or {}).get("name")
        if mode not in names:
            raise InvalidInput(
                f"tool_choice names {mode!r}, which is not in tools: {names}", param="tool_choice"
            )
    else:
        raise InvalidInput(
            'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    if mode not in ("auto", "none") and family not in (HERMES, LLAMA3):
        raise InvalidInput(
            f"tool_choice {mode!r} is enforced for hermes- and llama3-style templates only; this model's is "
            f"{family or 'not recognised'}: send tool_choice 'auto'",
            param="tool_choice",
        )
    return ToolPlan(list(tools), mode, parallel is not False, family)


def family_of(template: str) -> str | None:
    if "<tool_call>" in template:
        return HERMES
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<|python_tag|>" in template or "<|start_header_id|>" in template:
        return LLAMA3
    return None


def template_tools(p: ToolPlan) -> list[dict[str, Any]]:
    """Tools as chat templates take them (transformers' convention: OpenAI's objects)."""
    return p.tools


def grammar(p: ToolPlan) -> dict[str, Any] | None:
    """The `grammar` parameter that enforces "required" or a named function: one call (several when parallel
    calls are allowed and the choice is "required"), whose arguments match the function's parameters."""
    if p.choice in ("auto", "none"):
        return None
    fns = [f for f in p.functions() if p.choice == "required" or f["name"] == p.choice]
    key = "parameters" if p.family == LLAMA3 else "arguments"
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f["name"]},
                key: f.get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["name", key],
            "additionalProperties": False,
        }
        for f in fns
    ]
    schema = dict(variants[0]) if len(variants) == 1 else {"anyOf": variants}
    schema["x-guidance"] = {"whitespace_flexible": False}  # compact, as response_format's JSON
    call = "%json " + json.dumps(schema)
    many = p.parallel and p.choice == "required"
    if p.family == HERMES:
        one = f'"<tool_call>\\n" {call} "\\n</tool_call>"'
        start = f'start: call ("\\n" call)*\ncall: {one}' if many else f"start: {one}"
    else:
        start = f'start: call (";" call)*\ncall: {call}' if many else f"start: {call}"
    return {"type": "lark", "grammar": start}


def parse(p: ToolPlan, text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) from a reply in the plan's family; text that is not a well-formed call stays
    content (a model may decline to call a tool under "auto")."""
    calls: list[dict[str, Any]] = []
    content: str | None = text
    if p.family == HERMES or p.family is None:
        found = [_call(m) for m in _HERMES_CALL.findall(text)]
        if found and all(found):
            calls = [c for c in found if c]
            content = _HERMES_CALL.sub("", text).strip() or None
    if not calls and p.family in (LLAMA3, MISTRAL, None):
        body = text.strip().removeprefix("<|python_tag|>").removeprefix("[TOOL_CALLS]").strip()
        pieces: list[Any] = []
        try:
            value = json.loads(body)
            pieces = value if isinstance(value, list) else [value]
        except ValueError:
            try:
                pieces = [json.loads(s) for s in body.split(";")] if ";" in body else []
            except ValueError:
                pieces = []
        found = [_call_obj(x) for x in pieces]
        if found and all(found):
            calls, content = [c for c in found if c], None
    names = {f["name"] for f in p.functions()}
    if any(c["function"]["name"] not in names for c in calls):
        return text, []  # a call of a function it was not given: left as content, not executed blindly
    return content, calls


def _call(raw: str) -> dict[str, Any] | None:
    try:
        return _call_obj(json.loads(raw))
    except ValueError:
        return None


def _call_obj(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": obj["name"], "arguments": json.dumps(args)},
    }


def call_start(p: ToolPlan) -> str | None:
    """Text that opens a call in a reply (a stream holds content back from here on), or None when the whole
    reply must be seen first (llama3's bare JSON)."""
    return "<tool_call>" if p.family == HERMES else None


def stream_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's streamed tool_calls deltas: per call, its id, type and name with empty arguments, then the
    arguments."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(calls):
        fn = c["function"]
        out.append(
            {"index": i, "id": c["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
        )
        out.append({"index": i, "function": {"arguments": fn["arguments"]}})
    return out


class StreamSplit:
    """A streamed reply under "auto": content deltas pass until a call opens (text that could still become the
    opening marker is held back, as stop strings are); from there the reply is held and parsed at its end. Under
    "required", a named function, or a family whose calls have no marker, the whole reply is held."""

    def __init__(self, p: ToolPlan) -> None:
        self.plan = p
        self.marker = call_start(p) if p.choice == "auto" else None
        self.text = ""
        self.sent = 0
        self.calling = self.marker is None

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.calling:
            return ""
        assert self.marker is not None
        at = self.text.find(self.marker, max(0, self.sent - len(self.marker)))
        if at >= 0:
            self.calling = True
            upto = at
        else:
            upto = len(self.text) - _held(self.text, self.marker)
        out, self.sent = self.text[self.sent : max(upto, self.sent)], max(upto, self.sent)
        return out

    def end(self) -> tuple[str, list[dict[str, Any]]]:
        """(content not sent yet, tool calls)."""
        _, calls = parse(self.plan, self.text)
        if calls:  # content before the call was sent already; text around calls is not content
            return "", calls
        return self.text[self.sent :], []


def _held(text: str, marker: str) -> int:
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
