"""What parsing a request costs decides where it is parsed: a URL or an image part never on the event loop (an image
task may fetch or decode it), a short text inline as before."""

from __future__ import annotations

from hf_provider.provider.facade import _INLINE_PARSE_CHARS
from hf_provider.provider.params import input_size


def test_urls_and_image_parts_are_parsed_off_the_event_loop() -> None:
    assert input_size("https://images.example.com/cat.png") > _INLINE_PARSE_CHARS
    assert input_size(["a cat", "http://x/y.png"]) > _INLINE_PARSE_CHARS
    part = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    assert input_size(part) > _INLINE_PARSE_CHARS
    assert input_size(["a cat", part]) > _INLINE_PARSE_CHARS


def test_short_texts_still_count_their_characters() -> None:
    assert input_size("a cat on a mat") == 14
    assert input_size(["a cat", "a dog"]) == 10
    assert input_size(["a cat", {"type": "text", "text": "a dog"}]) == 5 + len("text") + len("a dog")
    assert input_size({"question": "q", "context": "c"}) == 2
