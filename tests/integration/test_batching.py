"""Dynamic batching through the real Provider (no HTTP): merging, ownership of results, ordering, priority,
failure isolation. Real models (MiniLM, tiny BERT classifier, tiny T5); the only injected fault is a real
torch error raised through the StageRunner's fault hook."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_provider.provider import Provider
from hf_provider.resilience.faults import FaultInjector
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

WORDS = [
    "harbour", "council", "plan", "river", "bridge", "market", "school", "garden", "winter", "summer",
    "train", "station", "museum", "library", "festival", "forest", "mountain", "island", "village",
    "painter", "doctor", "teacher", "farmer", "sailor",
]  # fmt: skip


def sentence(i: int) -> str:
    """Distinct sentences of varying length (so length-sorting really reorders items)."""
    n = 3 + (i * 7) % 13
    return f"Sentence {i}: " + " ".join(WORDS[(i + k * 5) % len(WORDS)] for k in range(n)) + "."


@pytest.fixture(scope="module")
def provider(
    tiny_models: dict[str, Path], minilm_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    specs = [
        ModelSpec(
            name="minilm",
            source=str(minilm_path),
            tasks=["embeddings"],
            device="cpu",
            batching={"max_batch_size": 32, "max_wait_ms": 5},
        ),
        ModelSpec(
            name="cls",
            source=str(tiny_models["bert-cls"]),
            tasks=["text-classification"],
            device="cpu",
            batching={"max_batch_size": 8},
        ),
        ModelSpec(
            name="t5",
            source=str(tiny_models["t5"]),
            tasks=["summarization", "translation"],
            device="cpu",
            # Static batches of one task each are what this file tests (tests/integration/
            # test_seq2seq_continuous.py covers the continuous engine and cross-task batches).
            batching={"max_batch_size": 16, "max_wait_ms": 5, "generation": "static", "cross_task": False},
        ),
    ]
    settings = load_settings(
        {
            "metrics_enabled": False,
            "history_enabled": False,
            "home": str(tmp_path_factory.mktemp("batching-home")),
        }
    )
    with Provider(specs, settings=settings) as p:
        for s in specs:
            p.load(s.name)
        yield p


def scheduler(p: Provider, name: str):
    s = p.manager.get(name).scheduler
    assert s is not None
    return s


def run_together(n: int, call) -> list:
    """n threads released at once by a barrier, each calling call(i); results by index."""
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_concurrent_embeddings_merge_and_each_caller_gets_its_own(provider: Provider) -> None:
    texts = [sentence(i) for i in range(48)]
    alone = [provider.run("minilm", "embeddings", t) for t in texts]
    sched = scheduler(provider, "minilm")
    sched.last_batch_sizes = []
    got = run_together(48, lambda i: provider.run("minilm", "embeddings", texts[i]))
    sizes = list(sched.last_batch_sizes)
    assert sum(sizes) == 48
    assert max(sizes) > 1, sizes
    for i, (a, g) in enumerate(zip(alone, got, strict=True)):
        np.testing.assert_allclose(np.array(g), np.array(a), atol=1e-4, err_msg=f"caller {i}")
    # and each result really belongs to its caller: the nearest single-run vector is its own
    sims = np.array(got) @ np.array(alone).T
    assert list(sims.argmax(axis=1)) == list(range(48))


def test_concurrent_classification_merge_and_match_sequential(provider: Provider) -> None:
    texts = [sentence(100 + i) for i in range(48)]
    alone = [provider.run("cls", "text-classification", t, {"top_k": 2}) for t in texts]
    sched = scheduler(provider, "cls")
    sched.last_batch_sizes = []
    got = run_together(48, lambda i: provider.run("cls", "text-classification", texts[i], {"top_k": 2}))
    assert max(sched.last_batch_sizes) > 1, sched.last_batch_sizes
    for a, g in zip(alone, got, strict=True):
        assert [x["label"] for x in g] == [x["label"] for x in a]
        np.testing.assert_allclose([x["score"] for x in g], [x["score"] for x in a], atol=1e-4)


def test_mixed_tasks_on_one_model_each_get_their_shape(provider: Provider) -> None:
    texts = [sentence(200 + i) for i in range(16)]
    sched = scheduler(provider, "t5")
    sched.last_batch_sizes = []

    def call(i: int):
        task = "summarization" if i % 2 == 0 else "translation"
        return task, provider.run("t5", task, texts[i], {"max_new_tokens": 4})

    got = run_together(16, call)
    for task, out in got:
        key = "summary_text" if task == "summarization" else "translation_text"
        assert set(out) == {key} and isinstance(out[key], str), (task, out)
    # both tasks ran, through batches of one task each (different handlers never share a forward pass)
    assert sum(sched.last_batch_sizes) == 16


def test_many_items_split_across_batches_come_back_in_input_order(provider: Provider) -> None:
    texts = [sentence(300 + i) for i in range(70)]  # 70 items > max_batch_size 8: at least 9 batches
    alone = [provider.run("cls", "text-classification", t) for t in texts]
    sched = scheduler(provider, "cls")
    sched.last_batch_sizes = []
    got = provider.run("cls", "text-classification", texts)
    assert len(sched.last_batch_sizes) >= 9 and max(sched.last_batch_sizes) <= 8
    assert len(got) == 70
    for a, g in zip(alone, got, strict=True):
        assert g[0]["label"] == a[0]["label"]
        assert g[0]["score"] == pytest.approx(a[0]["score"], abs=1e-4)

    embs_alone = np.array([provider.run("minilm", "embeddings", t) for t in texts[:40]])
    embs = np.array(provider.run("minilm", "embeddings", texts[:40], priority="batch"))
    np.testing.assert_allclose(embs, embs_alone, atol=1e-4)


def test_interactive_overtakes_queued_batch_work(provider: Provider) -> None:
    """40 single-item 'batch' requests queue up behind a busy device; an 'interactive' one submitted after all
    of them finishes before most of them."""
    sched = scheduler(provider, "cls")
    long_text = " ".join(WORDS * 4)[:200]
    order: list[str] = []
    lock = threading.Lock()

    def track(label: str, fut: Future) -> Future:
        def done(_: Future) -> None:
            with lock:
                order.append(label)

        fut.add_done_callback(done)
        return fut

    # Warm the device with large 'batch' requests so the single-item ones below really queue.
    futs = [track("warm", provider.submit("cls", "text-classification", [long_text] * 64, priority="batch"))]
    futs += [
        track(f"b{i}", provider.submit("cls", "text-classification", f"{long_text} {i}", priority="batch"))
        for i in range(40)
    ]
    assert sched.queue_depth > 8, "the queue did not fill; the test cannot tell priorities apart"
    futs.append(track("interactive", provider.submit("cls", "text-classification", "urgent question")))
    for f in futs:
        f.result(60)
    batch_done = [x for x in order if x.startswith("b")]
    assert len(batch_done) == 40
    pos = order.index("interactive")
    finished_before = sum(1 for x in order[:pos] if x.startswith("b"))
    assert finished_before < 20, order


class TorchErrorAt(FaultInjector):
    """Fault hook that makes a forward of the chosen batch sizes raise a genuine (non-OOM) torch error."""

    def check_batch(self, batch_size: int) -> None:
        if batch_size in self.batch_sizes:
            torch.empty(-1)  # RuntimeError: negative dimension


def test_failing_batch_fails_only_its_own_futures_and_serving_continues(provider: Provider) -> None:
    sched = scheduler(provider, "t5")
    runner = sched.runner
    before = sched.batches
    runner.fault = TorchErrorAt(batch_sizes={5})
    try:
        poisoned = provider.submit(
            "t5", "summarization", [sentence(400 + i) for i in range(5)], {"max_new_tokens": 3}
        )
        others = [
            provider.submit("t5", "translation", sentence(500 + i), {"max_new_tokens": 3}) for i in range(3)
        ]
        with pytest.raises(RuntimeError, match="negative dimension"):
            poisoned.result(60)
        # the scheduler raised the real error (architecture rule 8), not a wrapper
        assert type(poisoned.exception()) is RuntimeError
        for f in others:
            assert "translation_text" in f.result(60)
    finally:
        runner.fault = None
    # the loop keeps serving: new requests of the failed task succeed
    again = provider.run("t5", "summarization", [sentence(400 + i) for i in range(5)], {"max_new_tokens": 3})
    assert len(again) == 5 and all("summary_text" in r for r in again)
    assert sched.batches > before
    assert sched.in_flight == 0


def test_repeated_failures_do_not_wedge_the_scheduler(provider: Provider, monkeypatch) -> None:
    """A batch whose forward raises repeatedly, many times in a row, never wedges the hand-off semaphore."""
    sched = scheduler(provider, "cls")
    monkeypatch.setattr(sched, "breaker", None)  # five failures in a row would open it (tested on its own)
    sched.runner.fault = TorchErrorAt(batch_sizes={3})
    try:
        for _ in range(5):
            with pytest.raises(RuntimeError):
                provider.run("cls", "text-classification", ["a b", "c d", "e f"], timeout=30)
    finally:
        sched.runner.fault = None
    t0 = time.perf_counter()
    assert len(provider.run("cls", "text-classification", ["a b", "c d", "e f"], timeout=30)) == 3
    assert time.perf_counter() - t0 < 10


def test_concurrent_truncation_is_not_raced(tiny_models):
    """A fast tokenizer's truncation settings are shared state: concurrent parse/preprocess calls with different
    settings must not leak into each other (regression: inputs past max_length reached the model untruncated)."""
    import threading

    from hf_provider.provider import Provider
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec

    long_text = " ".join(["the harbour was rebuilt after the storm"] * 40)  # far past the tiny BERT's 128
    spec = ModelSpec(
        name="cls",
        source=str(tiny_models["bert-cls"]),
        tasks=["embeddings"],
        batching={"max_batch_size": 64, "max_wait_ms": 20},
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("cls")
        results: list = [None] * 48
        barrier = threading.Barrier(48)

        def call(i: int) -> None:
            barrier.wait()
            try:
                text = long_text if i % 2 else "a short sentence"
                results[i] = p.run("cls", "embeddings", text, {"truncate": True})
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=call, args=(i,)) for i in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [r for r in results if not isinstance(r, np.ndarray)]
        assert not failed, failed[:1]


def test_requests_with_different_postprocess_params_are_not_merged(tiny_models):
    """Batch keys cover parameters applied to the whole batch (embeddings `dimensions`): concurrent requests
    that differ in them each get their own shape."""
    import threading

    from hf_provider.provider import Provider
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec

    spec = ModelSpec(
        name="e",
        source=str(tiny_models["bert-cls"]),
        tasks=["embeddings"],
        batching={"max_batch_size": 64, "max_wait_ms": 50},
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("e")
        dims = [4, 8, 16, None] * 6
        out: list = [None] * len(dims)
        barrier = threading.Barrier(len(dims))

        def call(i: int) -> None:
            barrier.wait()
            params = {} if dims[i] is None else {"dimensions": dims[i]}
            out[i] = p.run("e", "embeddings", f"sentence {i}", params)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(dims))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [len(v) for v in out] == [d or 32 for d in dims]
