"""Chat messages as the model's chat template takes them."""

from __future__ import annotations

from hf_provider.errors import InvalidInput, UnsupportedContent
from hf_provider.server.schemas import ChatRequest


def template_messages(body: ChatRequest) -> list[dict[str, str]]:
    """The conversation as the chat template takes it. Content parts other than text (an image, audio, a file)
    are refused: the models served here are text-only, and dropping a part would answer another question."""
    messages = []
    for i, m in enumerate(body.messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "refusal" and m.role == "assistant" and isinstance(part.get("refusal"), str):
                    texts.append(part["refusal"])
                elif kind in ("image_url", "input_audio", "file", "input_image", "audio"):
                    raise UnsupportedContent(
                        f"messages[{i}].content[{j}] is an {kind!r} part; model {body.model!r} is text-only. "
                        "Send text parts only.",
                        param=f"messages[{i}].content[{j}]",
                    )
                else:
                    raise InvalidInput(
                        f"messages[{i}].content[{j}] must be a content part such as "
                        '{"type": "text", "text": "..."}',
                        param=f"messages[{i}].content[{j}]",
                    )
            content = "".join(texts)
        if content is None and m.refusal is not None:
            content = m.refusal
        messages.append({"role": m.role, "content": content or ""})
    return messages
