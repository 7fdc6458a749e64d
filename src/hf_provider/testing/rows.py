"""`SinkRows`: a `types.RowControl` over plain per-row callables, for driving a handler's forward pass directly
(tests, benchmarks) without a scheduler or requests behind the rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class SinkRows:
    streaming = True

    def __init__(self, sinks: list[Callable[[str | None], None]], stop: dict[int, str] | None = None) -> None:
        self.sinks = sinks
        self.stop = dict(stop or {})  # row -> reason; rows can be stopped while a generation runs
        self.tokens = 0

    def emit(self, row: int, delta: str) -> None:
        self.sinks[row](delta)

    def stop_reason(self, row: int) -> str | None:
        return self.stop.get(row)

    def generated(self, rows: Sequence[int]) -> None:
        self.tokens += len(rows)

    def close(self) -> None:
        """End every row's stream, as a request's settlement would."""
        for sink in self.sinks:
            sink(None)


class RecordingRow:
    """A `types.GenRow` that keeps its answer: for driving a continuous engine directly (tests, the load-time
    checks). `stop` set to a reason ends the row at the next step, as a cancelled request would."""

    streaming = False

    def __init__(self) -> None:
        self.result: object = None
        self.stop: str | None = None
        self.tokens = 0

    def emit(self, delta: str) -> None:
        return None

    def stop_reason(self) -> str | None:
        return self.stop

    def generated(self) -> None:
        self.tokens += 1

    def finish(self, result: object) -> None:
        self.result = result

    def fail(self, error: BaseException) -> None:
        raise error
