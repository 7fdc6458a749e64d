"""Reporter: turns a failure into a redacted `Report`, counts it, and hands it to a writer thread.

Called from the request's settlement point (scheduling/batcher.py `_on_settle`), from the provider for requests
refused before a queue, from the server's error handlers for what reaches them unreported, and from the
supervisor for internal failures of background work. `report` does O(1) work besides building the report (a
deque append and a counter): SQLite writes happen on the supervised `error-reports` thread, in batches, so
neither the event loop nor a stage thread waits for the disk. Each exception object is reported once.

What a request controls never makes a group: model names outside `known_models` become "-", the fingerprint
ignores the message, and the store folds groups past `max_groups` into one overflow group per error class
(`overflowed` counts what was folded, `count_overflow` hears of it).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from hf_provider.context import PIPELINE_STEP
from hf_provider.errors import Overloaded
from hf_provider.reporting.redact import digest
from hf_provider.reporting.reports import (
    REQUEST_ID,
    Report,
    classify,
    code_of,
    fingerprint,
    frames_of,
    masked_message,
    phase_of,
)
from hf_provider.reporting.store import MAX_GROUPS, ErrorStore
from hf_provider.resilience.periodic import Periodic
from hf_provider.types import Outcome

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # reports waiting for the writer; beyond this the oldest are dropped, never the request
FLUSH_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 300.0
_UNSET: Any = object()


class Reporter:
    def __init__(
        self,
        store: ErrorStore,
        *,
        retention_s: float = 30 * 86400.0,
        include_inputs: bool = False,
        known_models: Callable[[], Collection[str]] | None = None,
        max_groups: int = MAX_GROUPS,
        count: Callable[[str, str], None] | None = None,
        count_overflow: Callable[[str, int], None] | None = None,
        forward: Callable[[Report], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_s <= 0:
            raise ValueError(f"error report retention must be a positive duration, got {retention_s}")
        if max_groups < 1:
            raise ValueError(f"[reporting] max_groups must be at least 1, got {max_groups}")
        self.store = store
        self.retention_s = float(retention_s)
        self.include_inputs = include_inputs
        # The configured model names: the only model values a report (and a metric label) may hold. None keeps
        # names as passed (a caller that already bounds them).
        self.known_models = known_models
        self.max_groups = max_groups
        self.count = count
        self.count_overflow = count_overflow  # (error class, reports folded) after each write that folded
        self.forward = forward
        self.clock = clock
        self._overflowed: dict[str, int] = {}
        self._pending: deque[Report] = deque(maxlen=MAX_PENDING)
        self._folds: dict[
            tuple[Any, ...], Report
        ] = {}  # see _fold: pending reports later refusals count into
        self._fold_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._closed = False
        # The background writer (resilience/periodic.py), shared in kind with the observer's: pending reports
        # every second, retention every five minutes. A failing write is logged, counted and retried.
        self._writer = Periodic("error-reports")
        self._writer.every(FLUSH_INTERVAL_S, "error-reports", self.flush, first_s=FLUSH_INTERVAL_S)
        self._writer.every(RETENTION_INTERVAL_S, "error-retention", self.expire)

    @property
    def overflowed(self) -> dict[str, int]:
        """Reports folded into an overflow group by this reporter, per error class (a counter's source)."""
        return dict(self._overflowed)  # flush replaces the dict, never changes it

    def _label(self, model: str) -> str:
        known = self.known_models
        return model if known is None or model in known() else "-"

    # -- write side: never raises into the caller --

    def outcome(self, o: Outcome) -> None:
        """The outcome recorder's listener (observability/outcomes.py): every failed request is reported, a
        refusal before any request existed included; a cancellation is the caller leaving, not a failure."""
        if o.error is None or o.outcome in ("ok", "cancelled"):
            return
        self.report(
            o.error,
            model=o.model,
            phase=o.phase,
            revision=o.revision,
            request_id=o.request_id,
            device=o.device,
            dtype=o.dtype,
            input_shape=None if o.input_shape is None else list(o.input_shape),
            inputs=_UNSET if o.inputs is None else o.inputs,
            # a queued request keeps its step; a refusal is recorded in the submitting step's own context
            step=getattr(o.request, "pipeline_step", None) if o.request is not None else PIPELINE_STEP.get(),
        )

    def report(
        self,
        exc: BaseException,
        *,
        model: str,
        phase: str | None = None,
        revision: str | None = None,
        request_id: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        input_shape: list[int] | None = None,
        inputs: Any = _UNSET,
        step: tuple[str, str] | None = None,
    ) -> Report | None:
        """Record one failure of `exc` (None when it was folded into a pending report of the same refusal)."""
        try:
            label = self._label(model)
            if isinstance(exc, Overloaded) and self._fold(exc, label, phase):
                return None
            r = self._build(
                exc, label, phase, revision, request_id, device, dtype, batch_size, input_shape, step
            )
            if inputs is not _UNSET:
                r.inputs = digest(inputs, include=self.include_inputs)
            self._pending.append(r)
            if isinstance(exc, Overloaded):
                with self._fold_lock:
                    self._folds[(type(exc), label, phase)] = r
            if self.count is not None:
                self.count(r.model, r.error_class)
            return r
        except Exception:
            log.warning("building an error report failed; the request goes on", exc_info=True)
            return None

    def _fold(self, exc: BaseException, label: str, phase: str | None) -> bool:
        """Count a refusal into the pending report of the previous one (same type, model and phase) instead of
        building a new one. Overload refusals come by the hundred a second, all alike, and building each report
        on the event loop cost the overload bench a tenth of its goodput; the group's count stays exact and it
        keeps a sample per flush. False when there is no pending report to fold into (it was written)."""
        with self._fold_lock:
            r = self._folds.get((type(exc), label, phase))
            if r is None:
                return False
            r.repeats += 1
            r.last_ts = self.clock()
        if self.count is not None:
            self.count(r.model, r.error_class)
        return True

    def internal_failure(self, component: str, exc: BaseException) -> None:
        """A background loop's exception (the supervisor's listener): model from `stage/<model>` components."""
        self.report(exc, model=component.rsplit("/", 1)[-1], phase="background")

    def _build(
        self,
        exc: BaseException,
        label: str,
        phase: str | None,
        revision: str | None,
        request_id: str | None,
        device: str | None,
        dtype: str | None,
        batch_size: int | None,
        input_shape: list[int] | None,
        step: tuple[str, str] | None = None,
    ) -> Report:
        where = phase_of(exc) or phase or "-"
        frames = frames_of(exc)
        error_class = classify(exc)
        # Groups are kept per revision: after a swap or during a canary, the candidate's errors are its own.
        who = label if revision is None or label == "-" else f"{label}@{revision}"
        fp = fingerprint(error_class, code_of(exc), frames, who, where, step)
        return Report(
            error_class=error_class,
            exc_type=type(exc).__name__,
            message=masked_message(exc),
            model=label,
            phase=where,
            fingerprint=fp,
            ts=self.clock(),
            revision=revision if label != "-" else None,
            request_id=request_id or REQUEST_ID.get(),
            device=device,
            dtype=dtype,
            batch_size=getattr(exc, "hfp_batch_size", None) or batch_size,
            input_shape=input_shape,
            memory=_memory(),
            frames=frames,
            pipeline=None if step is None else step[0],
            step=None if step is None else step[1],
        )

    # -- writer thread --

    def start(self, supervisor: Any = None) -> None:
        """Start the writer (supervised when a Supervisor is given: a failing write is logged, counted, retried)."""
        if not self._closed:
            self._writer.start(supervisor)

    def flush(self) -> None:
        """Write what is pending (the writer does this every second; reads do it first)."""
        with self._flush_lock:
            with self._fold_lock:  # from here on a refusal builds a new report: these ones are being written
                self._folds.clear()
            batch = []
            while self._pending:
                try:
                    batch.append(self._pending.popleft())
                except IndexError:
                    break
            folded = self.store.write(batch, max_groups=self.max_groups) if batch else {}
            if folded:  # a new dict, published whole: `overflowed` reads it without the lock
                total = dict(self._overflowed)
                for error_class, n in folded.items():
                    total[error_class] = total.get(error_class, 0) + n
                self._overflowed = total
        for error_class, n in folded.items():
            if self.count_overflow is not None:
                try:
                    self.count_overflow(error_class, n)
                except Exception:
                    log.warning("counting folded error reports failed", exc_info=True)
        if self.forward is not None:  # Sentry (reporting/sentry.py), off the request path like the store
            for r in batch:
                try:
                    self.forward(r)
                except Exception:
                    log.warning("forwarding an error report failed", exc_info=True)

    def expire(self, now: float | None = None) -> int:
        return self.store.expire((self.clock() if now is None else now) - self.retention_s)

    def close(self) -> None:
        self._closed = True
        self._writer.stop()
        try:
            self.flush()
        except Exception:
            log.exception("final write of error reports failed")
        self.store.close()
        close = getattr(self.forward, "close", None)
        if close is not None:
            close()

    # -- read side --

    def groups(
        self, *, model: str | None = None, since: float | None = None, error_class: str | None = None
    ) -> list[dict[str, Any]]:
        if not self._closed:
            self.flush()
        return self.store.groups(model=model, since=since, error_class=error_class)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_rss: list[float] = [0.0, -1.0]  # bytes, monotonic time read


def _memory() -> dict[str, int]:
    """Process resident bytes (/proc/self/statm: one small read, at most every 50 ms; reports are made on the
    event loop, hundreds a second under overload), and CUDA allocated bytes when torch has initialised CUDA."""
    out: dict[str, int] = {}
    now = time.monotonic()
    if now - _rss[1] > 0.05:
        try:
            with open("/proc/self/statm", "rb") as f:
                _rss[:] = [int(f.read().split()[1]) * _PAGE, now]
        except (OSError, ValueError, IndexError):
            pass
    if _rss[1] >= 0:
        out["rss_bytes"] = int(_rss[0])
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                out["cuda_allocated_bytes"] = int(torch.cuda.memory_allocated())
        except Exception:
            pass
    return out
