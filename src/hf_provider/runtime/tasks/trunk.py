"""One encoder trunk, several heads: a mixed batch of encoder tasks on one weight set runs the trunk once.

The encoder handlers' forward passes all begin with the same computation on the same padded ids: the model's base
model (`module.base_model`: BertModel inside BertForMaskedLM). Embeddings pool its last hidden state; fill-mask,
token- and text-classification put the checkpoint's own head on it. A handler that can run as trunk + head says so
with a trunk key (`BaseHandler.trunk_key`); the scheduler batches requests with equal keys together, whatever their
task and parameters, and runs such a batch through `SharedTrunk`: one padded batch, one trunk pass, then each
(handler, parameters) group's head and postprocess on its own rows.

A handler's forward is split only where the split computes what its own forward computes: embeddings pool the base
model's output exactly as `Embeddings._forward` does; a full module's head (the children besides the base model,
in order) is checked once per model against the module's own forward on a probe (`Trunk.head`), and a module whose
head does not reproduce its logits (DistilBERT's head applies its children in another order than it registers them)
keeps its requests in batches of their own task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from hf_provider.memory.estimate import LM_TASKS
from hf_provider.memory.oom import is_oom
from hf_provider.reporting.reports import classify, tag
from hf_provider.runtime.model import LoadedModel
from hf_provider.types import Item, RowControl, RowFailed

if TYPE_CHECKING:
    import torch

    from hf_provider.runtime.tasks.base import BaseHandler

log = logging.getLogger(__name__)

#: The trunk key of every handler that runs the model's base model on padded encoder ids (one model per scheduler,
#: so the key needs to name the computation only).
TRUNK_KEY = "encoder-trunk"
ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE = ("The city council announced a plan after months of debate.", "A short one.")
_lock = threading.Lock()


@dataclass(frozen=True)
class Head:
    """The checkpoint's head as a function of the base model's output: `modules` applied in order to `source`."""

    modules: tuple[Any, ...]
    source: str  # "last_hidden_state", or "pooler_output" (BERT's sequence classification)

    def __call__(self, trunk_out: Any) -> Any:
        x = getattr(trunk_out, self.source)
        for m in self.modules:
            x = m(x)
        return x


class Trunk:
    """One loaded model's encoder trunk: its base model's forward pass, counted (`runs`), and its full module's head
    once verified (`head_of`). Holds the module, never the LoadedModel (which holds it): no reference cycle keeps
    the weights after an unload."""

    def __init__(self, module: Any) -> None:
        self.module = module
        # trunk passes run for mixed batches (a single-task batch runs its handler's own forward)
        self.runs = 0
        self.head: Head | None = None
        self.checked = False

    def __call__(self, inputs: Mapping[str, Any]) -> Any:
        self.runs += 1
        return self.module.base_model(**{k: inputs[k] for k in ENCODER_KEYS if k in inputs})


def trunk_of(model: LoadedModel) -> Trunk:
    """The model's trunk, built once (LoadedModel.trunk)."""
    trunk = model.trunk
    if trunk is None:
        with _lock:
            if model.trunk is None:
                model.trunk = Trunk(model.module)
            trunk = model.trunk
    return trunk


def head_of(model: LoadedModel) -> Head | None:
    """The module's head when the base model plus it reproduce the module's own logits (checked once), else None."""
    trunk = trunk_of(model)
    if not trunk.checked:
        with _lock:
            if not trunk.checked:
                trunk.head = _find_head(model)
                trunk.checked = True
    return trunk.head


def _find_head(model: LoadedModel) -> Head | None:
    import torch

    module = model.module
    base = getattr(module, "base_model", None)
    if not isinstance(module, torch.nn.Module) or base is None or base is module:
        return None  # a bare encoder (BertModel): no head to split off
    rest = tuple(
        m for m in module.children() if m is not base and not isinstance(m, torch.nn.modules.loss._Loss)
    )
    if not rest:
        return None
    try:
        with model.tokenizer_lock:
            enc = model.tokenizer(
                list(_PROBE), padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
        probe = {k: v.to(model.device) for k, v in enc.items() if k in ENCODER_KEYS}
        with torch.inference_mode():
            want = module(**probe).logits.float()
            out = base(**probe)
            for source in ("last_hidden_state", "pooler_output"):
                if getattr(out, source, None) is None:
                    continue
                head = Head(rest, source)
                got = head(out).float()
                if got.shape == want.shape and _close(got, want):
                    return head
    except Exception as e:  # a module whose parts do not compose: its tasks keep batches of their own
        log.info("%s: no shared trunk (%s: %s)", model.name, type(e).__name__, e)
        return None
    log.info("%s: no shared trunk (its head does not reproduce the module's logits)", model.name)
    return None


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    # The same operators on the same inputs: equal up to float noise at any precision.
    return bool((got - want).abs().max() <= 1e-3 * (1.0 + float(want.abs().max())))


@dataclass
class _Group:
    handler: BaseHandler
    params: dict[str, Any]
    rows: list[int]  # positions in the batch, in slot order
    index: Any = None  # the rows as a device tensor, for index_select


class SharedTrunk:
    """The handler a mixed batch runs through (groups of rows of different handlers or parameters, one trunk).

    A head or a postprocess that raises fails its group's rows (`RowFailed`): the other groups are answered. An
    error of the trunk, or an out-of-memory or device error anywhere, fails the whole batch as any batch's would
    (the stage runner's recovery and fatal-error rules see it)."""

    streaming = False
    generative = False

    def __init__(self, groups: list[tuple[BaseHandler, dict[str, Any], list[int]]]) -> None:
        self.groups = [_Group(h, p, rows) for h, p, rows in groups]
        tasks = sorted({g.handler.task for g in self.groups})
        self.task = "+".join(tasks)  # the batch's label in metrics and logs (one label per set of tasks)
        # the working-memory estimate of the costliest task in it (a vocabulary's logits: memory/estimate.py)
        self.memory_task = next((t for t in tasks if t in LM_TASKS), tasks[0])
        self.trunk = trunk_of(self.groups[0].handler.model)

    def batch_key(self, params: Mapping[str, Any]) -> Any:
        raise TypeError("a mixed batch is formed by the scheduler, never keyed")

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        raise TypeError("a mixed batch is formed by the scheduler from parsed requests")

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        import torch

        inputs = self.groups[0].handler.pad([it.data for it in items], keys=ENCODER_KEYS)
        device = inputs["input_ids"].device
        parts = []
        for g in self.groups:
            g.index = torch.tensor(g.rows, dtype=torch.long, device=device)
            rows = {k: v.index_select(0, g.index) for k, v in inputs.items()}
            parts.append(g.handler.trunk_data(rows, [items[i].data for i in g.rows]))
        return inputs, parts, len(items)

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        inputs, parts, _ = batch
        out = self.trunk(inputs)
        heads: list[Any] = []
        for g, part in zip(self.groups, parts, strict=True):
            mine = SimpleNamespace(
                **{
                    k: v.index_select(0, g.index)
                    for k in ("last_hidden_state", "pooler_output")
                    if (v := getattr(out, k, None)) is not None
                }
            )
            heads.append(self._guarded(g, "forward", g.handler.head, part, mine))
        return heads

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        _, parts, n = batch
        results: list[Any] = [None] * n
        for g, part, out in zip(self.groups, parts, outputs, strict=True):
            if not isinstance(out, RowFailed):
                out = self._guarded(g, "postprocess", g.handler.postprocess, part, out, g.params)
            for k, row in enumerate(g.rows):
                results[row] = out if isinstance(out, RowFailed) else out[k]
        return results

    @staticmethod
    def _guarded(g: _Group, phase: str, run: Callable[..., Any], *args: Any) -> Any:
        try:
            return run(*args)
        except Exception as e:
            if is_oom(e) or classify(e) == "device_fatal":
                raise  # the whole batch's concern: recovery splits it, a fatal error marks the model failed
            tag(e, phase, len(g.rows))
            log.warning("%s rows of a mixed batch failed in %s: %s", g.handler.task, phase, type(e).__name__)
            return RowFailed(e)
