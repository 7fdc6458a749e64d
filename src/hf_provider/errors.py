"""One error hierarchy for the whole package.

Errors carry domain fields (model, task, param), never HTTP codes: the server maps them to statuses in one table
(`server/errors.py`). Standard-library mixins let callers catch by category, as huggingface_hub does
(`LocalEntryNotFoundError(FileNotFoundError, EntryNotFoundError)`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping


class ProviderError(Exception):
    """Base class of every error hf-provider raises on purpose."""

    code: str = "provider_error"

    def __init__(
        self, message: str, *, model: str | None = None, task: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.task = task
        self.param = param


class ConfigError(ProviderError, ValueError):
    """Configuration (hfp.toml, ModelSpec, HFP_ settings) is invalid; raised at start."""

    code = "invalid_config"


class ModelNotFound(ProviderError, LookupError):
    """The name is neither a configured model, nor a local folder, nor a resolvable Hub id."""

    code = "model_not_found"

    def __init__(self, model: str, available: Iterable[str] = (), detail: str | None = None) -> None:
        self.available = sorted(available)
        self.detail = detail  # what is wrong with the name itself, for a message that has named it already
        listing = ", ".join(self.available) or "none"
        msg = f"Unknown model {model!r}. Available models: {listing}."
        if detail:
            msg = f"{msg} {detail}"
        super().__init__(msg, model=model, param="model")


class PipelineNotFound(ProviderError, LookupError):
    """No pipeline of that name is configured (`[[pipelines]]` in hfp.toml)."""

    code = "pipeline_not_found"

    def __init__(self, name: str, available: Iterable[str] = ()) -> None:
        listing = ", ".join(sorted(available)) or "none"
        super().__init__(f"Unknown pipeline {name!r}. Configured pipelines: {listing}.", param="name")


class TaskNotSupported(ProviderError, ValueError):
    """The model's architecture cannot serve the task, or the task is not enabled for it."""

    code = "task_not_supported"

    def __init__(self, model: str, task: str, supported: Iterable[str], reason: str | None = None) -> None:
        self.supported = sorted(supported)
        msg = (
            f"Model {model!r} does not serve task {task!r}"
            f"{' (' + reason + ')' if reason else ''}. It serves: {', '.join(self.supported) or 'none'}."
        )
        super().__init__(msg, model=model, task=task, param="task")


class InvalidInput(ProviderError, ValueError):
    """The request's inputs or parameters are malformed or out of bounds."""

    code = "invalid_input"

    def renamed(self, names: Mapping[str, str]) -> InvalidInput:
        """The same error in the words of a client that names parameters otherwise (OpenAI's `max_tokens` for
        the handlers' `max_new_tokens`, `input` for `inputs`): its param and the names quoted in its message."""
        if not names:
            return self
        pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, names)) + r")(?![\w])")
        out = copy.copy(self)
        out.message = pattern.sub(lambda m: names[m.group(1)], self.message)
        out.args = (out.message,)
        if self.param is not None:
            head, sep, rest = self.param.partition("[")
            out.param = names.get(head, head) + sep + rest
        return out


class TooManyItems(InvalidInput):
    code = "too_many_items"


class InvalidJson(InvalidInput):
    """The request body is not valid JSON."""

    code = "invalid_json"


class UnsupportedField(InvalidInput):
    """The request body carries a field this server does not implement (OpenAI's `audio`...), at a value other
    than its default: refused, never ignored."""

    code = "unsupported_parameter"


class UnsupportedContent(InvalidInput):
    """A message carries content the model cannot take (an image or audio part for a text-only model)."""

    code = "unsupported_content"


class InvalidRequest(InvalidInput):
    """The request body does not fit the route's schema."""

    code = "invalid_request"


class RequestTooLarge(InvalidInput):
    code = "request_too_large"


class InvalidAudio(InvalidInput):
    """An uploaded audio file that cannot be decoded: corrupt, truncated, not audio (media/audio.py)."""

    code = "invalid_audio"


class AudioTooShort(InvalidAudio):
    """Empty audio, or shorter than the minimum (OpenAI's code and limit: 0.1 s)."""

    code = "audio_too_short"


class Unauthorized(ProviderError, PermissionError):
    """Missing or wrong API key (server/auth.py)."""

    code = "invalid_api_key"
    error_class = "bad_request"


class ModelLoadError(ProviderError, RuntimeError):
    """The weights could not be loaded (missing files, bad config, refused quantization)."""

    code = "model_load_failed"


class LoadBackoff(ModelLoadError):
    """The model's last load failed moments ago; the next one waits out a backoff (models/manager.py)."""

    code = "model_load_failed"

    def __init__(self, message: str, *, model: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, model=model)
        self.retry_after = retry_after


class CacheCorrupt(ModelLoadError):
    """A cached model file failed its integrity check and could not be repaired (offline, or the Hub sent bad
    bytes again); `file` names it, relative to the snapshot (cache/integrity.py)."""

    code = "cache_corrupt"
    error_class = "cache_corrupt"  # reporting.classify

    def __init__(self, message: str, *, model: str | None = None, file: str | None = None) -> None:
        super().__init__(message, model=model)
        self.file = file


class LockDrift(ModelLoadError):
    """`--locked`: what the Hub or the cache holds differs from hfp.lock (a file missing from the locked commit,
    another size or sha256 upstream, the config asking another source or revision than the lock)."""

    code = "lock_drift"


class QuantizationRejected(ModelLoadError):
    """A quantized model failed its accuracy guard; carries the measured figure."""

    code = "quantization_rejected"

    def __init__(self, message: str, *, model: str | None = None, measured: float | None = None) -> None:
        super().__init__(message, model=model)
        self.measured = measured


class VersionConflict(ProviderError, RuntimeError):
    """A swap, rollback or canary step cannot run now: another is in progress, nothing to roll back to, no canary
    running. The model keeps serving as it was."""

    code = "version_conflict"


class Unavailable(ProviderError, RuntimeError):
    """The work cannot be done now (model loading past the deadline, queue full, memory exhausted).

    `retry_after` is a hint in seconds for clients.
    """

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        task: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, model=model, task=task)
        self.retry_after = retry_after


class MemoryBudgetExceeded(Unavailable):
    """A load does not fit the memory budget even after every evictable model is gone."""

    code = "memory_budget_exceeded"


class OutOfMemory(Unavailable, MemoryError):
    """A batch ran out of device or host memory and every recovery strategy failed."""

    code = "out_of_memory"


class Overloaded(Unavailable):
    """Refused at admission: the model's queue would not serve the request within its deadline (or is at its
    hard bound). Nothing was computed; retry after `retry_after` seconds."""

    code = "overloaded"


class CircuitOpen(Unavailable):
    """Refused at once: the model's circuit breaker is open after consecutive failures of its own
    (resilience/breaker.py). Nothing was parsed or computed; a probe may be tried after `retry_after` seconds."""

    code = "circuit_open"
    error_class = "circuit_open"  # reporting.classify: not an overload


class WorkerCrashed(Unavailable):
    """The model's worker process died (killed, a segfault, a fatal device error) while it held the request, or
    is restarting after such a death (isolation/runners.py). Only that model's requests fail; retry after
    `retry_after` seconds, or a fallback serves the request."""

    code = "worker_crashed"
    error_class = "worker_crashed"  # reporting.classify


class DeviceFailed(Unavailable):
    """A fatal device error (a CUDA illegal memory access, a device-side assert) poisoned the device context of
    an in-process model: it is marked failed and refuses requests until it is reloaded (or the server restarts),
    instead of serving the same error forever."""

    code = "model_failed"
    error_class = "device_fatal"  # reporting.classify


class DeadlineExceeded(ProviderError, TimeoutError):
    """The request passed its deadline (the server's request_timeout_s, or the client's shorter one)."""

    code = "timeout"


class Cancelled(ProviderError):
    """The caller went away (client disconnected, asyncio cancellation, a stream closed early)."""

    code = "cancelled"


class StepFailed(ProviderError, RuntimeError):
    """A pipeline's step failed with an error that is no ProviderError (a bug, a device error): the message names
    the pipeline, step, model and task; the original error is its `__cause__` (in the log and the report)."""

    code = "internal_error"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class InvalidMedia(InvalidInput):
    """An image (or other media input) that cannot be decoded: corrupt, truncated, not a supported format."""

    code = "invalid_media"


class MediaTypeMismatch(InvalidMedia):
    """The bytes are of another type than the input claims (a data:image/png URI holding JPEG bytes or text)."""

    code = "media_type_mismatch"


class MediaTooLarge(RequestTooLarge):
    """One media input is over its limit in bytes or, for an image, in pixels (a decompression bomb)."""

    code = "media_too_large"


class UrlNotAllowed(InvalidInput):
    """A media URL whose host the settings do not allow (`[media] url_hosts`): the server fetches nothing."""

    code = "url_not_allowed"
