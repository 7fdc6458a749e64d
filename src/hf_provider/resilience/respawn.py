"""`hfp serve` under a small supervisor: the server runs in a child process, and a child that dies (a segfault, a
fatal CUDA error, the OOM killer's SIGKILL) is started again with backoff, without anyone acting.

Hand-written rather than supervisord/systemd: those are the operator's choice around us, while this one must come
with `hfp serve` on any machine, know which exits are worth a restart (a config error, exit 2, is not: it would
fail the same way forever) and tell the new server how many restarts came before (HFP_RESTARTS, shown by /healthz).
The restart policy is resilience/backoff.py's (pure, injected clock) so tests need no sleeps.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from hf_provider.resilience.backoff import Backoff

log = logging.getLogger(__name__)

#: Environment variables the supervisor hands to each server it starts (read by /healthz).
RESTARTS_ENV = "HFP_RESTARTS"
LAST_EXIT_ENV = "HFP_LAST_EXIT"

#: Exit codes that a restart cannot fix: 2 is a usage or configuration error (bad config, port in use).
FINAL_CODES = frozenset({0, 2})


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Respawner:
    """Runs `argv` as a child until it exits for good; forwards SIGINT/SIGTERM/SIGHUP to it and then stops."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[..., subprocess.Popen] = subprocess.Popen,
    ) -> None:
        self.argv = list(argv)
        # 0.5 s, doubling up to 30 s while children die young; 0.5 s again once one has lived a minute
        self.backoff = backoff or Backoff(first=0.5, cap=30.0, reset_s=60.0)
        self.clock = clock
        self.spawn = spawn
        self.restarts = 0
        self.child: subprocess.Popen | None = None
        self._stopping = threading.Event()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop for good: the child gets `signum` (it shuts down gracefully) and is not started again."""
        self._stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self, last_exit: str = "") -> int:
        while True:
            env = {**os.environ, RESTARTS_ENV: str(self.restarts), LAST_EXIT_ENV: last_exit}
            started = self.clock()
            # Its own process group: a terminal's Ctrl-C reaches only this process, which forwards it once
            # (uvicorn takes a second SIGINT as "quit now, skip the graceful shutdown").
            self.child = self.spawn(self.argv, env=env, process_group=0)
            code = self.child.wait()
            if self._stopping.is_set() or code in FINAL_CODES:
                return code if code >= 0 else 128 - code
            last_exit = describe_exit(code)
            wait = self.backoff.failed(ran_s=self.clock() - started)  # lived: measured on our clock
            self.restarts += 1
            log.error("the server died (%s); restart %d in %.1fs", last_exit, self.restarts, wait)
            if self._stopping.wait(wait):
                return 128 - code if code < 0 else code


def supervise(argv: Sequence[str]) -> int:
    """Run the server command `argv` under a Respawner in this (parent) process, with signals forwarded."""
    respawner = Respawner(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: respawner.stop(signum))
    return respawner.run()


def restarts() -> dict[str, int | str | None]:
    """What /healthz reports: how many times the supervisor restarted this server, and why the last one ended."""
    raw = os.environ.get(RESTARTS_ENV)
    return {
        "supervised": raw is not None,
        "restarts": int(raw) if raw and raw.isdigit() else 0,
        "last_exit": os.environ.get(LAST_EXIT_ENV) or None,
    }


def server_argv(args: Sequence[str]) -> list[str]:
    """The child's command: this CLI's `serve` with the same arguments, supervision off."""
    return [sys.executable, "-m", "hf_provider.cli.main", "serve", *args, "--no-supervise"]
