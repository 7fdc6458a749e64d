"""What the scheduler reports to. The real implementation is `observability.observer.Observer`."""

from __future__ import annotations

from typing import Protocol


class SchedulerObserver(Protocol):
    def request_done(
        self,
        model: str,
        task: str,
        revision: str | None,
        outcome: str,
        latency_s: float,
        items: int,
        tokens: int,
        error_type: str | None = None,
    ) -> None: ...

    def batch_done(
        self,
        model: str,
        task: str,
        size: int,
        tokens: int,
        queue_s: float,
        preprocess_s: float,
        forward_s: float,
        postprocess_s: float,
        peak_bytes: int | None = None,
    ) -> None: ...

    def in_flight(self, model: str, delta: int) -> None: ...

    def queue_depth(self, model: str, depth: int) -> None: ...


class NullObserver:
    """Used when metrics are off: every hook is a no-op."""

    def request_done(self, *a: object, **k: object) -> None:
        pass

    def batch_done(self, *a: object, **k: object) -> None:
        pass

    def in_flight(self, *a: object, **k: object) -> None:
        pass

    def queue_depth(self, *a: object, **k: object) -> None:
        pass

    def model_loaded(self, *a: object, **k: object) -> None:
        pass

    def model_unloaded(self, *a: object, **k: object) -> None:
        pass
