"""One model's worker process (`isolation = "process"`): start it, run batches on it, notice its death, restart it.

The child (isolation/child.py) is started with 'spawn' through torch.multiprocessing, so it gets a fresh
interpreter and its own device context; a SIGKILL, a segfault or a fatal CUDA error ends only that process. Death
is seen at once: the parent waits on the pipe and on the process sentinel together. A supervised watcher thread
restarts it after a backoff (resilience/backoff.py); requests meanwhile get `WorkerCrashed` (503 `worker_crashed`) or,
where they can wait, are served once it is back (isolation/runners.py decides which).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection as mpc
import threading
import time
from typing import Any

from hf_provider.errors import ModelLoadError, ProviderError, WorkerCrashed
from hf_provider.isolation.child import unpack_error
from hf_provider.resilience.backoff import Backoff
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.spec import ModelSpec
from hf_provider.types import RowControl

log = logging.getLogger(__name__)

STARTING, READY, CRASHED, CLOSED = "starting", "ready", "crashed", "closed"
_POLL_S = 0.02  # how often a generating batch's stops are passed on while it runs


class ProcessWorker:
    """The parent's handle on one model's child process. One batch runs at a time (the scheduler's forward stage
    is the only caller); `call` raises WorkerCrashed when the process dies under it."""

    def __init__(
        self,
        spec: ModelSpec,
        path: str,
        commit: str | None,
        *,
        supervisor: Supervisor | None = None,
        backoff: Backoff | None = None,
        start_timeout_s: float = 300.0,
        threads: int = 0,
    ) -> None:
        import torch.multiprocessing as tmp  # registers torch's reductions: tensors sent go through shared memory

        self.spec, self.path, self.commit = spec, path, commit
        self.supervisor = supervisor or Supervisor()
        # 0.25 s after a crash, doubling with each crash within a minute of running, up to 30 s
        self.backoff = backoff or Backoff(first=0.25, cap=30.0, reset_s=60.0)
        self.start_timeout_s = start_timeout_s
        self.threads = threads
        self._ctx = tmp.get_context("spawn")
        self._cv = threading.Condition()
        self._call_lock = threading.Lock()
        self.state = STARTING
        self.process: Any = None
        self._conn: Any = None
        self.description: dict[str, Any] = {}
        self.restarts = 0
        self.crashes = 0
        self.start_s = 0.0  # how long the last start took (spawn to ready): the wait a restart costs
        self.down_since: float | None = None  # time.monotonic() of the last death, while not ready
        self.restart_at: float | None = None
        self._bid = 0
        self._watcher: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def ready(self) -> bool:
        return self.state == READY

    # lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start the first process and wait for its model to load; returns its description. A failed load
        raises its error (ModelLoadError when it cannot be rebuilt) and leaves no process behind."""
        self.description = self._spawn()
        with self._cv:
            self.state = READY
        self._watcher = self.supervisor.spawn(
            f"worker/{self.name}", self._watch_once, name=f"hfp-worker-{self.name}"
        )
        return self.description

    def _spawn(self) -> dict[str, Any]:
        t0 = time.monotonic()
        parent, child = self._ctx.Pipe()
        from hf_provider.isolation import child as child_main

        proc = self._ctx.Process(
            target=child_main.main,
            args=(child, self.spec.model_dump_json(), self.path, self.commit, self.threads),
            name=f"hfp-model-{self.name}",
            daemon=True,
        )
        proc.start()
        child.close()  # the child's end lives in the child only, so its death closes the pipe here
        try:
            end = t0 + self.start_timeout_s
            while not mpc.wait([parent], 0.25):  # a pipe closed by the child's death also wakes this
                if self.state == CLOSED:
                    raise ModelLoadError(
                        f"model {self.name!r} was closed while its worker started", model=self.name
                    )
                if time.monotonic() > end:
                    raise ModelLoadError(
                        f"the worker process of {self.name!r} did not load the model within "
                        f"{self.start_timeout_s:.0f}s",
                        model=self.name,
                    )
            msg = parent.recv()
        except (EOFError, OSError) as exc:
            proc.join(1.0)
            _kill(proc)
            raise ModelLoadError(
                f"the worker process of {self.name!r} died while loading (exit status {proc.exitcode})",
                model=self.name,
            ) from exc
        except BaseException:
            _kill(proc)
            parent.close()
            raise
        if msg[0] != "ready":
            _kill(proc)
            parent.close()
            error = unpack_error(msg[1])
            if isinstance(error, ProviderError):
                raise error
            raise ModelLoadError(
                f"the worker process of {self.name!r} could not load it: {type(error).__name__}: {error}",
                model=self.name,
            ) from error
        old, self.process, self._conn = self._conn, proc, parent
        if old is not None:
            with self._call_lock:  # the dead process's pipe, once no batch can be reading it
                old.close()
        self.start_s = time.monotonic() - t0
        self.backoff.started()
        log.info("worker process of %s started (pid %d) in %.2fs", self.name, proc.pid, self.start_s)
        return msg[1]

    def _watch_once(self) -> bool:
        """One turn of the watcher: notice a death while idle, or restart after the backoff."""
        with self._cv:
            state, proc = self.state, self.process
        if state == CLOSED:
            return False
        if state == READY:
            mpc.wait([proc.sentinel], 0.5)
            if not proc.is_alive():
                self.died(proc, "the process ended")
            return True
        if state == CRASHED:
            with self._cv:
                wait = (self.restart_at or 0.0) - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    return True
            self._restart()
        return True

    def _restart(self) -> None:
        try:
            description = self._spawn()
        except BaseException as exc:
            delay = self.backoff.failed()
            with self._cv:
                self.restart_at = time.monotonic() + delay
            # A worker that cannot start is down: /readyz names it until a start succeeds.
            self.supervisor.report(f"worker/{self.name}", exc)
            return
        with self._cv:
            if self.state == CLOSED:
                _kill(self.process)
                return
            self.description = description
            self.state, self.down_since, self.restart_at = READY, None, None
            self.restarts += 1
            self._cv.notify_all()
        self.supervisor.ok(f"worker/{self.name}")

    def died(self, proc: Any, why: str) -> None:
        """Record the death of `proc` (once, whoever notices first) and schedule its restart."""
        with self._cv:
            if proc is not self.process or self.state != READY:
                return
            self.state = CRASHED
            self.crashes += 1
            now = time.monotonic()
            self.down_since = now
            delay = self.backoff.failed()
            self.restart_at = now + delay
            self._cv.notify_all()
        proc.join(0.5)
        log.warning(
            "worker process of %s (pid %s) died: %s (exit status %s); restarting in %.2fs",
            self.name,
            proc.pid,
            why,
            proc.exitcode,
            delay,
        )

    def eta_s(self) -> float:
        """Seconds until the worker should be serving again (0 when it is)."""
        with self._cv:
            if self.state == READY:
                return 0.0
            restart_at = self.restart_at or time.monotonic()
        return max(0.0, restart_at - time.monotonic()) + self.start_s

    def wait_ready(self, until: float) -> bool:
        """Wait (at most until `until`, time.monotonic) for the worker to serve; False when it did not."""
        with self._cv:
            while self.state != READY:
                remaining = until - time.monotonic()
                if remaining <= 0 or self.state == CLOSED:
                    return False
                self._cv.wait(remaining)
            return True

    def kill(self) -> None:
        """Kill the process now (after a fatal device error the parent saw; tests)."""
        proc = self.process
        if proc is not None:
            _kill(proc)
            self.died(proc, "killed by the server")

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self.state = CLOSED
            proc, conn = self.process, self._conn
            self._cv.notify_all()
        if proc is not None and proc.is_alive():
            with contextlib.suppress(OSError, ValueError):
                conn.send(("exit",))
            proc.join(timeout)
            _kill(proc)
        if conn is not None:
            conn.close()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)

    # batches --------------------------------------------------------------------------------------------------
    def call(
        self,
        task: str,
        items: list,
        params: dict[str, Any],
        control: RowControl | None,
        inject: bytes | None = None,
    ) -> tuple[list[Any], dict[str, float]]:
        """Run one batch in the child; (results, stage timings). Raises the batch's own error, or WorkerCrashed
        (chained from the device error when the child reported a fatal one) when the process dies under it."""
        with self._call_lock:
            with self._cv:
                if self.state != READY:
                    raise self.crashed_error()
                proc, conn = self.process, self._conn
                self._bid += 1
                bid = self._bid
            rows = len(items)
            streaming = bool(control is not None and control.streaming)
            try:
                conn.send(("run", bid, task, items, params, streaming, inject))
            except (OSError, ValueError) as exc:
                self.died(proc, "the pipe broke")
                raise self.crashed_error() from exc
            stopped: set[int] = set()
            checked = time.monotonic()
            while True:
                ready = mpc.wait([conn, proc.sentinel], _POLL_S if control is not None else None)
                message = conn in ready or (ready and conn.poll())
                if message:
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError) as exc:
                        self.died(proc, "the pipe closed")
                        raise self.crashed_error() from exc
                    kind = msg[0]
                    if kind == "done":
                        return msg[2], msg[3]
                    if kind == "error":
                        raise unpack_error(msg[2])
                    if kind == "fatal":
                        cause = unpack_error(msg[2])
                        proc.join(5.0)
                        self.died(proc, f"fatal device error ({type(cause).__name__})")
                        raise self.crashed_error() from cause
                    if control is not None and kind == "emit":
                        control.emit(msg[2], msg[3])
                    elif control is not None and kind == "generated":
                        control.generated(msg[2])
                elif ready:  # the sentinel alone: the process ended and nothing is left to read
                    self.died(proc, "the process ended")
                    raise self.crashed_error()
                # Stops go out every _POLL_S, also while messages keep coming: a generating child sends one per
                # step, and a check made only when the pipe is quiet never ran while it generated.
                if control is not None and (not message or time.monotonic() - checked >= _POLL_S):
                    checked = time.monotonic()
                    for row in range(rows):
                        if row not in stopped and (why := control.stop_reason(row)) is not None:
                            stopped.add(row)
                            with contextlib.suppress(OSError, ValueError):  # a death shows on the sentinel
                                conn.send(("stop", bid, row, why))

    def crashed_error(self) -> WorkerCrashed:
        eta = self.eta_s()
        return WorkerCrashed(
            f"the worker process of model {self.name!r} crashed; it is restarting (retry in about {eta:.0f}s)",
            model=self.name,
            retry_after=max(1.0, eta),
        )

    def view(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "worker_state": self.state,
        }


def _kill(proc: Any) -> None:
    if proc is not None and proc.is_alive():
        proc.kill()
        proc.join(5.0)
