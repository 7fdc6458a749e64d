"""What the scheduler and model manager report to, batch by batch (a request's end goes to the outcome recorder,
observability/outcomes.py, instead). The real implementation is `observability.observer.Observer`; in-flight
counts are not pushed but read from the scheduler at scrape time."""

from __future__ import annotations

from typing import Protocol


class SchedulerObserver(Protocol):
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

    def queue_depth(self, model: str, depth: int) -> None: ...

    def breaker_changed(self, model: str, old: str | None, new: str) -> None: ...

    def tokens_generated(self, model: str, task: str, tokens: int) -> None: ...

    def fallback_used(self, model: str, fallback: str, reason: str) -> None: ...

    def model_loaded(self, model: str, revision: str | None, seconds: float, weight_bytes: int) -> None: ...

    def model_unloaded(self, model: str, reason: str) -> None: ...


class NullObserver:
    """Used when metrics are off: every hook is a no-op."""

    def batch_done(self, *a: object, **k: object) -> None:
        pass

    def queue_depth(self, *a: object, **k: object) -> None:
        pass

    def breaker_changed(self, *a: object, **k: object) -> None:
        pass

    def tokens_generated(self, *a: object, **k: object) -> None:
        pass

    def fallback_used(self, *a: object, **k: object) -> None:
        pass

    def model_loaded(self, *a: object, **k: object) -> None:
        pass

    def model_unloaded(self, *a: object, **k: object) -> None:
        pass
