"""Types every layer shares: task names, priorities, request outcomes, the task handler contract.

A leaf module (standard library only), so `runtime` and `scheduling` both depend on it and never on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

TASKS: tuple[str, ...] = (
    "embeddings",
    "text-classification",
    "token-classification",
    "fill-mask",
    "text-generation",
    "text2text-generation",
    "translation",
    "summarization",
    "question-answering",
    "rerank",
    "score",
    "zero-shot-classification",
    "image-classification",
    "zero-shot-image-classification",
    "automatic-speech-recognition",
)

#: Tasks whose inputs are images (the CLI reads a file argument's bytes for them).
IMAGE_TASKS: frozenset[str] = frozenset({"image-classification", "zero-shot-image-classification"})

#: Request priority classes, most urgent first; the value is the queue class index.
PRIORITIES: dict[str, int] = {"interactive": 0, "batch": 1}

#: How a request ended. `client_error` is a 4xx answered before the request reached a scheduler.
OUTCOMES: tuple[str, ...] = ("ok", "client_error", "error", "rejected", "cancelled", "timed_out")

#: Names that steer the provider itself; a request's model parameters may never carry them.
RESERVED_PARAMS: frozenset[str] = frozenset(
    {"sink", "timeout", "deadline", "priority", "stream", "callback", "model", "task", "inputs", "request_id"}
)

# A per-item sink for streamed text deltas (text-generation); None at the end of the stream.
DeltaSink = Callable[[str | None], None]


@dataclass(slots=True)
class Item:
    """One input of a request, validated and tokenized. `n_tokens` is its cost for batching and sorting."""

    data: Any
    n_tokens: int
    # Of n_tokens, the tokens a generation may add (max_new_tokens): a budget, not work done. n_tokens minus
    # this is the item's input; what was generated is counted as it happens (RowControl.generated).
    new_tokens: int = 0


@dataclass(frozen=True, slots=True)
class RowFailed:
    """A batch's result for a row that failed alone (a task's head in a mixed batch, runtime/tasks/trunk.py): its
    request fails with `error` while the batch's other rows are answered."""

    error: BaseException


#: Outcomes that are failures of the server's making (the headline error rate); `client_error` is shown beside
#: them, `cancelled` is the caller leaving.
SERVER_FAILURES: frozenset[str] = frozenset({"error", "rejected", "timed_out"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended: the one record handed to the one recorder (observability/outcomes.py), for every
    end a request can have, and for refusals before any Request object existed (bad JSON, unknown model, load
    shedding at the door). Metrics, history, error reports, breakers, canary statistics, keep-alive and tracing
    all listen to these records and keep no bookkeeping of their own."""

    model: (
        str  # the model it is filed under: the one that served or refused it, else the name the client sent
    )
    task: str  # a task name, or "-"
    outcome: str  # one of OUTCOMES
    latency_s: float = 0.0  # submission to settlement; 0 for a refusal answered at once
    items: int = 0
    tokens: int = 0  # tokens actually processed: input tokens plus those generated before it ended
    revision: str | None = None  # the commit that computed (or refused) it
    error: BaseException | None = None
    phase: str | None = None  # where it failed (reporting.reports.PHASES); None: the error's own tag decides
    served_by: str | None = None  # the model that computed the answer; None when none did
    fallback_reason: str | None = None  # set when `served_by` is a fallback of the model the client named
    request_id: str | None = None  # the HTTP request's id
    device: str | None = None
    dtype: str | None = None
    input_shape: tuple[int, int] | None = None  # (items, longest item in tokens)
    inputs: Any = None  # the raw inputs, for the report's redacted digest (never stored as they are)
    request: Any = None  # the settled scheduling.request.Request (None for a refusal): its trace and ticket


OutcomeListener = Callable[[Outcome], None]


class RowControl(Protocol):
    """What a forward pass may ask about the rows of its batch, row by row (index in batch order).

    A generating handler streams through `emit`, asks `stop_reason` once per step so a row whose request was
    cancelled or timed out stops at the next token while the rest of the batch goes on, and reports generated
    tokens with `generated` (the rows that made a token this step: the live token counter, per request)."""

    @property
    def streaming(self) -> bool: ...

    def emit(self, row: int, delta: str) -> None: ...

    def stop_reason(self, row: int) -> str | None: ...

    def generated(self, rows: Sequence[int]) -> None: ...


class GenRow(Protocol):
    """One row of a continuous generation batch (runtime/continuous), answered by its request: it streams
    through `emit`, is asked `stop_reason` before every step (a cancelled or timed-out row leaves at once), and
    ends with exactly one of `finish` (its result) or `fail`; `generated` counts each token made for it."""

    @property
    def streaming(self) -> bool: ...

    def emit(self, delta: str) -> None: ...

    def stop_reason(self) -> str | None: ...

    def generated(self) -> None: ...

    def finish(self, result: Any) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class GenerationEngine(Protocol):
    """Iteration-level generation for one loaded model (runtime/continuous/engine.py), driven by the scheduler's
    thread (scheduling/continuous.py): rows are added, then each `step` runs one token of every running row."""

    @property
    def free_slots(self) -> int: ...

    @property
    def busy(self) -> bool: ...

    def accepts(self, handler: TaskHandler) -> bool: ...

    def add_item(self, handler: TaskHandler, item: Item, params: Mapping[str, Any], row: GenRow) -> Any: ...

    def step(self, count: Callable[[int], None] | None = None) -> int: ...

    def abort(self, error: BaseException) -> None: ...


@runtime_checkable
class TaskHandler(Protocol):
    """parse (per request) / preprocess (CPU) / forward (device) / postprocess (CPU) for one task of one model.

    A handler whose answer is assembled from all of a request's item results (a ranking, labels grouped per
    input) also defines `assemble(results, params, single) -> answer`, which the Request calls once at settlement
    (runtime/tasks/rerank.py, zeroshot.py); without it the answer is the results (the first when single)."""

    task: ClassVar[str]
    streaming: ClassVar[bool]
    generative: ClassVar[bool]  # generation-like: batches follow bursts of arrivals, rows can stop early

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]: ...

    def batch_key(self, params: Mapping[str, Any]) -> Hashable: ...

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any: ...

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any: ...

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]: ...
