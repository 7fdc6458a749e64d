"""TESTING ONLY: the one fault injector, with two kinds of fault.

Rules raise a chosen exception in a chosen phase of a chosen model at a chosen rate: configured by `[faults]`
(settings.FaultSettings) and changed at run time through POST /v1/admin/faults, which exists only when the section
is set. Checked by `check(model, phase)` at the start of each phase: `parse` (Provider, before the handler
parses), `load` (ModelManager, before the weights load), `preprocess` / `forward` / `postprocess`
(StageRunner). With no message configured, each raised error carries a fresh request id, address, path, port
and count, as real messages do, so tests can check that reports of one cause still form one group.

Batch sizes (`memory.fault_inject_oom`, the ModelManager's own injector) make `check_batch(n)` raise the device's
genuine allocator out-of-memory error when a forward runs n items, so memory/oom.py's split / evict / CPU
recovery meets the error torch really raises. It lives here, not beside that recovery: memory/ never calls it
(the StageRunner does), and every caller (models/, scheduling/, isolation/, provider/) sits above resilience/.
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
    """Thread-safe rules; `check(model, phase)` raises when a rule matches and its rate's draw says so.
    `check_batch(n)` raises a real out-of-memory error on `device` when n is one of `batch_sizes`."""

    def __init__(
        self,
        rules: Iterable[FaultRule] = (),
        seed: int | None = None,
        *,
        batch_sizes: Iterable[int] = (),
        device: str = "cpu",
    ) -> None:
        self.batch_sizes = frozenset(int(b) for b in batch_sizes)
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError("fault injection batch sizes must be positive integers")
        self.device = device
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []
        self.injected = 0
        self.set(rules)

    @classmethod
    def from_settings(cls, settings: FaultSettings | None) -> FaultInjector | None:
        return None if settings is None else cls(settings.rules, settings.seed)

    @classmethod
    def parse(cls, value: str, device: str = "cpu") -> FaultInjector:
        """Out-of-memory sizes only: "8,16" -> {8, 16}; "4-8" ranges are inclusive; "" injects nothing."""
        sizes: set[int] = set()
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    sizes.update(range(lo, hi + 1))
                else:
                    sizes.add(int(part))
            except ValueError:
                raise ValueError(
                    f"invalid fault injection batch sizes {value!r}: use integers such as '8,16' "
                    "or ranges such as '4-64'"
                ) from None
        return cls(batch_sizes=sizes, device=device)

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

    def check_batch(self, batch_size: int) -> None:
        """Raise the device's real out-of-memory error when `batch_size` is one of the chosen sizes: an impossible
        allocation, so it is exactly what torch raises (RuntimeError "can't allocate memory" on CPU,
        torch.OutOfMemoryError on CUDA)."""
        if batch_size in self.batch_sizes:
            import torch  # here: resilience/ stays importable without torch

            torch.empty(1 << 62, dtype=torch.uint8, device=self.device)

    def __repr__(self) -> str:
        sizes = sorted(self.batch_sizes)
        return f"FaultInjector({len(self.rules())} rules, batch_sizes={sizes}, device={self.device!r})"
