"""Redaction: secrets masked in every message that is stored or logged; inputs reduced to a length and a hash.

Hand-written regular expressions: the secret shapes we mask (bearer values, `hf_` tokens, `sk-` keys,
`key=value` parameters, e-mail addresses) are few and fixed, and a scrubbing library (presidio, scrubadub) would
pull in NLP models for what five patterns do. `install_log_redaction` masks every log record the process makes
(ours and uvicorn's "Exception in ASGI application" tracebacks alike) at creation, so no handler or formatter
ever sees the raw text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_KEYS = re.compile(
    r"(?i)^(?:authorization|x-api-key|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|password"
    r"|passwd|secret|client[_-]?secret|private[_-]?key|hf[_-]?token)$"
)
_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    # Authorization: <scheme> <value>, and a bare "Bearer <value>" anywhere
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',;}]+"),
        lambda m: f"{m[1]}{m[2] + ' ' if m[2] else ''}***",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 ***"),
    (re.compile(r"\bhf_(?!provider)[A-Za-z0-9]{12,}"), "hf_***"),  # not the package name in paths
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-***"),
    # api_key=..., "password": "...", token: ... (the value up to a delimiter)
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|password|passwd|secret"
            r"|client[_-]?secret|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1***",
    ),
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"), "<email>"),
)


def mask(text: str) -> str:
    """`text` with every secret we know the shape of replaced (idempotent)."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def mask_value(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON-like value with secret-named keys blanked and every string masked (nested too)."""
    if depth > 20:
        return MASK
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {
            str(k): (MASK if SECRET_KEYS.match(str(k)) else mask_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_value(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask(repr(value))


def _text_of(inputs: Any) -> str:
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, bytes | bytearray):  # an uploaded file (audio): its digest, not a repr of megabytes
        return f"<{len(inputs)} bytes sha256:{hashlib.sha256(inputs).hexdigest()}>"
    if isinstance(inputs, list | tuple):
        return "\x1e".join(_text_of(x) for x in inputs)
    if isinstance(inputs, Mapping):
        return "\x1e".join(
            f"{k}\x1f{_text_of(v)}" for k, v in sorted(inputs.items(), key=lambda kv: str(kv[0]))
        )
    return repr(inputs)


def digest(inputs: Any, *, include: bool = False, limit: int = 200) -> dict[str, Any]:
    """What a report keeps of a request's inputs: item count, length and a 12-hex sha256 prefix. With `include`
    (the `[reporting] include_inputs` opt-in) also the text, truncated to `limit` characters and masked."""
    text = _text_of(inputs)
    out: dict[str, Any] = {
        "items": len(inputs) if isinstance(inputs, list | tuple) else 1,
        "chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12],
    }
    if include:
        out["text"] = mask(text[:limit])
    return out


def masked_traceback(exc: BaseException) -> str:
    return mask("".join(traceback.format_exception(exc)).rstrip("\n"))


# -- logging ---------------------------------------------------------------------------------------------------


def redact_record(record: logging.LogRecord) -> None:
    """Mask a record's message and pre-render its traceback masked (formatters then print `exc_text`)."""
    msg = record.getMessage()
    masked = mask(msg)
    if masked != msg:  # args stay when nothing changed: some formatters (uvicorn's access log) read them
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = masked_traceback(record.exc_info[1])
        record.exc_info = None  # handlers that render exc_info themselves (rich) would show it unmasked
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


def install_log_redaction() -> None:
    """Mask every log record of this process when it is made (idempotent). Records are only made for enabled
    levels, so the cost is one regex pass per line actually logged."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "hfp_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            redact_record(record)
        except (
            Exception
        ):  # a record that cannot be formatted is the logging module's to report, unmasked args
            record.msg, record.args = MASK, None
        return record

    factory.hfp_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
