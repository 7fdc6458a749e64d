"""Reporter: turns a failure into a redacted `Report`, counts it, and hands it to a writer thread.

Called from the request's settlement point (scheduling/batcher.py `_on_settle`), from the provider for requests
refused before a queue, from the server's error handlers for what reaches them unreported, and from the
supervisor for internal failures of background work. `report` does O(1) work besides building the report (a
deque append and a counter): SQLite writes happen on the supervised `error-reports` thread, in batches, so
neither the event loop nor a stage thread waits for the disk. Each exception object is reported once.
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

from hf_provider.errors import Overloaded
from hf_provider.reporting.redact import digest
from hf_provider.reporting.reports import (
    REQUEST_ID,
    Report,
    classify,
    fingerprint,
    frames_of,
    is_reported,
    mark_reported,
    masked_message,
    phase_of,
)
from hf_provider.reporting.store import ErrorStore

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
        names: Callable[[], Collection[str]] = tuple,
        count: Callable[[str, str], None] | None = None,
        forward: Callable[[Report], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_s <= 0:
            raise ValueError(f"error report retention must be a positive duration, got {retention_s}")
        self.store = store
        self.retention_s = float(retention_s)
        self.include_inputs = include_inputs
        self.names = names  # configured model names: the only model values a report (and a label) may hold
        self.count = count
        self.forward = forward
        self.clock = clock
        self._pending: deque[Report] = deque(maxlen=MAX_PENDING)
        self._known: dict[tuple[Any, ...], tuple[str, str]] = {}  # see _build: (error class, fingerprint)
        self._folds: dict[
            tuple[Any, ...], Report
        ] = {}  # see _fold: pending reports later refusals count into
        self._fold_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_retention = 0.0

    # -- write side: never raises into the caller --

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
    ) -> Report | None:
        """Record one failure of `exc` (None when this exception object was reported already)."""
        if is_reported(exc):
            return None
        mark_reported(exc)
        if isinstance(exc, Overloaded) and self._fold(exc, model, phase):
            return None
        try:
            r = self._build(exc, model, phase, revision, request_id, device, dtype, batch_size, input_shape)
            if inputs is not _UNSET:
                r.inputs = digest(inputs, include=self.include_inputs)
            self._pending.append(r)
            if isinstance(exc, Overloaded):
                with self._fold_lock:
                    self._folds[(type(exc), model, phase)] = r
            if self.count is not None:
                self.count(r.model, r.error_class)
            return r
        except Exception:
            log.warning("building an error report failed; the request goes on", exc_info=True)
            return None

    def _fold(self, exc: BaseException, model: str, phase: str | None) -> bool:
        """Count a refusal into the pending report of the previous one (same type, model and phase) instead of
        building a new one. Overload refusals come by the hundred a second, all alike, and building each report
        on the event loop cost the overload bench a tenth of its goodput; the group's count stays exact and it
        keeps a sample per flush. False when there is no pending report to fold into (it was written)."""
        with self._fold_lock:
            r = self._folds.get((type(exc), model, phase))
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
        model: str,
        phase: str | None,
        revision: str | None,
        request_id: str | None,
        device: str | None,
        dtype: str | None,
        batch_size: int | None,
        input_shape: list[int] | None,
    ) -> Report:
        label = model if model in self.names() else "-"
        where = phase_of(exc) or phase or "-"
        exc_type = type(exc).__name__
        message = masked_message(exc)
        frames = frames_of(exc)
        # Classifying and fingerprinting cost regular expressions per report, and under overload the same
        # refusal repeats hundreds of times a second on the event loop with only its numbers changed: those
        # share a key here (digits dropped by str.translate, a C loop), computed once. Anything else that differs
        # (hex ids, paths) makes a new key and takes the full path, so grouping never depends on the cache.
        cause = exc.__cause__ or exc.__context__
        # Groups are kept per revision: after a swap or during a canary, the candidate's errors are its own.
        who = label if revision is None or label == "-" else f"{label}@{revision}"
        key = (type(exc), type(cause), who, where, tuple(frames), message.translate(_NO_DIGITS))
        known = self._known.get(key)
        if known is None:
            error_class = classify(exc)
            known = (error_class, fingerprint(error_class, exc_type, frames, who, where, message))
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()
            self._known[key] = known
        error_class, fp = known
        return Report(
            error_class=error_class,
            exc_type=exc_type,
            message=message,
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
        )

    # -- writer thread --

    def start(self, supervisor: Any = None) -> None:
        """Start the writer (supervised when a Supervisor is given: a failing write is logged, counted, retried)."""
        if self._thread is not None or self._stop.is_set():
            return
        if supervisor is not None:
            self._thread = supervisor.spawn("error-reports", self._run_once, name="hfp-error-reports")
        else:
            self._thread = threading.Thread(target=self._run_plain, name="hfp-error-reports", daemon=True)
            self._thread.start()

    def _run_once(self) -> bool:
        if self._stop.wait(FLUSH_INTERVAL_S):
            return False
        self.flush()
        now = self.clock()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_INTERVAL_S
            self.store.expire(now - self.retention_s)
        return True

    def _run_plain(self) -> None:
        while True:
            try:
                if not self._run_once():
                    return
            except Exception:
                log.exception("writing error reports failed; retrying")

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
            if batch:
                self.store.write(batch)
        if self.forward is not None:  # Sentry (reporting/sentry.py), off the request path like the store
            for r in batch:
                try:
                    self.forward(r)
                except Exception:
                    log.warning("forwarding an error report failed", exc_info=True)

    def expire(self, now: float | None = None) -> int:
        return self.store.expire((self.clock() if now is None else now) - self.retention_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
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
        if not self._stop.is_set():
            self.flush()
        return self.store.groups(model=model, since=since, error_class=error_class)


_NO_DIGITS = str.maketrans("", "", "0123456789")
_KNOWN_MAX = 4096

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
