"""What may share a batch (the key a request is queued under) and the batch a set of slots makes.

Requests share a batch when their keys are equal (queue.py forms batches of one key). The key is the task (or its
handler's batch group: the seq2seq tasks) and the handler's `batch_key` (the parameters a whole batch reads), or,
with the model's `batching.cross_task` and a handler whose forward runs as trunk + head (runtime/tasks/trunk.py),
its trunk key: then embeddings and fill-mask on one BERT, or embeddings with different `dimensions`, share one trunk
pass. Such a batch of more than one (handler, parameters) group runs through the handler the first one's
`share_trunk` makes; a batch of one group is the plain batch of that handler and parameters, as it always was.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from hf_provider.scheduling.queue import Batch, Slot
from hf_provider.types import TaskHandler

#: The first part of a trunk key, where a task's name stands in the others (no task is called this). A plain
#: tuple: the queue compares keys for every queued item when it forms a batch, and tuples compare in C.
TRUNK = "trunk"


def trunk_batch_key(handler: TaskHandler, params: Mapping[str, Any], enabled: bool) -> Hashable | None:
    """The key a request of `handler` with `params` is queued under when it runs on a shared trunk; None: the
    scheduler keys it by task (or batch group) and parameters."""
    if not enabled:
        return None
    trunk = getattr(handler, "trunk_key", None)  # handlers outside BaseHandler (tests' fakes) have none
    shared = trunk(params) if trunk is not None else None
    return None if shared is None else (TRUNK, shared)


def batch_of(slots: list[Slot], formed_at: float) -> Batch:
    """The batch of `slots` (taken under one key, in batch order): one handler and its parameters, or a mixed
    batch whose handler runs every group on one trunk."""
    first = slots[0].request
    key = first.key
    if not (type(key) is tuple and len(key) == 2 and key[0] == TRUNK):  # one task and its parameters
        return Batch(slots=slots, handler=first.handler, params=first.params, formed_at=formed_at)
    groups: list[tuple[Any, dict[str, Any], list[int]]] = [(first.handler, first.params, [])]
    last = None
    for i, s in enumerate(slots):
        req = s.request
        if req is not last:  # a request's items are one group: compare once per request
            last = req
            for g, (h, p, _) in enumerate(groups):
                if req.handler is h and (req.params is p or req.params == p):
                    rows = groups[g][2]
                    break
            else:
                rows = []
                groups.append((req.handler, req.params, rows))
        rows.append(i)
    if len(groups) == 1:
        return Batch(slots=slots, handler=first.handler, params=first.params, formed_at=formed_at)
    return Batch(slots=slots, handler=first.handler.share_trunk(groups), params={}, formed_at=formed_at)
