"""A tiny decoder with a chat template that renders tools in the Hermes / Qwen 2.5 format (`<tool_call>` blocks),
for tests of tool calling: the same weights and tokenizer as the decoder folder it copies (tools make long
prompts: give it one with a long context, `build_sized_gpt2(..., positions=2048)`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: A small Hermes-style template: tools listed in the system turn, earlier calls as <tool_call> blocks, tool
#: results in their own turn (the shape of Qwen 2.5's template, without its defaults).
HERMES_TEMPLATE = (
    "{%- if tools %}<|system|>\nYou may call these functions:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    'Call one as <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>{{ eos_token }}\n{%- endif %}'
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|assistant|>\n"
    "{%- for c in m.tool_calls %}<tool_call>\n"
    "{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}\n</tool_call>{%- endfor %}"
    "{{ eos_token }}\n"
    "{%- elif m.role == 'tool' %}<|tool|>\n{{ m.content }}{{ eos_token }}\n"
    "{%- else %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|assistant|>\n{%- endif %}"
)


def tool_chat_model(decoder: Path) -> Path:
    """A copy of the `decoder` folder whose tokenizer carries HERMES_TEMPLATE (built once, beside it)."""
    from transformers import AutoTokenizer

    dest = Path(decoder).parent / f"{Path(decoder).name}-tools"
    marker = dest / "hermes-template.txt"
    if marker.exists() and marker.read_text() == HERMES_TEMPLATE:
        return dest
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    shutil.copytree(decoder, tmp, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tmp)
    tok.chat_template = HERMES_TEMPLATE
    tok.save_pretrained(tmp)
    (tmp / "hermes-template.txt").write_text(HERMES_TEMPLATE)
    if dest.exists():  # another version: replaced whole (a folder cannot be renamed over)
        shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # a concurrent builder won: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
