"""`BatchRows`: the `types.RowControl` of one generation batch, answered row by row by each slot's request."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hf_provider.scheduling.queue import Slot


class BatchRows:
    """The `RowControl` of one generation batch: rows are slots, each answered by its request."""

    def __init__(self, slots: list[Slot], clock: Callable[[], float], count: Callable[[int], None]) -> None:
        self.slots = slots
        self.clock = clock
        self.count = count
        self.streaming = any(s.request.streaming for s in slots)

    def emit(self, row: int, delta: str) -> None:
        self.slots[row].request.emit(delta, self.clock())

    def stop_reason(self, row: int) -> str | None:
        return self.slots[row].request.stop_reason(self.clock())

    def generated(self, rows: Sequence[int]) -> None:
        """One token each for these rows: counted for their requests (what their outcome reports) and live."""
        for row in rows:
            self.slots[row].request.generated += 1
        self.count(len(rows))
