"""Supervision of background work: nothing that runs off the request path may die or fail silently.

Every background loop (batch stages, keep-alive reaper, history writer, resource sampler, start-up loading) runs
its body through `Supervisor`: an unexpected exception is logged with its traceback, counted per component (the
`on_error` listener feeds `hfp_internal_errors_total{component}`), and the loop goes on. A component whose thread
ended unexpectedly, or whose last run failed, is *down* until it succeeds again; `/readyz` names it.
Written by hand: the standard library has no supervised thread, and the loops are too small for a framework.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

ErrorListener = Callable[[str], None]
ExceptionListener = Callable[[str, BaseException], None]  # the error reporter's hook: component and exception


class Supervisor:
    def __init__(self, on_error: ErrorListener | None = None) -> None:
        self._lock = threading.Lock()
        self._listeners: list[ErrorListener] = [on_error] if on_error is not None else []
        self._exception_listeners: list[ExceptionListener] = []
        self.errors: dict[str, int] = {}
        self._failing: dict[str, str] = {}  # component -> what failed last
        self._threads: dict[str, threading.Thread] = {}
        self._stopped: set[str] = set()

    # reporting ----------------------------------------------------------------------------------------------
    def report(self, component: str, exc: BaseException, *, down: bool = True) -> None:
        """Log `exc` with its traceback and count it. With `down`, the component stays down until `ok()`."""
        log.error("internal error in %s: %s", component, type(exc).__name__, exc_info=exc)
        with self._lock:
            self.errors[component] = self.errors.get(component, 0) + 1
            if down:
                self._failing[component] = type(exc).__name__
            listeners = list(self._listeners)
            on_exception = list(self._exception_listeners)
        for fn in listeners:
            try:
                fn(component)
            except Exception:  # a broken listener must not hide the error it was told about
                log.exception("error listener failed for %s", component)
        for report in on_exception:
            try:
                report(component, exc)
            except Exception:
                log.exception("exception listener failed for %s", component)

    def on_exception(self, fn: ExceptionListener) -> None:
        """Also tell `fn(component, exc)` of every reported exception (the error reporter listens here)."""
        with self._lock:
            self._exception_listeners.append(fn)

    def ok(self, component: str) -> None:
        """The component's last run succeeded: it is no longer down."""
        if component in self._failing:
            with self._lock:
                self._failing.pop(component, None)

    @contextmanager
    def guard(self, component: str, *, down: bool = True) -> Iterator[None]:
        """Run a block; an exception is reported (not raised) and the caller carries on."""
        try:
            yield
        except Exception as exc:
            self.report(component, exc, down=down)
        else:
            self.ok(component)

    def call(self, component: str, fn: Callable[..., object], *args: object) -> None:
        """`fn(*args)` through `guard`, for hooks and callbacks on the request path (counted, never raised)."""
        try:
            fn(*args)
        except Exception as exc:
            self.report(component, exc, down=False)

    # threads ------------------------------------------------------------------------------------------------
    def spawn(self, component: str, body: Callable[[], bool], *, name: str | None = None) -> threading.Thread:
        """A daemon thread calling `body()` until it returns False. An exception from one call is reported and
        the next call follows, so one bad iteration never ends the loop."""

        def run() -> None:
            failures = 0
            while True:
                try:
                    if not body():
                        break
                except Exception as exc:
                    self.report(component, exc)
                    failures += 1
                    time.sleep(min(1.0, 0.01 * 2**failures))  # a body that always fails must not spin a core
                else:
                    failures = 0
                    self.ok(component)
            with self._lock:
                self._stopped.add(component)

        t = threading.Thread(target=run, name=name or f"hfp-{component}", daemon=True)
        with self._lock:
            self._threads[component] = t
            self._stopped.discard(component)
        t.start()
        return t

    def forget(self, prefix: str) -> None:
        """Drop the components of something that was shut down on purpose (an unloaded model's stages)."""
        with self._lock:
            for d in (self._threads, self._failing):
                for k in [k for k in d if k == prefix or k.endswith("/" + prefix)]:
                    d.pop(k, None)

    def mark_down(self, component: str, reason: str) -> None:
        with self._lock:
            self._failing[component] = reason

    def down(self) -> dict[str, str]:
        """Components that are down now, with why: a thread that ended unexpectedly, or a failing last run."""
        with self._lock:
            out = dict(self._failing)
            for name, t in self._threads.items():
                if not t.is_alive() and name not in self._stopped:
                    out[name] = "thread ended unexpectedly"
            return out
