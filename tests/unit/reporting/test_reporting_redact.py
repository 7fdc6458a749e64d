"""Redaction: every secret shape is masked, in plain text, exception messages, nested values and log records;
inputs are reduced to a length and a hash unless the opt-in asks for a masked excerpt."""

from __future__ import annotations

import io
import logging

import pytest

from hf_provider.reporting.redact import digest, install_log_redaction, mask, mask_value
from hf_provider.reporting.reports import masked_message

SECRETS = {
    "bearer": ("Authorization: Bearer s3cr3t-bearer-value", "s3cr3t-bearer-value"),
    "header-dict": ("{'authorization': 'Bearer abcDEF123456'}", "abcDEF123456"),
    "hf": ("the token hf_AbCdEf0123456789xyz leaked", "hf_AbCdEf0123456789xyz"),
    "sk": ("key sk-proj-Zy9_8x7-w6v5u4 here", "sk-proj-Zy9_8x7-w6v5u4"),
    "api_key": ("GET /x?api_key=QWERTY98765&y=1", "QWERTY98765"),
    "password-json": ('{"password": "hunter2hunter2"}', "hunter2hunter2"),
    "token-colon": ("token: tok3n-v4lue", "tok3n-v4lue"),
    "secret": ("client_secret=shh-its-secret", "shh-its-secret"),
    "email": ("mail jane.doe+ops@example.co.uk now", "jane.doe+ops@example.co.uk"),
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_secret_kind_is_masked(kind: str) -> None:
    text, secret = SECRETS[kind]
    out = mask(text)
    assert secret not in out
    assert mask(out) == out  # idempotent


def test_a_secret_inside_an_exception_message_is_masked() -> None:
    exc = RuntimeError("upstream refused Authorization: Bearer hf_CanaryCanary123 for bob@corp.example")
    out = masked_message(exc)
    assert "hf_CanaryCanary123" not in out and "bob@corp.example" not in out
    assert out.startswith("upstream refused")


def test_nested_parameter_values_are_masked() -> None:
    params = {
        "max_new_tokens": 5,
        "headers": {"Authorization": "Bearer x-y-z-123456", "X-Other": "ok"},
        "stop": ["fine", "sk-nested0123456789"],
        "options": [{"api_key": "deeply-nested-key"}, {"password": 12345}],
    }
    out = mask_value(params)
    flat = repr(out)
    for secret in ("x-y-z-123456", "sk-nested0123456789", "deeply-nested-key", "12345"):
        assert secret not in flat
    assert out["max_new_tokens"] == 5 and out["headers"]["X-Other"] == "ok" and out["stop"][0] == "fine"


def test_ordinary_text_is_left_alone() -> None:
    text = "input 0 is 900 tokens long; max_new_tokens=5, tokens: 3, model 'lm' at /v1/tasks/x"
    assert mask(text) == text


def test_digest_holds_length_and_hash_only_unless_opted_in() -> None:
    d = digest(["my private text", "another"])
    assert d["items"] == 2 and d["chars"] == len("my private text") + 1 + len("another")
    assert len(d["sha256"]) == 12 and "text" not in d
    assert "private" not in repr(d)
    assert digest(["my private text", "another"]) == d  # stable
    opted = digest("call me at ann@example.org " + "x" * 500, include=True, limit=40)
    assert len(opted["text"]) <= 40 and "ann@example.org" not in opted["text"]


def test_log_records_are_masked_message_and_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())  # restored after
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("hfp-test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s", "Authorization: Bearer hf_LogCanary0001")
        try:
            raise ValueError("bad password=LogCanary0002 for x@y.org")
        except ValueError:
            logger.exception("failed")
        logger.info("plain %d", 3)  # below the level: never made, never formatted
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "LogCanary0001" not in out and "LogCanary0002" not in out and "x@y.org" not in out
    assert "ValueError" in out and "Traceback" in out  # the traceback is kept, masked
