"""TESTING ONLY: raise a chosen exception in a chosen phase of a chosen model at a chosen rate.

Configured by `[faults]` (settings.FaultSettings) and changed at run time through POST /v1/admin/faults, which
exists only when the section is set. Checked at the start of each phase: `parse` (Provider, before the handler
parses), `load` (ModelManager, before the weights load), `preprocess` / `forward` / `postprocess`
(StageRunner). With no message configured, each raised error carries a fresh request id, address, path, port
and count, as real messages do, so tests can check that reports of one cause still form one group.
(memory/oom.py's FaultInjector is the other test fault: a genuine allocator out-of-memory error by batch size.)
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable

from hf_provider import errors as E
from hf_provider.settings import FaultRule, FaultSettings


def _provider(cls: type[E.ProviderError]) -> Callable[[str], BaseException]:
    return lambda msg: cls(msg)


EXCEPTIONS: dict[str, Callable[[str], BaseException]] = {
    "RuntimeError": RuntimeError,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "IndexError": IndexError,
    "OSError": OSError,
    "MemoryError": MemoryError,
    "TimeoutError": TimeoutError,
    "ZeroDivisionError": ZeroDivisionError,
    "AssertionError": AssertionError,
    "InvalidInput": _provider(E.InvalidInput),
    "ModelLoadError": _provider(E.ModelLoadError),
    "Unavailable": _provider(E.Unavailable),
    "OutOfMemory": _provider(E.OutOfMemory),
    "DeadlineExceeded": _provider(E.DeadlineExceeded),
}


class FaultInjector:
    """Thread-safe rules; `check(model, phase)` raises when a rule matches and its rate's draw says so."""

    def __init__(self, rules: Iterable[FaultRule] = (), seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []
        self.injected = 0
        self.set(rules)

    @classmethod
    def from_settings(cls, settings: FaultSettings | None) -> FaultInjector | None:
        return None if settings is None else cls(settings.rules, settings.seed)

    def set(self, rules: Iterable[FaultRule]) -> None:
        rules = list(rules)
        for r in rules:
            if r.exception not in EXCEPTIONS:
                raise ValueError(
                    f"fault exception {r.exception!r} is not one of {', '.join(sorted(EXCEPTIONS))}"
                )
        with self._lock:
            self._rules = rules

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def check(self, model: str, phase: str) -> None:
        with self._lock:
            if not self._rules:
                return
            rule = next(
                (
                    r
                    for r in self._rules
                    if r.phase == phase and r.model in ("*", model) and self._random.random() < r.rate
                ),
                None,
            )
            if rule is None:
                return
            self.injected += 1
            n = self.injected
            port = self._random.randint(1024, 65535)
            hexa = self._random.getrandbits(48)
        message = rule.message or (
            f"injected {rule.exception} in {phase} of {model}: request {uuid.uuid4()} at 0x{hexa:x} "
            f"reading /tmp/hfp-fault-{n}/shard-{n % 7}.bin via 127.0.0.1:{port} (attempt {n})"
        )
        raise EXCEPTIONS[rule.exception](message)
