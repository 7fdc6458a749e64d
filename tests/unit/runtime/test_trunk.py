"""Tasks on one encoder trunk share a batch (runtime/tasks/trunk.py, scheduling/mixed.py): a mixed batch runs the
base model once and answers every request as its own single-task batch would; `batching.cross_task = false`, an
exported backend or a head that does not reproduce the module's logits keep tasks apart; a head that raises fails
its own rows only.

Real tiny BERTs through the real loader and a real ModelScheduler; the clock is fake and never moves, so the
collector forms a batch only once `max_batch_size` items are queued: every request submitted lands in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from tests.unit.runtime.conftest import run_stages

from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import build_handler
from hf_provider.runtime.tasks.trunk import head_of, trunk_of
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.mixed import TRUNK
from hf_provider.scheduling.observer import NullObserver
from hf_provider.scheduling.worker import StageRunner

WAIT = 30.0  # generous bound on waiting for the stage threads; never a sleep

EMB_INPUTS = (["the cat sat on the mat", "hello"], "a much longer sentence about the harbour and its boats")
HEADS = {  # model -> (task, two requests' inputs, their parameters)
    "bert-mlm": (
        "fill-mask",
        ("the [MASK] sat on the mat", ["paris is the [MASK] of france"]),
        ({}, {"top_k": 3}),
    ),
    "bert-ner": (
        "token-classification",
        ("alice lives in paris", ["bob met carol"]),
        ({}, {"ignore_labels": []}),
    ),
    "bert-cls": ("text-classification", ("a fine day", ["a terrible day", "meh"]), ({}, {"top_k": 2})),
}


class Batches(NullObserver):
    """Records each batch's task label and size."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int]] = []

    def batch_done(self, model: str, task: str, size: int, *a: Any, **k: Any) -> None:
        self.done.append((task, size))


class Clock:
    def __call__(self) -> float:
        return 1000.0


def _model(loaded: Callable[..., LoadedModel], name: str, tasks: list[str], **batching: Any) -> LoadedModel:
    model = loaded(name, batching={"max_wait_ms": 1000, **batching})
    model.trunk = None  # a copy of the cached model: its own trunk, counted from zero
    for task in tasks:
        model.handlers[task] = build_handler(task, model)
    return model


@contextmanager
def _scheduler(model: LoadedModel) -> Iterator[tuple[ModelScheduler, Batches]]:
    obs = Batches()
    sched = ModelScheduler(
        model, observer=obs, runner=StageRunner(model, measure_memory=False), clock=Clock()
    )
    try:
        yield sched, obs
    finally:
        sched.close(timeout=WAIT)


@contextmanager
def _count_base_calls(model: LoadedModel) -> Iterator[list[int]]:
    """Counts real forward passes of the base model (a hook on the module: not our own counter)."""
    calls = [0]
    hook = model.module.base_model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def _submit(sched: ModelScheduler, model: LoadedModel, task: str, inputs: Any, params: dict[str, Any]) -> Any:
    handler = model.handlers[task]
    items, resolved, single = handler.parse(inputs, params)
    return sched.submit(handler, items, resolved, single=single)


def _requests(name: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """Embeddings with two parameter sets and the model's head task with two: four groups in one batch."""
    task, inputs, params = HEADS[name]
    return [
        ("embeddings", EMB_INPUTS[0], {}),
        (task, inputs[0], params[0]),
        ("embeddings", EMB_INPUTS[1], {"dimensions": 16, "normalize": False}),
        (task, inputs[1], params[1]),
    ]


def _items(model: LoadedModel, reqs: list[tuple[str, Any, dict[str, Any]]]) -> int:
    return sum(len(model.handlers[t].parse(x, p)[0]) for t, x, p in reqs)


def _same(got: Any, want: Any) -> None:
    """Equal up to float noise: vectors within 1e-5, scores within 1e-5, tokens, labels and text exactly."""
    if isinstance(want, np.ndarray):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-5)
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            _same(got[k], want[k])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    else:
        assert got == want


# -- equal outputs, one trunk pass ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(HEADS))
def test_mixed_batch_runs_the_trunk_once_and_answers_as_single_task_batches(loaded, name) -> None:
    task = HEADS[name][0]
    model = _model(loaded, name, ["embeddings", task])
    reqs = _requests(name)
    # each request alone, as its own single-task batch (the handler's own forward, not the trunk path)
    want = [run_stages(model.handlers[t], x, p) for t, x, p in reqs]
    head_of(model)  # its one-off check runs a probe through the module: before counting
    n = _items(model, reqs)
    with _count_base_calls(model) as calls, _scheduler(model) as (sched, obs):
        sched.pending.queue.max_batch_size = n
        futures = [_submit(sched, model, t, x, p) for t, x, p in reqs]
        got = [f.result(WAIT) for f in futures]
    assert obs.done == [(f"embeddings+{task}", n)]  # one batch of every item, labelled by its tasks
    assert calls[0] == 1 and trunk_of(model).runs == 1
    for g, w in zip(got, want, strict=True):
        _same(g, w)


def test_sentence_transformers_embeddings_of_different_parameters_share_one_pass(loaded) -> None:
    """MiniLM (a sentence-transformers checkpoint padded from our ids): its own modules after the trunk give what
    its own forward gives, for requests whose `dimensions` and `normalize` differ."""
    model = _model(loaded, "minilm", ["embeddings"])
    emb = model.handlers["embeddings"]
    assert emb.st_features_from_ids
    reqs = [(["the cat sat", "hello there"], {}), ("a dog", {"dimensions": 64, "normalize": False})]
    want = [run_stages(emb, x, p) for x, p in reqs]
    with _count_base_calls(model) as calls, _scheduler(model) as (sched, obs):
        sched.pending.queue.max_batch_size = 3
        got = [f.result(WAIT) for f in [_submit(sched, model, "embeddings", x, p) for x, p in reqs]]
    assert obs.done == [("embeddings", 3)] and calls[0] == 1
    for g, w in zip(got, want, strict=True):
        _same(g, w)


def test_fill_mask_rows_keep_their_tokens_in_a_mixed_batch(loaded) -> None:
    """The head's tokens and scores are the single-task batch's: the mask row is found in the mixed batch's wider
    padding and its top tokens are ranked the same."""
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    text = "the [MASK] sat"
    alone = run_stages(model.handlers["fill-mask"], text, {"top_k": 5})
    with _scheduler(model) as (sched, _):
        sched.pending.queue.max_batch_size = 2
        emb = _submit(
            sched, model, "embeddings", "a far longer input than the masked one, to widen the padding", {}
        )
        fm = _submit(sched, model, "fill-mask", text, {"top_k": 5})
        got = fm.result(WAIT)
        assert emb.result(WAIT).shape == (32,)
    assert [c["token"] for c in got] == [c["token"] for c in alone]
    assert [c["sequence"] for c in got] == [c["sequence"] for c in alone]
    np.testing.assert_allclose([c["score"] for c in got], [c["score"] for c in alone], atol=1e-5, rtol=0)


# -- what keeps tasks apart ----------------------------------------------------------------------------------------
def test_cross_task_false_keeps_one_task_per_batch(loaded) -> None:
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"], cross_task=False, max_batch_size=2)
    with _count_base_calls(model) as calls, _scheduler(model) as (sched, obs):
        futures = [
            _submit(sched, model, "embeddings", "one", {}),
            _submit(sched, model, "fill-mask", "the [MASK] one", {}),
            _submit(sched, model, "embeddings", "two", {}),
            _submit(sched, model, "fill-mask", "the [MASK] two", {}),
        ]
        for f in futures:
            f.result(WAIT)
    assert sorted(obs.done) == [("embeddings", 2), ("fill-mask", 2)]
    assert trunk_of(model).runs == 0
    assert calls[0] == 2  # each task's own forward: its own pass of the base model


def test_keys_say_what_shares_a_batch(loaded) -> None:
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    emb, fm = model.handlers["embeddings"], model.handlers["fill-mask"]
    with _scheduler(model) as (sched, _):
        sched.pending.queue.max_batch_size = 64  # nothing runs: the requests stay queued with their keys
        keys = [
            _submit(sched, model, "embeddings", "x", {}).key,
            _submit(sched, model, "embeddings", "x", {"dimensions": 8}).key,
            _submit(sched, model, "fill-mask", "[MASK] x", {"top_k": 2}).key,
        ]
        assert len(set(keys)) == 1 and keys[0][0] == TRUNK
        sched.abandon("test over")
    # an exported graph is not the base model's computation: each task keeps batches of its own
    model.backend = object()
    try:
        assert emb.trunk_key({}) is None and fm.trunk_key({}) is None
    finally:
        model.backend = None
    # a worker process is sent one task's call per batch: keys stay per task there
    isolated = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    isolated.spec = isolated.spec.model_copy(update={"isolation": "process"})
    with _scheduler(isolated) as (sched, _):
        sched.pending.queue.max_batch_size = 64
        req = _submit(sched, isolated, "embeddings", "x", {})
        assert req.key[0] == "embeddings"
        sched.abandon("test over")


def test_a_head_that_does_not_reproduce_the_module_gets_no_trunk(loaded) -> None:
    """Dropout left on (train mode) makes the head's output differ from the module's: the check refuses it and
    fill-mask keeps batches of its own, while embeddings (pooling: no check needed) still keys on the trunk."""
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    model.module.train()
    try:
        assert head_of(model) is None
    finally:
        model.module.eval()
    assert model.handlers["fill-mask"].trunk_key({}) is None
    assert model.handlers["embeddings"].trunk_key({}) is not None
    assert head_of(loaded("bert-qa")) is None  # start/end logits: no `logits` to split off


# -- failures ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["head", "postprocess"])
def test_a_head_that_raises_fails_its_rows_and_the_other_task_answers(loaded, monkeypatch, stage) -> None:
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    fm = model.handlers["fill-mask"]

    def boom(*a: Any, **k: Any) -> Any:
        raise ValueError(f"broken {stage}")

    monkeypatch.setattr(fm, stage, boom)
    want = run_stages(model.handlers["embeddings"], "the cat", {})
    with _scheduler(model) as (sched, _):
        sched.pending.queue.max_batch_size = 3
        broken = _submit(sched, model, "fill-mask", ["the [MASK] sat", "a [MASK]"], {})
        ok = _submit(sched, model, "embeddings", "the cat", {})
        with pytest.raises(ValueError, match=f"broken {stage}"):
            broken.result(WAIT)
        np.testing.assert_allclose(ok.result(WAIT), want, atol=1e-5, rtol=0)
    assert trunk_of(model).runs == 1
    assert broken.outcome == "error" and ok.outcome == "ok"


def test_a_trunk_that_raises_fails_the_whole_batch(loaded) -> None:
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    head_of(model)

    def boom(*a: Any) -> None:
        raise RuntimeError("trunk broke")

    hook = model.module.base_model.register_forward_pre_hook(boom)
    try:
        with _scheduler(model) as (sched, _):
            sched.pending.queue.max_batch_size = 2
            a = _submit(sched, model, "fill-mask", "the [MASK] sat", {})
            b = _submit(sched, model, "embeddings", "the cat", {})
            for f in (a, b):
                with pytest.raises(RuntimeError, match="trunk broke"):
                    f.result(WAIT)
    finally:
        hook.remove()


def test_out_of_memory_in_a_head_goes_to_the_batch_recovery(loaded, monkeypatch) -> None:
    """An out-of-memory error is the batch's concern: recovery splits it and every request is answered."""
    model = _model(loaded, "bert-mlm", ["embeddings", "fill-mask"])
    fm = model.handlers["fill-mask"]
    real, failed = fm.head, []

    def once(*a: Any) -> Any:
        if not failed:
            failed.append(1)
            raise MemoryError("out of memory in the head")
        return real(*a)

    monkeypatch.setattr(fm, "head", once)
    with _scheduler(model) as (sched, _):
        sched.pending.queue.max_batch_size = 3
        futures = [
            _submit(sched, model, "fill-mask", "the [MASK] sat", {}),
            _submit(sched, model, "embeddings", ["the cat", "a dog"], {}),
        ]
        results = [f.result(WAIT) for f in futures]
        assert sched.runner.oom_recoveries == 1
    assert len(results[0]) == 5 and len(results[1]) == 2
