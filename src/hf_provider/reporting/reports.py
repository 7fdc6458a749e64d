"""Structured error reports and their fingerprints.

A report says what failed (`error_class`, exception type, masked message), where (model and revision, phase,
the innermost hf_provider frames) and in what state (request id, device, dtype, batch size, input shape,
memory). Reports of one root cause share a fingerprint: a sha256 of the error's kind only (error class, the
`code` of a ProviderError or else the exception type, phase, model as configured with its revision, the
innermost frames without line numbers). Never the message: whatever a request puts in it (parameter names,
keys, ids) cannot split a group or grow errors.db; the latest masked message is kept for display.

Light on purpose (std-lib only): `scheduling/request.py` imports the request-id context from here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from hf_provider.context import REQUEST_ID
from hf_provider.reporting.redact import mask

__all__ = ["REQUEST_ID"]  # re-exported for callers that read it with the report helpers

ERROR_CLASSES = (
    "oom",
    "device_fatal",
    "load_failed",
    "cache_corrupt",
    "timeout",
    "overloaded",
    "circuit_open",
    "worker_crashed",
    "bad_request",
    "internal",
)
PHASES = ("parse", "load", "queue", "preprocess", "forward", "postprocess", "stream", "background")
MAX_FRAMES = 4


@dataclass(slots=True)
class Report:
    error_class: str
    exc_type: str
    message: str  # masked
    model: str  # a configured model's name, or "-"
    phase: str
    fingerprint: str
    ts: float
    revision: str | None = None
    request_id: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    input_shape: list[int] | None = None
    inputs: dict[str, Any] | None = None  # redact.digest(...): length and hash, never the text by default
    memory: dict[str, int] = field(default_factory=dict)
    frames: list[str] = field(default_factory=list)
    pipeline: str | None = None  # the pipeline and step the failed request was a step of (pipelines/)
    step: str | None = None
    repeats: int = 0  # later occurrences folded into this report (Reporter: refusals under overload)
    last_ts: float | None = None  # the last of them

    def sample(self) -> dict[str, Any]:
        """What the store keeps of one occurrence (everything but the group's own keys)."""
        return {
            "ts": self.ts,
            "exc_type": self.exc_type,
            "message": self.message,
            "revision": self.revision,
            "request_id": self.request_id,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "input_shape": self.input_shape,
            "inputs": self.inputs,
            "memory": self.memory,
            "frames": self.frames,
        }


# -- classification --------------------------------------------------------------------------------------------

_DEVICE_FATAL = re.compile(
    r"(?i)cuda error|device-side assert|illegal memory access|cudnn_status|cublas_status|nccl error|"
    r"hip error|xpu error|unspecified launch failure"
)
_OOM = ("out of memory", "can't allocate memory", "cannot allocate memory")
_CORRUPT_TYPES = frozenset({"SafetensorError", "HeaderTooLarge", "UnpicklingError", "BadZipFile"})
_BY_NAME = {
    "CircuitOpen": "circuit_open",
    "BrokenProcessPool": "worker_crashed",
    "WorkerCrashed": "worker_crashed",
    "RequestValidationError": "bad_request",
}


def classify(exc: BaseException) -> str:
    """The error class of an exception. An error type may declare its own with an `error_class` attribute
    (breakers, worker pools and cache checks added later do, without a change here)."""
    from hf_provider import errors as E

    declared = getattr(exc, "error_class", None)
    if isinstance(declared, str) and declared in ERROR_CLASSES:
        return declared
    for e in _chain(exc):
        if type(e).__name__ in _CORRUPT_TYPES:
            return "cache_corrupt"
    if isinstance(exc, E.OutOfMemory | E.MemoryBudgetExceeded | MemoryError) or _is_oom(exc):
        return "oom"
    if isinstance(exc, RuntimeError) and _DEVICE_FATAL.search(str(exc)):
        return "device_fatal"
    if isinstance(exc, E.ModelLoadError):
        return "load_failed"
    if isinstance(exc, E.DeadlineExceeded | TimeoutError):
        return "timeout"
    if isinstance(exc, E.Unavailable):
        return "overloaded"
    if isinstance(exc, E.InvalidInput | E.TaskNotSupported | E.ModelNotFound):
        return "bad_request"
    return _BY_NAME.get(type(exc).__name__, "internal")


def _is_oom(exc: BaseException) -> bool:
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(out) < 8:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


# -- frames and fingerprint --------------------------------------------------------------------------------------


def frames_of(exc: BaseException) -> list[str]:
    """The innermost frames inside hf_provider as `module:function` (no line numbers: they move between
    releases), innermost last."""
    # A walk of the traceback's code objects rather than traceback.extract_tb, which reads source lines through
    # linecache (a stat per frame): reports are made on the event loop, hundreds a second under overload.
    out: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = code.co_filename.replace("\\", "/")
        i = path.rfind("/hf_provider/")
        if i >= 0:
            out.append(f"{path[i + 1 :].removesuffix('.py').replace('/', '.')}:{code.co_name}")
        tb = tb.tb_next
    return out[-MAX_FRAMES:]


def code_of(exc: BaseException) -> str:
    """The error's kind: a ProviderError's `code` (what clients see), else the exception type's name."""
    from hf_provider.errors import ProviderError

    code = getattr(exc, "code", None) if isinstance(exc, ProviderError) else None
    return code if isinstance(code, str) else type(exc).__name__


def fingerprint(
    error_class: str,
    code: str,
    frames: list[str],
    model: str,
    phase: str,
    step: tuple[str, str] | None = None,
) -> str:
    """The group key. `model` is a configured name (with `@revision` when known) or "-": unknown names are
    collapsed by the reporter before this, so a request cannot choose its group. A pipeline's step (configured
    names too) makes groups of its own: the same error in two steps is two places to look."""
    key = "\n".join([error_class, code, *frames, model, phase, *(step or ())])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# -- marks carried by the exception itself ----------------------------------------------------------------------


def tag(exc: BaseException, phase: str, batch_size: int | None = None) -> None:
    """Record where `exc` happened; the innermost tag wins (a stage's tag is not overwritten by its caller's)."""
    try:
        if getattr(exc, "hfp_phase", None) is None:
            exc.hfp_phase = phase  # type: ignore[attr-defined]
            if batch_size is not None:
                exc.hfp_batch_size = batch_size  # type: ignore[attr-defined]
    except AttributeError:  # an exception type without a __dict__: the reporter falls back to its own guess
        pass


def phase_of(exc: BaseException) -> str | None:
    return getattr(exc, "hfp_phase", None)


def masked_message(exc: BaseException) -> str:
    """The exception's message, masked. A validation error (pydantic, FastAPI) is summarised by field and
    problem: its str() would quote the offending input."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = errors()
            return mask(
                "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in found[:5])
            )[:2000]
        except Exception:
            return type(exc).__name__
    text = getattr(exc, "message", None)
    return mask(text if isinstance(text, str) else str(exc))[:2000]
